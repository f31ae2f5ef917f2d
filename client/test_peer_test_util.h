// Test helper for client/*_test.cpp (not part of the library): an in-process
// peer — a Primary (test_log_test_util.h) behind the real HTTP API
// (net/http_api.h) on 127.0.0.1:0 — whose answers a test can bend: fail with
// 503, prove other SQL than the one asked, or hand out fixed proof bytes.
#pragma once

#include <doctest/doctest.h>

#include <mutex>
#include <optional>
#include <string>

#include "client/test_log_test_util.h"
#include "net/http_api.h"

namespace swarmlite::client::testing {

class TestPeerBackend : public net::HttpBackend {
 public:
  explicit TestPeerBackend(Primary& primary) : primary_(primary) {}
  bool accepts_writes() const override { return false; }
  Result<std::vector<net::QueryOutcome>> query(const std::vector<Statement>& statements,
                                               const net::QueryOptions& options) override {
    std::lock_guard lock(mu_);
    if (unavailable_) return make_error(Errc::unavailable, "{}", *unavailable_);
    std::vector<net::QueryOutcome> out;
    for (const auto& st : statements) {
      auto p = primary_.prove(swap_sql_.value_or(st.sql), st.params);
      net::QueryOutcome o;
      if (!p.ok()) {
        o.error = p.error().to_string();
      } else {
        o.columns = p->result.columns;
        o.types = p->result.decltypes;
        o.rows = p->result.rows;
        if (options.proof) {
          o.size = p->proof.head.size;
          o.proof = fixed_proof_ ? *fixed_proof_ : p->encoded;
        }
      }
      out.push_back(std::move(o));
    }
    return out;
  }
  uint64_t size() const override { return primary_.size(); }
  nlohmann::json status() const override { return {{"log_size", primary_.size()}}; }
  Status ready() const override { return ok_status(); }

  void set_unavailable(std::optional<std::string> why) { std::lock_guard l(mu_); unavailable_ = std::move(why); }
  void set_swap_sql(std::optional<std::string> sql) { std::lock_guard l(mu_); swap_sql_ = std::move(sql); }
  void set_fixed_proof(std::optional<Bytes> proof) { std::lock_guard l(mu_); fixed_proof_ = std::move(proof); }

 private:
  Primary& primary_;
  std::mutex mu_;
  std::optional<std::string> unavailable_, swap_sql_;
  std::optional<Bytes> fixed_proof_;
};

struct TestPeer {
  TestPeerBackend backend;
  net::HttpApi api;
  std::string url;
  explicit TestPeer(Primary& primary) : backend(primary), api(backend, options()) {
    auto s = api.start();
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().to_string()));
    url = "http://127.0.0.1:" + std::to_string(api.bound_port());
  }
  static net::HttpApiOptions options() {
    net::HttpApiOptions o;
    o.listen = "127.0.0.1:0";
    o.worker_threads = 1;
    return o;
  }
};

}  // namespace swarmlite::client::testing
