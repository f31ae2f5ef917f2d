// The HTTP API server (see http_api.h, docs/http-api.md). The only translation
// unit that includes the Beast server side.
//
// How a connection is served (session()): read the header under a deadline
// (header cap → 431), check Content-Length against the body cap (413 before a
// byte of body is read), answer "Expect: 100-continue", read the body (cap
// enforced again while streaming: chunked bodies have no length), route, write
// the response, repeat while keep-alive. Blocking backend calls go to the
// lanes (reads, writes, status/metrics) through offload(), which resumes the coroutine on the io thread.
#include "net/http_api.h"
#include "net/http_client.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <fstream>
#include <sstream>
#include <thread>

namespace swarmlite::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using boost::system::error_code;

// Set on a write a peer forwards to its primary (the value: the forwarding
// node's HTTP address); a peer never forwards such a write again.
constexpr const char* kForwardedHeader = "X-Swarmlite-Forwarded-By";

Result<std::vector<ExecOutcome>> HttpBackend::execute(const std::vector<Statement>&, bool) {
  return make_error(Errc::refused, "this node does not accept writes");
}

Result<std::string> read_token_file(const std::filesystem::path& file) {
  std::error_code ec;
  auto size = std::filesystem::file_size(file, ec);
  if (ec) return make_error(Errc::io_error, "write token file {}: {}", file.string(), ec.message());
  if (size > 4096) return make_error(Errc::too_large, "write token file {} is {} bytes (cap 4096)", file.string(), size);
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) return make_error(Errc::io_error, "write token file {}: read failed", file.string());
  std::string s = ss.str();
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return make_error(Errc::invalid_argument, "write token file {} is empty", file.string());
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

namespace {

// Constant-time equality of two secrets of any length: compare their hashes.
bool secret_equals(std::string_view a, std::string_view b) {
  unsigned char ha[32], hb[32];
  crypto_generichash(ha, sizeof ha, reinterpret_cast<const unsigned char*>(a.data()), a.size(), nullptr, 0);
  crypto_generichash(hb, sizeof hb, reinterpret_cast<const unsigned char*>(b.data()), b.size(), nullptr, 0);
  return sodium_memcmp(ha, hb, sizeof ha) == 0;
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

// The secret a client presented: a bearer token or a basic-auth password.
std::optional<std::string> presented_secret(std::string_view authorization) {
  if (iequals_prefix(authorization, "Bearer ")) return std::string(authorization.substr(7));
  if (iequals_prefix(authorization, "Basic ")) {
    auto raw = base64_decode(authorization.substr(6));
    if (!raw.ok()) return std::nullopt;
    std::string_view up = as_chars(*raw);
    size_t colon = up.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    return std::string(up.substr(colon + 1));
  }
  return std::nullopt;
}

Result<tcp::endpoint> parse_listen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos)
    return make_error(Errc::invalid_argument, "listen address \"{}\" is not host:port", listen);
  std::string host = listen.substr(0, colon);
  std::string port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535)
    return make_error(Errc::invalid_argument, "listen address \"{}\": bad port", listen);
  error_code aec;
  auto addr = asio::ip::make_address(host, aec);
  if (aec) return make_error(Errc::invalid_argument, "listen address \"{}\": {} is not an IP address", listen, host);
  return tcp::endpoint(addr, static_cast<uint16_t>(port));
}

http::status status_for(Errc c) {
  switch (c) {
    case Errc::invalid_argument:
    case Errc::bad_value:
    case Errc::truncated:
    case Errc::non_canonical:
    case Errc::trailing_bytes:
      return http::status::bad_request;
    case Errc::too_large:
      return http::status::payload_too_large;
    case Errc::refused:
      return http::status::forbidden;
    case Errc::unavailable:
    case Errc::diverged:
    case Errc::equivocation:
      return http::status::service_unavailable;
    case Errc::not_found:
      return http::status::not_found;
    default:
      return http::status::internal_server_error;
  }
}

// An error of Beast's HTTP parser about what the client sent (as opposed to
// the connection closing, timing out or being reset).
bool is_malformed(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

struct HttpApi::Impl {
  HttpBackend& backend;
  HttpApiOptions opts;
  std::unique_ptr<Metrics> own_metrics;
  Metrics* metrics;
  asio::io_context ioc{1};
  std::optional<tcp::acceptor> acceptor;
  // The lanes (see http_api.h): reads, writes, status/metrics.
  asio::thread_pool pool;
  asio::thread_pool write_pool{1};
  asio::thread_pool control_pool{1};
  asio::thread_pool backup_pool;  // GET /db/backup: its own lane, max_backups threads
  std::atomic<size_t> pending_reads{0}, pending_writes{0}, pending_backups{0};
  std::thread io_thread;
  std::atomic<size_t> connections{0};
  std::atomic<bool> started{false}, stopped{false};
  tcp::endpoint bound;

  // Hot-path metric series (looked up once).
  Counter& queries_total;
  Counter& query_errors_total;
  Histogram& query_seconds;
  Counter& executes_total;
  Counter& execute_errors_total;
  Counter& forwarded_writes_total;
  Histogram& execute_seconds;
  Gauge& open_connections;
  Counter& rejected_connections;
  Counter& bytes_in;
  Counter& bytes_out;
  Counter& busy_total;

  Impl(HttpBackend& b, HttpApiOptions o)
      : backend(b),
        opts(std::move(o)),
        own_metrics(opts.metrics ? nullptr : std::make_unique<Metrics>()),
        metrics(opts.metrics ? opts.metrics : own_metrics.get()),
        pool(std::max<size_t>(1, opts.worker_threads)),
        backup_pool(std::max<size_t>(1, opts.max_backups)),
        queries_total(metrics->counter("swarmlite_queries_total", "Query statements run")),
        query_errors_total(metrics->counter("swarmlite_query_errors_total", "Query statements that failed")),
        query_seconds(metrics->histogram("swarmlite_query_seconds", "Latency of /db/query requests", default_latency_buckets())),
        executes_total(metrics->counter("swarmlite_executes_total", "Write statements run")),
        execute_errors_total(metrics->counter("swarmlite_execute_errors_total", "Write statements that failed")),
        forwarded_writes_total(metrics->counter("swarmlite_forwarded_writes_total",
                                                "Writes a peer forwarded to the primary and relayed the answer of")),
        execute_seconds(metrics->histogram("swarmlite_execute_seconds", "Latency of /db/execute requests", default_latency_buckets())),
        open_connections(metrics->gauge("swarmlite_http_connections", "Open HTTP connections")),
        rejected_connections(metrics->counter("swarmlite_http_rejected_connections_total", "HTTP connections refused over the cap")),
        bytes_in(metrics->counter("swarmlite_http_bytes_in_total", "HTTP request body bytes received")),
        bytes_out(metrics->counter("swarmlite_http_bytes_out_total", "HTTP response body bytes sent")),
        busy_total(metrics->counter("swarmlite_http_busy_total", "Requests refused with 503 because their read or write lane was full")) {}

  // Runs f() (returning Result<T>) on `lane`; resumes on the io thread.
  template <class F>
  asio::awaitable<std::invoke_result_t<F&>> offload(asio::thread_pool& lane, F f) {
    using R = std::invoke_result_t<F&>;
    auto initiate = [this, &lane, fn = std::move(f)](auto handler) mutable {
      auto work = asio::make_work_guard(ioc);
      asio::post(lane, [handler = std::move(handler), fn = std::move(fn), work = std::move(work)]() mutable {
        std::optional<R> r;
        try {
          r.emplace(fn());
        } catch (const std::exception& e) {
          r.emplace(make_error(Errc::internal, "backend threw: {}", e.what()));
        }
        auto ex = asio::get_associated_executor(handler, work.get_executor());
        asio::post(ex, [handler = std::move(handler), r = std::move(r)]() mutable {
          std::move(handler)(std::move(*r));
        });
      });
    };
    R result = co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(R)>(
        std::move(initiate), asio::use_awaitable);
    co_return result;
  }

  // A slot in a bounded lane, released when the request is answered.
  struct LaneSlot {
    std::atomic<size_t>* pending = nullptr;
    LaneSlot() = default;
    LaneSlot(const LaneSlot&) = delete;
    LaneSlot& operator=(const LaneSlot&) = delete;
    ~LaneSlot() {
      if (pending) pending->fetch_sub(1);
    }
  };
  // Takes a slot when fewer than `cap` requests of the lane are running or queued.
  static bool take_slot(LaneSlot& slot, std::atomic<size_t>& pending, size_t cap) {
    if (pending.fetch_add(1) >= std::max<size_t>(1, cap)) {
      pending.fetch_sub(1);
      return false;
    }
    slot.pending = &pending;
    return true;
  }

  Response respond(const Request& req, http::status st, std::string body,
                   std::string_view content_type = "application/json") {
    Response res{st, req.version()};
    res.set(http::field::server, "swarmlite");
    res.set(http::field::content_type, std::string(content_type));
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }
  Response error(const Request& req, http::status st, std::string_view message, bool pretty = false) {
    return respond(req, st, render_error(message, pretty));
  }

  bool authorized(const Request& req) const {
    if (!opts.write_token) return true;  // loopback-only by start()'s check
    auto it = req.find(http::field::authorization);
    if (it == req.end()) return false;
    auto secret = presented_secret(std::string_view(it->value().data(), it->value().size()));
    return secret && secret_equals(*secret, *opts.write_token);
  }

  // A write sent to a peer (docs/http-api.md "Writes sent to a peer"): as an
  // rqlite follower, forward it to the primary — method, path and query string,
  // body, Authorization and Content-Type unchanged — and relay the answer; or
  // answer 301 with the primary's full URL when asked to redirect. A write that
  // was already forwarded once is not forwarded again (a peer whose
  // --primary-url names another peer would loop).
  asio::awaitable<Response> write_on_peer(const Request& req, const RequestOptions& ro) {
    const std::string target(req.target().data(), req.target().size());
    if (!opts.primary_url) {
      co_return error(req, http::status::forbidden,
                      "this node is a read-only peer and knows no primary to send writes to (start it with "
                      "--primary-url)",
                      ro.pretty);
    }
    if (req.find(kForwardedHeader) != req.end()) {
      co_return error(req, http::status::loop_detected,
                      fmt::format("forward loop: this node is a peer, not the primary, but it was sent a write "
                                  "forwarded by {}; that node's --primary-url must name the primary",
                                  std::string(req[kForwardedHeader])),
                      ro.pretty);
    }
    if (ro.redirect || opts.redirect_writes) {
      auto res = error(req, http::status::moved_permanently,
                       fmt::format("this node is a read-only peer; send writes to the primary at {}", *opts.primary_url),
                       ro.pretty);
      res.set(http::field::location, *opts.primary_url + target);
      co_return res;
    }
    auto url = parse_http_url(*opts.primary_url);
    if (!url.ok()) co_return error(req, http::status::bad_gateway, url.error().message, ro.pretty);
    HttpRequest fr;
    fr.method = std::string(req.method_string());
    fr.target = target;
    fr.body = req.body();
    if (auto ct = req.find(http::field::content_type); ct != req.end()) fr.content_type = std::string(ct->value());
    if (auto au = req.find(http::field::authorization); au != req.end()) fr.authorization = std::string(au->value());
    if (auto ac = req.find(http::field::accept); ac != req.end()) fr.accept = std::string(ac->value());
    fr.headers.emplace_back(std::string(kForwardedHeader), bound_address());
    HttpClientOptions co{opts.forward_timeout, opts.max_forward_response_bytes};
    // A peer's writes are its forwards: they take the write lane and its cap.
    LaneSlot slot;
    if (!take_slot(slot, pending_writes, opts.max_pending_writes)) {
      busy_total.inc();
      co_return error(req, http::status::service_unavailable,
                      fmt::format("busy: {} writes are already being forwarded (the cap); try again later",
                                  opts.max_pending_writes),
                      ro.pretty);
    }
    auto call = [u = std::move(url).value(), fr = std::move(fr), co] { return http_call(u, fr, co); };
    auto r = co_await offload(write_pool, std::move(call));
    if (!r.ok()) {
      const bool timed_out = r.error().message.find("did not answer within") != std::string::npos;
      co_return error(req, timed_out ? http::status::gateway_timeout : http::status::bad_gateway,
                      fmt::format("this node is a read-only peer and could not forward the write to the primary at "
                                  "{}: {}",
                                  *opts.primary_url, r.error().message),
                      ro.pretty);
    }
    forwarded_writes_total.inc();
    auto res = respond(req, static_cast<http::status>(r->status), std::move(r->body),
                       r->content_type.empty() ? std::string_view("application/json") : std::string_view(r->content_type));
    if (r->status == 401) res.set(http::field::www_authenticate, "Basic realm=\"swarmlite\"");
    co_return res;
  }

  asio::awaitable<Response> handle_execute(const Request& req, const RequestOptions& ro) {
    if (req.method() != http::verb::post)
      co_return error(req, http::status::method_not_allowed, "/db/execute takes POST with a JSON array body");
    if (!backend.accepts_writes()) co_return co_await write_on_peer(req, ro);
    if (!authorized(req)) {
      auto res = error(req, http::status::unauthorized,
                       "writes need the write token (Authorization: Bearer <token>, or as the basic-auth password)",
                       ro.pretty);
      res.set(http::field::www_authenticate, "Basic realm=\"swarmlite\"");
      co_return res;
    }
    auto statements = parse_statements(req.body(), opts.json_limits);
    if (!statements.ok()) co_return error(req, status_for(statements.error().code), statements.error().message, ro.pretty);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<ExecOutcome> outcomes;
    if (!statements->empty()) {
      // Named callables only: GCC 12 destroys some temporaries in a co_await
      // expression twice.
      LaneSlot slot;
      if (!take_slot(slot, pending_writes, opts.max_pending_writes)) {
        busy_total.inc();
        co_return error(req, http::status::service_unavailable,
                        fmt::format("busy: {} write requests are already running or queued (the "
                                    "cap); try again later",
                                    opts.max_pending_writes),
                        ro.pretty);
      }
      auto call = [this, st = std::move(statements).value(), tx = ro.transaction] {
        return backend.execute(st, tx);
      };
      auto r = co_await offload(write_pool, std::move(call));
      if (!r.ok()) co_return error(req, status_for(r.error().code), r.error().to_string(), ro.pretty);
      outcomes = std::move(r).value();
    }
    double total = seconds_since(t0);
    execute_seconds.observe(total);
    executes_total.inc(outcomes.size());
    for (const auto& o : outcomes)
      if (o.error) execute_errors_total.inc();
    co_return respond(req, http::status::ok, render_exec_results(outcomes, ro, total));
  }

  asio::awaitable<Response> handle_query(const Request& req, RequestOptions ro) {
    if (req.method() != http::verb::get && req.method() != http::verb::post)
      co_return error(req, http::status::method_not_allowed, "/db/query takes GET ?q=… or POST with a JSON array body");
    std::vector<Statement> statements;
    if (req.method() == http::verb::post && !req.body().empty()) {
      auto parsed = parse_statements(req.body(), opts.json_limits);
      if (!parsed.ok()) co_return error(req, status_for(parsed.error().code), parsed.error().message, ro.pretty);
      statements = std::move(parsed).value();
    } else if (ro.q) {
      statements.push_back(Statement{*ro.q, {}});
    } else {
      co_return error(req, http::status::bad_request, "no query: give ?q=SQL or POST a JSON array of statements", ro.pretty);
    }
    auto accept = req[http::field::accept];
    const bool binary = accept.find("application/octet-stream") != beast::string_view::npos;
    if (binary) {
      ro.proof = true;
      if (statements.size() != 1)
        co_return error(req, http::status::bad_request,
                        fmt::format("the binary proof form (Accept: application/octet-stream) takes exactly one statement, got {}",
                                    statements.size()), ro.pretty);
    }
    auto t0 = std::chrono::steady_clock::now();
    // Freshness: wait (without holding a worker) until the state reaches min_size.
    if (ro.min_size > 0 && backend.size() < ro.min_size) {
      auto deadline = t0 + ro.timeout;
      asio::steady_timer timer(ioc);
      while (backend.size() < ro.min_size && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(opts.min_size_poll);
        error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      uint64_t have = backend.size();
      if (have < ro.min_size)
        co_return error(req, http::status::service_unavailable,
                        fmt::format("state is at size {}, below min_size {} after waiting {} ms", have, ro.min_size,
                                    ro.timeout.count()), ro.pretty);
    }
    QueryOptions qo{ro.min_size, ro.proof};
    size_t n = statements.size();
    LaneSlot slot;
    if (!take_slot(slot, pending_reads, opts.max_pending_reads)) {
      busy_total.inc();
      co_return error(req, http::status::service_unavailable,
                      fmt::format("busy: {} read requests are already running or queued (the cap; "
                                  "{} run at once); try again later",
                                  opts.max_pending_reads, opts.worker_threads),
                      ro.pretty);
    }
    auto call = [this, st = std::move(statements), qo] { return backend.query(st, qo); };
    auto r = co_await offload(pool, std::move(call));
    double total = seconds_since(t0);
    query_seconds.observe(total);
    queries_total.inc(n);
    if (!r.ok()) {
      query_errors_total.inc(n);
      co_return error(req, status_for(r.error().code), r.error().to_string(), ro.pretty);
    }
    for (const auto& o : *r)
      if (o.error) query_errors_total.inc();
    if (binary) {
      const QueryOutcome& o = r->front();
      if (o.error) co_return error(req, http::status::bad_request, *o.error, ro.pretty);
      if (o.proof.empty()) co_return error(req, http::status::not_implemented, "this node produced no proof", ro.pretty);
      auto res = respond(req, http::status::ok, std::string(as_chars(o.proof)), "application/octet-stream");
      if (o.size) res.set("X-Swarmlite-Size", std::to_string(*o.size));
      co_return res;
    }
    co_return respond(req, http::status::ok, render_query_results(*r, ro, total));
  }

  asio::awaitable<Response> route(const Request& req) {
    std::string_view target(req.target().data(), req.target().size());
    size_t qpos = target.find('?');
    std::string_view path = target.substr(0, qpos);
    std::string_view qs = qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);
    auto ro = parse_request_options(qs);
    if (!ro.ok()) co_return error(req, http::status::bad_request, ro.error().message);
    if (path == "/db/execute") co_return co_await handle_execute(req, *ro);
    if (path == "/db/query") co_return co_await handle_query(req, *ro);
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    if (path == "/status" && get) {
      auto call = [this]() -> Result<nlohmann::json> { return backend.status(); };
      auto st = co_await offload(control_pool, std::move(call));
      if (!st.ok()) co_return error(req, http::status::internal_server_error, st.error().to_string());
      nlohmann::json doc = std::move(st).value();
      doc["http"] = {{"address", bound_address()}, {"write_auth", opts.write_token.has_value()},
                     {"accepts_writes", backend.accepts_writes()}};
      co_return respond(req, http::status::ok, dump_json(doc, ro->pretty));
    }
    if (path == "/readyz" && get) {
      auto s = backend.ready();
      if (s.ok()) co_return respond(req, http::status::ok, "[+]node ok\n", "text/plain");
      co_return respond(req, http::status::service_unavailable, "[-]node not ready: " + s.error().to_string() + "\n",
                        "text/plain");
    }
    if (path == "/metrics" && get) {
      auto call = [this]() -> Result<std::string> {
        backend.update_metrics(*metrics);
        return metrics->render();
      };
      auto text = co_await offload(control_pool, std::move(call));
      if (!text.ok()) co_return error(req, http::status::internal_server_error, text.error().to_string());
      co_return respond(req, http::status::ok, std::move(text).value(), "text/plain; version=0.0.4");
    }
    if (path == "/status" || path == "/readyz" || path == "/metrics")
      co_return error(req, http::status::method_not_allowed, fmt::format("{} takes GET", path));
    co_return error(req, http::status::not_found, fmt::format("no such endpoint: {}", path));
  }

  static bool is_backup(const Request& req) {
    std::string_view target(req.target().data(), req.target().size());
    return target.substr(0, target.find('?')) == "/db/backup";
  }

  // GET /db/backup[?fmt=sql] (docs/http-api.md "Backups"): the backend writes
  // the state at one signed head to an unlinked temporary file on the backup
  // lane; the file is then streamed from its descriptor. Returns whether the
  // connection stays open.
  asio::awaitable<bool> serve_backup(beast::tcp_stream& stream, const Request& req) {
    std::optional<Response> refused;
    std::string_view target(req.target().data(), req.target().size());
    std::string_view qs = target.find('?') == std::string_view::npos ? "" : target.substr(target.find('?') + 1);
    BackupFormat format = BackupFormat::sqlite;
    for (size_t i = 0; i <= qs.size() && !refused;) {
      size_t amp = std::min(qs.find('&', i), qs.size());
      std::string_view part = qs.substr(i, amp - i);
      i = amp + 1;
      if (part.substr(0, part.find('=')) != "fmt") continue;
      std::string_view value = part.find('=') == std::string_view::npos ? "" : part.substr(part.find('=') + 1);
      if (value == "sql") format = BackupFormat::sql;
      else if (value != "sqlite" && value != "binary")
        refused.emplace(error(req, http::status::bad_request,
                              fmt::format("/db/backup: unknown fmt={} (expected sql or sqlite)", value)));
    }
    LaneSlot slot;
    if (!refused && req.method() != http::verb::get)
      refused.emplace(error(req, http::status::method_not_allowed, "/db/backup takes GET"));
    if (!refused && !take_slot(slot, pending_backups, opts.max_backups)) {
      busy_total.inc();
      refused.emplace(error(req, http::status::service_unavailable,
                            fmt::format("busy: {} backups are running (cap {})", opts.max_backups, opts.max_backups)));
    }
    std::optional<BackupFile> file;
    if (!refused) {
      auto deadline = std::chrono::steady_clock::now() + opts.backup_timeout;
      auto call = [this, format, deadline]() -> Result<BackupFile> { return backend.backup(format, deadline, &stopped); };
      auto made = co_await offload(backup_pool, std::move(call));
      if (made.ok()) file.emplace(std::move(made).value());
      else refused.emplace(error(req, status_for(made.error().code), made.error().to_string()));
    }
    if (refused) {
      refused->keep_alive(req.keep_alive());
      co_return co_await send(stream, *refused) && refused->keep_alive();
    }
    http::response<http::file_body> res{http::status::ok, req.version()};
    res.set(http::field::server, "swarmlite");
    const bool sql = format == BackupFormat::sql;
    res.set(http::field::content_type, sql ? "application/sql" : "application/octet-stream");
    res.set(http::field::content_disposition,
            fmt::format("attachment; filename=\"swarmlite-{}.{}\"", file->head.size, sql ? "sql" : "sqlite3"));
    res.set("X-Swarmlite-Head", base64_encode(encode_head(file->head)));
    res.set("X-Swarmlite-Size", std::to_string(file->head.size));
    beast::file body_file;
    body_file.native_handle(::dup(file->fd.get()));
    error_code ec;
    if (body_file.native_handle() < 0) {
      Response err = error(req, http::status::internal_server_error, "backup: dup failed");
      co_return co_await send(stream, err) && false;
    }
    res.body().reset(std::move(body_file), ec);
    res.content_length(file->bytes);
    res.keep_alive(req.keep_alive());
    count_response(200);
    bytes_out.inc(file->bytes);
    stream.expires_after(opts.backup_timeout);
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec && res.keep_alive();
  }

  void count_response(unsigned code) {
    metrics->counter("swarmlite_http_requests_total", "HTTP requests by response status code",
                     {{"code", std::to_string(code)}}).inc();
  }

  // Writes a response; false if the connection is gone.
  asio::awaitable<bool> send(beast::tcp_stream& stream, Response& res) {
    count_response(res.result_int());
    bytes_out.inc(res.body().size());
    stream.expires_after(opts.write_timeout);
    error_code ec;
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  // After a read of the header or body (`part`) failed: the reason, when the
  // request itself is at fault (too large, malformed), then the connection
  // closes either way (closed, timed out or reset gets no reply).
  asio::awaitable<void> refuse_unreadable(beast::tcp_stream& stream, const error_code& ec,
                                          std::string_view part) {
    http::status status;
    std::string message;
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      status = http::status::request_header_fields_too_large;
      message = fmt::format("request header over {} bytes", opts.max_header_bytes);
    } else if (ec == http::error::body_limit) {
      status = http::status::payload_too_large;
      message = fmt::format("request body over the cap of {} bytes", opts.max_body_bytes);
    } else if (is_malformed(ec)) {
      status = http::status::bad_request;
      message = fmt::format("malformed HTTP {}: {}", part, ec.message());
    } else {
      co_return;
    }
    co_await refuse(stream, status, std::move(message));
  }

  asio::awaitable<void> refuse(beast::tcp_stream& stream, http::status status, std::string message) {
    Request bare;  // no request exists yet
    bare.version(11);
    Response res = error(bare, status, message);
    res.keep_alive(false);
    co_await send(stream, res);
  }

  asio::awaitable<void> session(tcp::socket socket) {
    struct Count {
      Impl& s;
      explicit Count(Impl& i) : s(i) { s.open_connections.add(1); }
      ~Count() { s.open_connections.add(-1); s.connections.fetch_sub(1); }
    } count(*this);
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(opts.max_header_bytes + (64u << 10));
    bool first = true;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(opts.max_header_bytes));
      parser.body_limit(opts.max_body_bytes);
      stream.expires_after(first ? opts.read_timeout : opts.idle_timeout);
      first = false;
      error_code ec;
      co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_await refuse_unreadable(stream, ec, "request");
        break;
      }
      stream.expires_after(opts.read_timeout);
      if (parser.content_length() && *parser.content_length() > opts.max_body_bytes) {
        co_await refuse(stream, http::status::payload_too_large,
                        fmt::format("request body of {} bytes is over the cap of {}",
                                    *parser.content_length(), opts.max_body_bytes));
        break;
      }
      if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      if (!parser.is_done()) {
        co_await http::async_read(stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          // A body the parser refuses (over the cap, a chunk-size line beyond
          // 64 bits, a bad chunk) gets its reason before the close, as a bad
          // header does.
          co_await refuse_unreadable(stream, ec, "request body");
          break;
        }
      }
      Request req = parser.release();
      bytes_in.inc(req.body().size());
      if (is_backup(req)) {  // streams its own response
        if (!co_await serve_backup(stream, req)) break;
        continue;
      }
      // A handler that throws (a bug) still answers: 500 with the reason, not a dropped connection.
      std::optional<Response> routed;
      std::string thrown;
      bool threw = false;
      try {
        routed.emplace(co_await route(req));
      } catch (const std::exception& e) {
        thrown = e.what();
        threw = true;
      }
      if (!routed) {
        spdlog::error("HTTP {} {}: handler threw: {}", std::string(req.method_string()), std::string(req.target()), thrown);
        routed.emplace(error(req, http::status::internal_server_error, "internal error: " + thrown));
      }
      Response res = std::move(*routed);
      res.keep_alive(!threw && req.keep_alive());
      if (req.method() == http::verb::head) res.body().clear();
      if (!co_await send(stream, res) || !res.keep_alive()) break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<void> refuse(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    Request bare;
    bare.version(11);
    Response res = error(bare, http::status::service_unavailable,
                         fmt::format("too many connections (cap {})", opts.max_connections));
    res.keep_alive(false);
    co_await send(stream, res);
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      error_code ec;
      tcp::socket socket = co_await acceptor->async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
        continue;  // e.g. EMFILE: try the next one
      }
      if (connections.fetch_add(1) >= opts.max_connections) {
        connections.fetch_sub(1);
        rejected_connections.inc();
        asio::co_spawn(ioc, refuse(std::move(socket)), asio::detached);
        continue;
      }
      asio::co_spawn(ioc, session(std::move(socket)), asio::detached);
    }
  }

  std::string bound_address() const {
    if (bound.address().is_v6()) return fmt::format("[{}]:{}", bound.address().to_string(), bound.port());
    return fmt::format("{}:{}", bound.address().to_string(), bound.port());
  }
};

HttpApi::HttpApi(HttpBackend& backend, HttpApiOptions options)
    : impl_(std::make_unique<Impl>(backend, std::move(options))) {}

HttpApi::~HttpApi() { stop(); }

Status HttpApi::start() {
  Impl& s = *impl_;
  if (s.started.exchange(true)) return make_error(Errc::invalid_argument, "HttpApi::start called twice");
  SWL_ASSIGN(tcp::endpoint ep, parse_listen(s.opts.listen));
  if (s.backend.accepts_writes() && !s.opts.write_token && !ep.address().is_loopback())
    return make_error(Errc::refused,
                      "refusing to serve the write API on non-loopback address {} without a write token "
                      "(give --write-token FILE, or listen on 127.0.0.1)",
                      s.opts.listen);
  error_code ec;
  s.acceptor.emplace(s.ioc);
  s.acceptor->open(ep.protocol(), ec);
  if (!ec) s.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(ep, ec);
  if (!ec) s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::io_error, "HTTP listen on {}: {}", s.opts.listen, ec.message());
  s.bound = s.acceptor->local_endpoint(ec);
  spdlog::info("HTTP API listening on http://{}", s.bound_address());
  if (s.backend.accepts_writes() && !s.opts.write_token)
    spdlog::warn("HTTP write API has no write token: it is open to anyone who can reach {} (loopback only)",
                 s.bound_address());
  asio::co_spawn(s.ioc, s.accept_loop(), asio::detached);
  s.io_thread = std::thread([&s] { s.ioc.run(); });
  return ok_status();
}

void HttpApi::stop() {
  Impl& s = *impl_;
  if (!s.started || s.stopped.exchange(true)) return;
  asio::post(s.ioc, [&s] {
    error_code ignored;
    if (s.acceptor) s.acceptor->close(ignored);
  });
  s.ioc.stop();
  if (s.io_thread.joinable()) s.io_thread.join();
  // Running backend calls finish (the owner bounds them: time limits, and the
  // CLI interrupts reads and writes before stopping); their completions are
  // dropped with the io_context.
  s.pool.join();
  s.write_pool.join();
  s.control_pool.join();
  s.backup_pool.join();
}

uint16_t HttpApi::bound_port() const { return impl_->bound.port(); }
std::string HttpApi::bound_address() const { return impl_->bound_address(); }
Metrics& HttpApi::metrics() { return *impl_->metrics; }

}  // namespace swarmlite::net
