// The HTTP API server (see http_api.h, docs/http-api.md). The only translation
// unit that includes the Beast server side.
//
// How a connection is served (session()): read the header under a deadline
// (header cap → 431), check Content-Length against the body cap (413 before a
// byte of body is read), answer "Expect: 100-continue", read the body (cap
// enforced again while streaming: chunked bodies have no length), route, write
// the response, repeat while keep-alive. Blocking backend calls go to the
// lanes (reads, writes, status/metrics) through offload(), which resumes the coroutine on the io thread;
// a primary's writes go to its backend's submit thread instead (execute_writes).
#include "net/http_api.h"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
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
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <variant>

#include "net/http_client.h"
#include "net/http_request.h"
#include "net/tcp_socket.h"
#include "sqlbridge/engine/page_set.h"
#include "sqlbridge/tools/snapshot_source.h"

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
// On a /db/execute answer: the primary's log size after the write (a client,
// or a peer running /db/request, waits for it with min_size: read-your-writes).
constexpr const char* kSizeHeader = "X-Swarmlite-Size";

Result<std::vector<ExecOutcome>> HttpBackend::execute(const std::vector<Statement>&, bool) {
  return make_error(Errc::refused, "this node does not accept writes");
}

Result<std::vector<StatementClass>> HttpBackend::classify(const std::vector<Statement>& statements) {
  return std::vector<StatementClass>(statements.size());
}

bool all_reads(const std::vector<StatementClass>& classes) {
  return std::all_of(classes.begin(), classes.end(),
                     [](const StatementClass& c) { return c.kind == StatementKind::read; });
}

Result<HttpBackend::Classified> HttpBackend::classify_and_read(
    const std::vector<Statement>& statements) {
  Classified out;
  SWL_ASSIGN(out.classes, classify(statements));
  if (out.classes.size() == statements.size() && all_reads(out.classes)) {
    SWL_ASSIGN(std::vector<QueryOutcome> outcomes, query(statements, QueryOptions{}));
    out.outcomes = std::move(outcomes);
  }
  return out;
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
  // Size wake-ups (HttpBackend::set_size_listener): the timers the waits in
  // wait_for_size sleep on (io thread only), cancelled when the backend says
  // the size grew. Declared before ioc: a wait's coroutine frame, destroyed
  // with the io_context, still unregisters its timer here.
  std::set<asio::steady_timer*> size_waiters;
  std::atomic<size_t> size_waiter_count{0};  // size_waiters.size(), for the backend's threads
  std::atomic<bool> size_wake_posted{false};
  bool size_notifies = false;  // the backend accepted the listener (else waits poll)
  asio::io_context ioc{1};
  std::optional<tcp::acceptor> acceptor;
  // The lanes (see http_api.h): reads, writes, status/metrics.
  asio::thread_pool pool;
  asio::thread_pool write_pool;
  asio::thread_pool control_pool{1};
  asio::thread_pool backup_pool;  // GET /db/backup: its own lane, max_backups threads
  std::atomic<size_t> pending_reads{0}, pending_writes{0}, pending_backups{0};
  // Writes handed to HttpBackend::submit_execute whose answer has not been
  // posted yet: stop() waits for them as it joins the write lane.
  std::mutex submitted_mu;
  std::condition_variable submitted_cv;
  size_t submitted_writes = 0;
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
  Counter& inline_reads_total;
  Counter& inline_declined_total;

  Impl(HttpBackend& b, HttpApiOptions o)
      : backend(b),
        opts(std::move(o)),
        own_metrics(opts.metrics ? nullptr : std::make_unique<Metrics>()),
        metrics(opts.metrics ? opts.metrics : own_metrics.get()),
        pool(std::max<size_t>(1, opts.worker_threads)),
        write_pool(std::max<size_t>(1, opts.write_threads)),
        backup_pool(std::max<size_t>(1, opts.max_backups)),
        queries_total(metrics->counter("swarmlite_queries_total", "Query statements run")),
        query_errors_total(
            metrics->counter("swarmlite_query_errors_total", "Query statements that failed")),
        query_seconds(metrics->histogram("swarmlite_query_seconds", "Latency of /db/query requests",
                                         default_latency_buckets())),
        executes_total(metrics->counter("swarmlite_executes_total", "Write statements run")),
        execute_errors_total(
            metrics->counter("swarmlite_execute_errors_total", "Write statements that failed")),
        forwarded_writes_total(
            metrics->counter("swarmlite_forwarded_writes_total",
                             "Writes a peer forwarded to the primary and relayed the answer of")),
        execute_seconds(metrics->histogram("swarmlite_execute_seconds",
                                           "Latency of /db/execute requests",
                                           default_latency_buckets())),
        open_connections(metrics->gauge("swarmlite_http_connections", "Open HTTP connections")),
        rejected_connections(metrics->counter("swarmlite_http_rejected_connections_total",
                                              "HTTP connections refused over the cap")),
        bytes_in(
            metrics->counter("swarmlite_http_bytes_in_total", "HTTP request body bytes received")),
        bytes_out(
            metrics->counter("swarmlite_http_bytes_out_total", "HTTP response body bytes sent")),
        busy_total(metrics->counter(
            "swarmlite_http_busy_total",
            "Requests refused with 503 because their read or write lane was full")),
        inline_reads_total(metrics->counter(
            "swarmlite_inline_reads_total",
            "Plain reads answered on the io thread: cheap, tried while the read lane was idle")),
        inline_declined_total(
            metrics->counter("swarmlite_inline_reads_declined_total",
                             "Plain reads tried on the io thread and run on the read lane instead "
                             "(over the budget, or no idle connection)")) {}

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

  // Runs writes as HttpBackend::execute: handed to submit_execute() when the
  // backend takes them that way (its own thread batches many requests' writes
  // into group commits), else on the write lane. Resumes on the io thread.
  asio::awaitable<Result<std::vector<ExecOutcome>>> execute_writes(
      std::vector<Statement> statements, bool transaction) {
    using R = Result<std::vector<ExecOutcome>>;
    if (!backend.submits_writes()) {
      auto call = [this, st = std::move(statements), transaction] {
        return backend.execute(st, transaction);
      };
      co_return co_await offload(write_pool, std::move(call));
    }
    auto initiate = [this, st = std::move(statements), transaction](auto completion) mutable {
      // Shared: ExecuteDone is a std::function, which copies; the handler moves.
      struct Waiting {
        decltype(completion) handler;
        asio::executor_work_guard<asio::io_context::executor_type> work;
      };
      auto waiting =
          std::make_shared<Waiting>(Waiting{std::move(completion), asio::make_work_guard(ioc)});
      {
        std::lock_guard lock(submitted_mu);
        ++submitted_writes;
      }
      // Called once, on the backend's thread. It moves `waiting` into the
      // post, so the callback itself keeps nothing of the server: the backend
      // may destroy it after stop() has returned and the io_context is gone.
      backend.submit_execute(std::move(st), transaction, [this, waiting](R r) mutable {
        auto w = std::move(waiting);
        auto ex = asio::get_associated_executor(w->handler, w->work.get_executor());
        asio::post(ex, [w = std::move(w), r = std::move(r)]() mutable {
          std::move(w->handler)(std::move(r));
        });
        // The last touch of *this: stop() may return once the count is 0.
        std::lock_guard lock(submitted_mu);
        if (--submitted_writes == 0) submitted_cv.notify_all();
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
  // The 503 for a read when the read lane's queue is full (counted).
  Response read_lane_busy(const Request& req, const RequestOptions& ro) {
    busy_total.inc();
    return error(
        req, http::status::service_unavailable,
        fmt::format(
            "busy: {} read requests are already running or queued (the cap; {} run at once); "
            "try again later",
            opts.max_pending_reads, opts.worker_threads),
        ro.pretty);
  }

  bool authorized(const Request& req) const {
    if (!opts.write_token) return true;  // loopback-only by start()'s check
    auto it = req.find(http::field::authorization);
    if (it == req.end()) return false;
    auto secret = presented_secret(std::string_view(it->value().data(), it->value().size()));
    return secret && secret_equals(*secret, *opts.write_token);
  }

  // Sends `body` to the primary named by --primary-url at `target` with the
  // client's Content-Type, Authorization and Accept and the forwarded-by
  // header, in the write lane (docs/http-api.md "Writes sent to a peer"). The
  // primary's answer, or the error response to give (502/503/504).
  asio::awaitable<std::variant<Response, HttpResponse>> call_primary(const Request& req, const RequestOptions& ro,
                                                                    std::string method, const std::string& target,
                                                                    std::string body) {
    auto url = parse_http_url(*opts.primary_url);
    if (!url.ok()) co_return error(req, http::status::bad_gateway, url.error().message, ro.pretty);
    HttpRequest fr;
    fr.method = std::move(method);
    fr.target = target;
    fr.body = body;
    if (auto ct = req.find(http::field::content_type); ct != req.end()) fr.content_type = std::string(ct->value());
    if (auto au = req.find(http::field::authorization); au != req.end()) fr.authorization = std::string(au->value());
    if (auto ac = req.find(http::field::accept); ac != req.end()) fr.accept = std::string(ac->value());
    fr.headers.emplace_back(std::string(kForwardedHeader), bound_address());
    HttpClientOptions co{opts.forward_timeout, opts.max_forward_response_bytes, opts.tcp_no_delay};
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
    co_return std::move(r).value();
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
    auto forwarded = co_await call_primary(req, ro, std::string(req.method_string()), target, req.body());
    if (auto* fail = std::get_if<Response>(&forwarded)) co_return std::move(*fail);
    auto r = std::get_if<HttpResponse>(&forwarded);
    forwarded_writes_total.inc();
    auto res = respond(req, static_cast<http::status>(r->status), std::move(r->body),
                       r->content_type.empty() ? std::string_view("application/json") : std::string_view(r->content_type));
    if (r->status == 401) res.set(http::field::www_authenticate, "Basic realm=\"swarmlite\"");
    if (!r->swarmlite_size.empty()) res.set(kSizeHeader, r->swarmlite_size);
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
      std::vector<Statement> to_run = std::move(statements).value();
      auto r = co_await execute_writes(std::move(to_run), ro.transaction);
      if (!r.ok()) co_return error(req, status_for(r.error().code), r.error().to_string(), ro.pretty);
      outcomes = std::move(r).value();
    }
    double total = seconds_since(t0);
    execute_seconds.observe(total);
    executes_total.inc(outcomes.size());
    for (const auto& o : outcomes)
      if (o.error) execute_errors_total.inc();
    auto res = respond(req, http::status::ok, render_exec_results(outcomes, ro, total));
    res.set(kSizeHeader, std::to_string(backend.size()));
    co_return res;
  }

  // The statements of a /db/query or /db/request: a POSTed JSON array, or ?q=
  // for GET (or a POST without a body). Unset when refused: `refused` holds
  // the error response.
  std::optional<std::vector<Statement>> read_statements(const Request& req, const RequestOptions& ro,
                                                        std::string_view endpoint, std::string_view none,
                                                        std::optional<Response>& refused) {
    if (req.method() != http::verb::get && req.method() != http::verb::post) {
      refused = error(req, http::status::method_not_allowed,
                      fmt::format("{} takes GET ?q=… or POST with a JSON array body", endpoint));
      return std::nullopt;
    }
    if (req.method() == http::verb::post && !req.body().empty()) {
      auto parsed = parse_statements(req.body(), opts.json_limits);
      if (!parsed.ok()) {
        refused = error(req, status_for(parsed.error().code), parsed.error().message, ro.pretty);
        return std::nullopt;
      }
      return std::move(parsed).value();
    }
    if (ro.q) return std::vector<Statement>{Statement{*ro.q, {}}};
    refused = error(req, http::status::bad_request,
                    fmt::format("{}: give ?q=SQL or POST a JSON array of statements", none), ro.pretty);
    return std::nullopt;
  }

  asio::awaitable<Response> handle_query(const Request& req, RequestOptions ro) {
    std::optional<Response> bad_request;
    auto read = read_statements(req, ro, "/db/query", "no query", bad_request);
    if (!read) co_return std::move(*bad_request);
    std::vector<Statement> statements = std::move(*read);
    auto accept = req[http::field::accept];
    const bool binary = accept.find("application/octet-stream") != beast::string_view::npos;
    if (binary) {
      ro.proof = true;
      if (statements.size() != 1)
        co_return error(req, http::status::bad_request,
                        fmt::format("the binary proof form (Accept: application/octet-stream) takes exactly one statement, got {}",
                                    statements.size()), ro.pretty);
    }
    if (auto refused = co_await ensure_consistency(req, ro)) co_return std::move(*refused);
    auto t0 = std::chrono::steady_clock::now();
    // Freshness: wait (without holding a worker) until the state reaches min_size.
    if (ro.min_size > 0 && !co_await wait_for_size(ro.min_size, t0 + ro.timeout)) {
      uint64_t have = backend.size();
      if (have < ro.min_size)
        co_return error(req, http::status::service_unavailable,
                        fmt::format("state is at size {}, below min_size {} after waiting {} ms", have, ro.min_size,
                                    ro.timeout.count()), ro.pretty);
    }
    QueryOptions qo{ro.min_size, ro.proof};
    size_t n = statements.size();
    // The lane also renders the answer: the io thread, which every connection
    // shares, only sends it (docs/performance.md "Query results written
    // directly"); unless the read was cheap enough to run there (try_inline).
    struct Answer {
      std::vector<QueryOutcome> outcomes;
      std::string body;  // JSON (not for the binary form)
      double total = 0;
    };
    auto answer = [this, binary, &ro, t0](std::vector<QueryOutcome> outcomes) {
      Answer a;
      a.total = seconds_since(t0);
      if (!binary) a.body = render_query_results(outcomes, ro, a.total);
      a.outcomes = std::move(outcomes);
      return a;
    };
    std::optional<Result<Answer>> answered;
    if (auto tried = try_inline(statements, qo)) {
      if (tried->ok()) {
        answered.emplace(answer(std::move(**tried)));
      } else {
        answered.emplace(tried->take_error());
      }
    }
    LaneSlot slot;
    if (!answered) {
      if (!take_slot(slot, pending_reads, opts.max_pending_reads))
        co_return read_lane_busy(req, ro);
      auto call = [this, st = std::move(statements), qo, &answer]() -> Result<Answer> {
        SWL_ASSIGN(std::vector<QueryOutcome> outcomes, backend.query(st, qo));
        return answer(std::move(outcomes));
      };
      answered.emplace(co_await offload(pool, std::move(call)));
    }
    Result<Answer>& r = *answered;
    query_seconds.observe(r.ok() ? r->total : seconds_since(t0));
    queries_total.inc(n);
    if (!r.ok()) {
      query_errors_total.inc(n);
      co_return error(req, status_for(r.error().code), r.error().to_string(), ro.pretty);
    }
    for (const auto& o : r->outcomes)
      if (o.error) query_errors_total.inc();
    if (binary) {
      const QueryOutcome& o = r->outcomes.front();
      if (o.error) co_return error(req, http::status::bad_request, *o.error, ro.pretty);
      if (o.proof.empty()) co_return error(req, http::status::not_implemented, "this node produced no proof", ro.pretty);
      auto res = respond(req, http::status::ok, std::string(as_chars(o.proof)), "application/octet-stream");
      if (o.size) res.set("X-Swarmlite-Size", std::to_string(*o.size));
      co_return res;
    }
    co_return respond(req, http::status::ok, std::move(r->body));
  }

  // Cheap reads on the io thread (docs/performance.md "Cheap reads on the io
  // thread"): a plain read is tried here, with the backend's budget, while
  // the read lane has nothing running or queued (under load the lane's
  // threads take every read, and the io thread stays free for the sockets).
  // A read the backend stops over its VM-step budget (or does not take)
  // stops reads from being tried here for opts.inline_pause: a workload of
  // costly reads pays at most one bounded trial per pause. A read that took
  // longer than the time budget (a page read from a cold disk, which no
  // budget can interrupt; or a busy machine) pauses them too, and each such
  // read in a row doubles the pause, up to 100 times inline_pause: a node
  // whose reads keep waiting on its disk soon stops trying them here at all.
  static constexpr size_t kInlineMaxStatements = 8;
  static constexpr size_t kInlineMaxSqlBytes = 4096;  // the parse is not budgeted: bound it
  // Also: at most opts.inline_share of each opts.inline_window goes to tries.
  std::chrono::steady_clock::time_point inline_paused_until{};  // io thread only
  std::chrono::steady_clock::time_point inline_window_start{};  // io thread only
  std::chrono::steady_clock::duration inline_window_spent{};    // io thread only
  std::chrono::milliseconds inline_slow_pause = opts.inline_pause;  // io thread only

  std::optional<Result<std::vector<QueryOutcome>>> try_inline(
      const std::vector<Statement>& statements, const QueryOptions& qo) {
    if (qo.proof) return std::nullopt;
    auto r = try_inline_call(
        statements, [&] { return backend.try_query_inline(statements, qo, opts.inline_budget); });
    if (r) inline_reads_total.inc();
    return r;
  }

  // try_inline's rules around any backend try (`call`: nullopt = declined).
  template <class Call>
  auto try_inline_call(const std::vector<Statement>& statements, Call&& call) -> decltype(call()) {
    if (!opts.inline_reads || statements.size() > kInlineMaxStatements) return std::nullopt;
    if (pending_reads.load(std::memory_order_relaxed) != 0) return std::nullopt;
    size_t bytes = 0;
    for (const auto& st : statements) bytes += st.sql.size();
    if (bytes > kInlineMaxSqlBytes) return std::nullopt;
    const auto start = std::chrono::steady_clock::now();
    if (start < inline_paused_until) return std::nullopt;
    if (start - inline_window_start >= opts.inline_window) {
      inline_window_start = start;
      inline_window_spent = {};
    }
    if (inline_window_spent >= std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   opts.inline_window * opts.inline_share))
      return std::nullopt;
    decltype(call()) r;
    try {
      r = call();
    } catch (const std::exception&) {
      r.reset();  // the lane runs it again and reports what it throws (offload)
    }
    const auto end = std::chrono::steady_clock::now();
    inline_window_spent += end - start;
    if (end - start > opts.inline_budget.time) {
      inline_paused_until = end + inline_slow_pause;
      inline_slow_pause = std::min(2 * inline_slow_pause, 100 * opts.inline_pause);
    } else {
      inline_slow_pause = opts.inline_pause;
      if (!r) inline_paused_until = end + opts.inline_pause;
    }
    if (!r) inline_declined_total.inc();
    return r;
  }

  // --- read consistency and the unified endpoint (docs/http-api.md "Read
  // consistency", "The unified endpoint") ---------------------------------

  FreshnessTracker freshness;

  // The backend's listener (any thread): the size may have grown. Nothing
  // when nobody waits; else one post to the io thread, however many calls
  // come before it runs.
  void size_grew() {
    // Pairs with the fence in wait_for_size: either that wait's re-check sees
    // the new size, or this sees its count.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (size_waiter_count.load(std::memory_order_relaxed) == 0) return;
    if (size_wake_posted.exchange(true)) return;
    asio::post(ioc, [this] {
      size_wake_posted = false;  // first: a growth after this posts again
      for (auto* t : size_waiters) t->cancel();
    });
  }

  // A wait's timer in size_waiters while the wait lasts.
  struct SizeWaiter {
    Impl& s;
    asio::steady_timer* timer;
    SizeWaiter(Impl& i, asio::steady_timer* t) : s(i), timer(t) {
      s.size_waiters.insert(timer);
      s.size_waiter_count.fetch_add(1);
      std::atomic_thread_fence(std::memory_order_seq_cst);  // see size_grew
    }
    ~SizeWaiter() {
      s.size_waiters.erase(timer);
      s.size_waiter_count.fetch_sub(1);
    }
    SizeWaiter(const SizeWaiter&) = delete;
    SizeWaiter& operator=(const SizeWaiter&) = delete;
  };

  // Waits on a timer (no worker held) until the node applied `target` entries
  // or `deadline` passes; true when it has. A backend that notifies wakes the
  // wait as soon as its size grows (size_grew cancels the timer); otherwise
  // the size is re-checked every min_size_poll.
  asio::awaitable<bool> wait_for_size(uint64_t target, std::chrono::steady_clock::time_point deadline) {
    if (backend.size() >= target) co_return true;
    asio::steady_timer timer(ioc);
    SizeWaiter registered(*this, &timer);
    while (backend.size() < target && std::chrono::steady_clock::now() < deadline) {
      if (size_notifies) timer.expires_at(deadline);
      else timer.expires_after(opts.min_size_poll);
      error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec && ec != asio::error::operation_aborted) break;  // aborted: size_grew woke us
    }
    co_return backend.size() >= target;
  }

  // level=strong|linearizable: wait until this node applied the primary's
  // current size (the primary: at once; a peer: asks GET /db/size of its
  // --primary-url, or without one uses the newest head size it knows of).
  // freshness=D (other levels, peers): refuse a state not known current within
  // D. The response to give instead of answering, or nothing.
  asio::awaitable<std::optional<Response>> ensure_consistency(const Request& req, const RequestOptions& ro) {
    using Clock = std::chrono::steady_clock;
    if (backend.accepts_writes()) co_return std::nullopt;  // the primary's state is the current one
    const auto deadline = Clock::now() + ro.timeout;
    if (level_is_strong(ro.level)) {
      uint64_t target = 0;
      std::string source;
      if (opts.primary_url) {
        source = fmt::format("the primary at {}", *opts.primary_url);
        auto url = parse_http_url(*opts.primary_url);
        if (!url.ok())
          co_return error(req, http::status::service_unavailable,
                          fmt::format("level={}: bad --primary-url: {}", ro.level, url.error().message), ro.pretty);
        HttpRequest sr;
        sr.target = "/db/size";
        HttpClientOptions co{std::max(ro.timeout, std::chrono::milliseconds(1)), 4096, opts.tcp_no_delay};
        // In the read lane (a slow primary must not hold up /status and /metrics).
        LaneSlot slot;
        if (!take_slot(slot, pending_reads, opts.max_pending_reads)) {
          busy_total.inc();
          co_return error(req, http::status::service_unavailable,
                          fmt::format("busy: {} read requests are already running or queued (the cap); try again later",
                                      opts.max_pending_reads),
                          ro.pretty);
        }
        auto call = [u = std::move(url).value(), sr, co] { return http_call(u, sr, co); };
        auto r = co_await offload(pool, std::move(call));
        std::string why;
        if (!r.ok()) {
          why = r.error().message;
        } else if (r->status != 200) {
          why = fmt::format("GET /db/size answered {}", r->status);
        } else {
          auto doc = nlohmann::json::parse(r->body, nullptr, false);
          if (doc.is_object() && doc.contains("size") && doc["size"].is_number_unsigned())
            target = doc["size"].get<uint64_t>();
          else
            why = "GET /db/size did not answer {\"size\": N}";
        }
        if (!why.empty()) {
          const bool timed_out = why.find("did not answer within") != std::string::npos;
          co_return error(req, timed_out ? http::status::gateway_timeout : http::status::service_unavailable,
                          fmt::format("level={}: cannot learn the current size from {}: {}", ro.level, source, why),
                          ro.pretty);
        }
      } else {
        source = "the newest head this peer has seen from the swarm (no --primary-url)";
        auto call = [this]() -> Result<uint64_t> { return backend.known_head_size(); };
        auto k = co_await offload(control_pool, std::move(call));
        if (!k.ok()) co_return error(req, status_for(k.error().code), k.error().to_string(), ro.pretty);
        target = *k;
      }
      if (!co_await wait_for_size(target, deadline))
        co_return error(req, http::status::service_unavailable,
                        fmt::format("level={}: this node has applied {} entries, {} is at size {}; not caught up "
                                    "after waiting {} ms",
                                    ro.level, backend.size(), source, target, ro.timeout.count()),
                        ro.pretty);
      co_return std::nullopt;
    }
    if (ro.freshness) {
      auto call = [this]() -> Result<uint64_t> { return backend.known_head_size(); };
      uint64_t applied = backend.size();
      auto k = co_await offload(control_pool, std::move(call));
      if (!k.ok()) co_return error(req, status_for(k.error().code), k.error().to_string(), ro.pretty);
      auto st = freshness.check(applied, *k, *ro.freshness, Clock::now());
      if (!st.ok()) co_return error(req, http::status::service_unavailable, st.error().message, ro.pretty);
    }
    co_return std::nullopt;
  }

  // What running some of a /db/request's writes gave: one result object per
  // statement sent (fewer when a transaction stopped), the log size the reads
  // after them must see, or the response that ends the request.
  struct WriteRun {
    std::optional<Response> fail;
    std::vector<nlohmann::json> results;
    uint64_t size = 0;
  };

  asio::awaitable<WriteRun> run_writes(const Request& req, const RequestOptions& ro, std::vector<Statement> st,
                                       bool transaction) {
    WriteRun out;
    if (backend.accepts_writes()) {
      if (!authorized(req)) {
        auto res = error(req, http::status::unauthorized,
                         "writes need the write token (Authorization: Bearer <token>, or as the basic-auth password)",
                         ro.pretty);
        res.set(http::field::www_authenticate, "Basic realm=\"swarmlite\"");
        out.fail = std::move(res);
        co_return out;
      }
      LaneSlot slot;
      if (!take_slot(slot, pending_writes, opts.max_pending_writes)) {
        busy_total.inc();
        out.fail = error(req, http::status::service_unavailable,
                         fmt::format("busy: {} write requests are already running or queued (the cap); try again later",
                                     opts.max_pending_writes),
                         ro.pretty);
        co_return out;
      }
      auto t0 = std::chrono::steady_clock::now();
      auto r = co_await execute_writes(std::move(st), transaction);
      execute_seconds.observe(seconds_since(t0));
      if (!r.ok()) {
        out.fail = error(req, status_for(r.error().code), r.error().to_string(), ro.pretty);
        co_return out;
      }
      executes_total.inc(r->size());
      for (const auto& o : *r) {
        if (o.error) execute_errors_total.inc();
        out.results.push_back(exec_result_json(o, ro));
      }
      out.size = backend.size();
      co_return out;
    }
    if (!opts.primary_url) {
      for (size_t i = 0; i < st.size(); ++i)
        out.results.push_back({{"error",
                                "refused: this node is a read-only peer and knows no primary to send writes to (start "
                                "it with --primary-url); the read guard does not take this statement as a read"}});
      co_return out;
    }
    std::string target = transaction ? "/db/execute?transaction" : "/db/execute";
    auto forwarded = co_await call_primary(req, ro, "POST", target, statements_to_json(st));
    if (auto* fail = std::get_if<Response>(&forwarded)) {
      out.fail = std::move(*fail);
      co_return out;
    }
    auto& r = std::get<HttpResponse>(forwarded);
    forwarded_writes_total.inc();
    if (r.status != 200) {
      auto res = respond(req, static_cast<http::status>(r.status), std::move(r.body),
                         r.content_type.empty() ? std::string_view("application/json") : std::string_view(r.content_type));
      if (r.status == 401) res.set(http::field::www_authenticate, "Basic realm=\"swarmlite\"");
      out.fail = std::move(res);
      co_return out;
    }
    auto results = results_from_execute_body(r.body);
    uint64_t size = 0;
    auto [p, ec] = std::from_chars(r.swarmlite_size.data(), r.swarmlite_size.data() + r.swarmlite_size.size(), size);
    const bool size_ok = !r.swarmlite_size.empty() && ec == std::errc() && p == r.swarmlite_size.data() + r.swarmlite_size.size();
    if (!results.ok() || !size_ok) {
      out.fail = error(req, http::status::bad_gateway,
                       fmt::format("the primary at {} ran the writes but its answer {}; reads after them cannot be "
                                   "answered (they would not be sure to see the writes)",
                                   *opts.primary_url,
                                   !results.ok() ? results.error().message
                                                 : std::string("has no X-Swarmlite-Size header")),
                       ro.pretty);
      co_return out;
    }
    out.results = std::move(results).value();
    out.size = size;
    co_return out;
  }

  // Runs reads (one snapshot) once this node applied `need` entries.
  asio::awaitable<std::variant<Response, std::vector<nlohmann::json>>> run_reads(const Request& req,
                                                                                 const RequestOptions& ro,
                                                                                 std::vector<Statement> st,
                                                                                 uint64_t need) {
    auto t0 = std::chrono::steady_clock::now();
    if (!co_await wait_for_size(need, t0 + ro.timeout))
      co_return error(req, http::status::service_unavailable,
                      fmt::format("read-your-writes: this node has applied {} entries, the writes before this read "
                                  "reached size {}; not caught up after waiting {} ms",
                                  backend.size(), need, ro.timeout.count()),
                      ro.pretty);
    LaneSlot slot;
    if (!take_slot(slot, pending_reads, opts.max_pending_reads)) co_return read_lane_busy(req, ro);
    QueryOptions qo{need, false};
    size_t n = st.size();
    auto call = [this, s = std::move(st), qo] { return backend.query(s, qo); };
    auto r = co_await offload(pool, std::move(call));
    query_seconds.observe(seconds_since(t0));
    queries_total.inc(n);
    if (!r.ok()) co_return error(req, status_for(r.error().code), r.error().to_string(), ro.pretty);
    std::vector<nlohmann::json> out;
    for (const auto& o : *r) {
      if (o.error) query_errors_total.inc();
      out.push_back(query_result_json(o, ro));
    }
    co_return out;
  }

  // Classifies statements[from..] at this node's state once it applied `need`.
  asio::awaitable<std::variant<Response, std::vector<StatementClass>>> classify_from(
      const Request& req, const RequestOptions& ro, const std::vector<Statement>& statements, size_t from,
      uint64_t need) {
    if (!co_await wait_for_size(need, std::chrono::steady_clock::now() + ro.timeout))
      co_return error(req, http::status::service_unavailable,
                      fmt::format("read-your-writes: this node has applied {} entries, the writes before reached "
                                  "size {}; not caught up after waiting {} ms",
                                  backend.size(), need, ro.timeout.count()),
                      ro.pretty);
    std::vector<Statement> rest(statements.begin() + static_cast<std::ptrdiff_t>(from), statements.end());
    auto call = [this, s = std::move(rest)] { return backend.classify(s); };
    auto r = co_await offload(pool, std::move(call));
    if (!r.ok()) co_return error(req, status_for(r.error().code), r.error().to_string(), ro.pretty);
    if (r->size() != statements.size() - from)
      co_return error(req, http::status::internal_server_error, "classify returned the wrong number of results");
    co_return std::move(r).value();
  }

  asio::awaitable<Response> handle_request(const Request& req, const RequestOptions& ro) {
    std::optional<Response> bad_request;
    auto read = read_statements(req, ro, "/db/request", "no statements", bad_request);
    if (!read) co_return std::move(*bad_request);
    std::vector<Statement> statements = std::move(*read);
    if (ro.proof)
      co_return error(req, http::status::bad_request,
                      "/db/request does not serve proofs; ask /db/query with proof=1", ro.pretty);
    if (auto refused = co_await ensure_consistency(req, ro)) co_return std::move(*refused);
    auto t0 = std::chrono::steady_clock::now();
    const size_t n = statements.size();
    std::vector<nlohmann::json> slots(n);
    if (n == 0) co_return respond(req, http::status::ok, render_request_results(slots, ro, seconds_since(t0)));
    // Classified, and run at once when every statement is a read: on the io
    // thread when cheap (try_inline's rules), else in one trip to the lane.
    // A request of reads is answered as /db/query answers them, rendered
    // where they ran (the same text its slots would give: http_json_test).
    auto render_reads = [&ro, t0](const HttpBackend::Classified& c) {
      return c.outcomes ? render_query_results(*c.outcomes, ro, seconds_since(t0)) : std::string{};
    };
    std::string body;
    auto first = try_inline_call(statements, [&] {
      return backend.try_classify_and_read_inline(statements, opts.inline_budget);
    });
    if (first && first->ok() && first->value().outcomes) {
      inline_reads_total.inc();
      body = render_reads(first->value());
    }
    if (!first) {
      LaneSlot slot;
      if (!take_slot(slot, pending_reads, opts.max_pending_reads))
        co_return read_lane_busy(req, ro);
      auto call = [this, &statements,
                   &render_reads]() -> Result<std::pair<HttpBackend::Classified, std::string>> {
        SWL_ASSIGN(HttpBackend::Classified c, backend.classify_and_read(statements));
        std::string rendered = render_reads(c);
        return std::make_pair(std::move(c), std::move(rendered));
      };
      auto ran = co_await offload(pool, std::move(call));
      if (!ran.ok()) {
        first.emplace(ran.take_error());
      } else {
        body = std::move(ran->second);
        first.emplace(std::move(ran->first));
      }
    }
    if (!first->ok())
      co_return error(req, status_for(first->error().code), first->error().to_string(), ro.pretty);
    HttpBackend::Classified& done = first->value();
    if (done.classes.size() != n || (done.outcomes && done.outcomes->size() != n))
      co_return error(req, http::status::internal_server_error,
                      "classify returned the wrong number of results");
    if (done.outcomes) {
      query_seconds.observe(seconds_since(t0));
      queries_total.inc(n);
      for (const auto& o : *done.outcomes)
        if (o.error) query_errors_total.inc();
      co_return respond(req, http::status::ok, std::move(body));
    }
    std::vector<StatementClass> kinds = std::move(done.classes);
    // A peer behind the newest head it knows of may lack a table the primary
    // has: prepare the statements that did not prepare again once it caught up
    // with that head (bounded by timeout; still behind: their errors stand).
    const bool any_invalid = std::any_of(kinds.begin(), kinds.end(),
                                         [](const StatementClass& c) { return c.kind == StatementKind::invalid; });
    if (any_invalid && !backend.accepts_writes()) {
      auto call = [this]() -> Result<uint64_t> { return backend.known_head_size(); };
      auto known = co_await offload(control_pool, std::move(call));
      if (known.ok() && *known > backend.size() &&
          co_await wait_for_size(*known, std::chrono::steady_clock::now() + ro.timeout)) {
        auto again = co_await classify_from(req, ro, statements, 0, *known);
        if (auto* fail = std::get_if<Response>(&again)) co_return std::move(*fail);
        kinds = std::move(std::get<std::vector<StatementClass>>(again));
      }
    }
    const bool any_write = std::any_of(kinds.begin(), kinds.end(),
                                       [](const StatementClass& c) { return c.kind != StatementKind::read; });
    if (any_write && !backend.accepts_writes() && opts.primary_url && (ro.redirect || opts.redirect_writes)) {
      const std::string target(req.target().data(), req.target().size());
      auto res = error(req, http::status::moved_permanently,
                       fmt::format("this node is a read-only peer; send requests with writes to the primary at {}",
                                   *opts.primary_url),
                       ro.pretty);
      res.set(http::field::location, *opts.primary_url + target);
      co_return res;
    }
    auto pick = [&statements](const std::vector<size_t>& idx) {
      std::vector<Statement> out;
      for (size_t i : idx) out.push_back(statements[i]);
      return out;
    };
    if (ro.transaction && any_write) {
      // All statements the guard does not read (writes, and those that do not
      // prepare against the state before the request: the primary judges them)
      // in one transaction; the reads after it, from a state that includes it.
      std::vector<size_t> writes, reads;
      for (size_t i = 0; i < n; ++i) (kinds[i].kind == StatementKind::read ? reads : writes).push_back(i);
      WriteRun w = co_await run_writes(req, ro, pick(writes), true);
      if (w.fail) co_return std::move(*w.fail);
      std::optional<size_t> failed;  // index into `statements`
      for (size_t k = 0; k < writes.size(); ++k) {
        if (k >= w.results.size() || w.results[k].contains("error")) {
          failed = writes[std::min(k, writes.size() - 1)];
          break;
        }
        slots[writes[k]] = w.results[k];
      }
      if (failed) {
        // As /db/execute?transaction: nothing written, results end at the failing statement.
        size_t k = static_cast<size_t>(std::find(writes.begin(), writes.end(), *failed) - writes.begin());
        slots[*failed] = k < w.results.size() ? w.results[k]
                                              : nlohmann::json{{"error", "the transaction failed at this statement"}};
        for (size_t i : reads)
          if (i < *failed)
            slots[i] = {{"error", fmt::format("not run: the transaction failed at statement {}", *failed)}};
        slots.resize(*failed + 1);
        co_return respond(req, http::status::ok, render_request_results(slots, ro, seconds_since(t0)));
      }
      if (!reads.empty()) {
        auto rr = co_await run_reads(req, ro, pick(reads), w.size);
        if (auto* fail = std::get_if<Response>(&rr)) co_return std::move(*fail);
        auto& results = std::get<std::vector<nlohmann::json>>(rr);
        for (size_t k = 0; k < reads.size() && k < results.size(); ++k) slots[reads[k]] = std::move(results[k]);
      }
      co_return respond(req, http::status::ok, render_request_results(slots, ro, seconds_since(t0)));
    }
    // Without ?transaction: runs of consecutive reads or writes, in order;
    // each write its own entry; a read sees every write before it.
    uint64_t need = 0;
    bool wrote_since_classify = false;
    size_t i = 0;
    while (i < n) {
      if (kinds[i].kind == StatementKind::invalid && wrote_since_classify) {
        // It may name what an earlier write of this request created.
        auto again = co_await classify_from(req, ro, statements, i, need);
        if (auto* fail = std::get_if<Response>(&again)) co_return std::move(*fail);
        auto& fresh = std::get<std::vector<StatementClass>>(again);
        for (size_t k = 0; k < fresh.size(); ++k) kinds[i + k] = std::move(fresh[k]);
        wrote_since_classify = false;
      }
      if (kinds[i].kind == StatementKind::invalid) {
        slots[i] = {{"error", kinds[i].error}};
        ++i;
        continue;
      }
      const StatementKind kind = kinds[i].kind;
      std::vector<size_t> run;
      while (i < n && kinds[i].kind == kind) run.push_back(i++);
      if (kind == StatementKind::write) {
        WriteRun w = co_await run_writes(req, ro, pick(run), false);
        if (w.fail) co_return std::move(*w.fail);
        for (size_t k = 0; k < run.size(); ++k)
          slots[run[k]] = k < w.results.size() ? w.results[k] : nlohmann::json{{"error", "no result from the primary"}};
        need = std::max(need, w.size);
        wrote_since_classify = true;
      } else {
        auto rr = co_await run_reads(req, ro, pick(run), need);
        if (auto* fail = std::get_if<Response>(&rr)) co_return std::move(*fail);
        auto& results = std::get<std::vector<nlohmann::json>>(rr);
        for (size_t k = 0; k < run.size(); ++k)
          slots[run[k]] = k < results.size() ? std::move(results[k]) : nlohmann::json{{"error", "no result"}};
      }
    }
    co_return respond(req, http::status::ok, render_request_results(slots, ro, seconds_since(t0)));
  }

  asio::awaitable<Response> route(const Request& req) {
    std::string_view target(req.target().data(), req.target().size());
    size_t qpos = target.find('?');
    std::string_view path = target.substr(0, qpos);
    std::string_view qs = qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);
    if (path == "/db/snapshot" || path == "/db/snapshot/pages") co_return co_await handle_snapshot(req, path, qs);
    if (path == "/db/pages" || path == "/db/leaves") co_return co_await handle_pages(req, path, qs);
    if (path == "/db/changes") co_return co_await handle_changes(req, path, qs);
    auto ro = parse_request_options(qs);
    if (!ro.ok()) co_return error(req, http::status::bad_request, ro.error().message);
    if (path == "/db/execute") co_return co_await handle_execute(req, *ro);
    if (path == "/db/query") co_return co_await handle_query(req, *ro);
    if (path == "/db/request") co_return co_await handle_request(req, *ro);
    if (path == "/db/size" && (req.method() == http::verb::get || req.method() == http::verb::head))
      co_return respond(req, http::status::ok,
                        dump_json({{"size", backend.size()}, {"primary", backend.accepts_writes()}}, ro->pretty));
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

  // One parameter of the query string: nullopt when absent, an error when
  // given twice.
  static Result<std::optional<std::string_view>> query_param(std::string_view qs, std::string_view path,
                                                             std::string_view key) {
    std::optional<std::string_view> found;
    for (size_t i = 0; i <= qs.size();) {
      size_t amp = std::min(qs.find('&', i), qs.size());
      std::string_view part = qs.substr(i, amp - i);
      i = amp + 1;
      size_t eq = part.find('=');
      if (part.substr(0, eq) != key) continue;
      if (found) return make_error(Errc::invalid_argument, "{}: {} is given twice", path, key);
      found = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
    }
    return found;
  }

  // GET /db/pages?size=N&pages=LIST and GET /db/leaves?size=N&pages=LIST
  // (docs/http-api.md "Pages"): the encoded PageSet / LeafSet of the pinned
  // head (docs/formats/pages.md), read on the read lane (a pread and a hash
  // per page); 410 {"error", "newest"} when head N is not the pinned one.
  asio::awaitable<Response> handle_pages(const Request& req, std::string_view path, std::string_view qs) {
    if (req.method() != http::verb::get)
      co_return error(req, http::status::method_not_allowed, fmt::format("{} takes GET", path));
    const PageServer* server = backend.page_server();
    if (!server) co_return error(req, http::status::not_found, "this node serves no pages");
    const bool pages = path == "/db/pages";
    uint64_t size = 0;
    auto size_text = query_param(qs, path, "size");
    if (!size_text.ok()) co_return error(req, http::status::bad_request, size_text.error().message);
    if (*size_text) {
      std::string_view t = **size_text;
      auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), size);
      if (t.empty() || ec != std::errc() || end != t.data() + t.size())
        co_return error(req, http::status::bad_request,
                        fmt::format("{}: size={} is not a decimal number (0: the newest pinned head)", path, t));
    }
    auto list_text = query_param(qs, path, "pages");
    if (!list_text.ok()) co_return error(req, http::status::bad_request, list_text.error().message);
    if (!*list_text)
      co_return error(req, http::status::bad_request,
                      fmt::format("{}: pages= is missing (size=N&pages=1,5,9-12)", path));
    auto pgnos = parse_page_list(**list_text, pages ? kMaxPagesPerRequest : kMaxLeavesPerRequest);
    if (!pgnos.ok())
      co_return error(req, http::status::bad_request, fmt::format("{}: pages=: {}", path, pgnos.error().message));
    LaneSlot slot;
    if (!take_slot(slot, pending_reads, opts.max_pending_reads)) {
      busy_total.inc();
      co_return error(req, http::status::service_unavailable,
                      fmt::format("busy: {} read requests are already running or queued (the cap); try again later",
                                  opts.max_pending_reads));
    }
    struct Answer {
      uint64_t newest = 0;
      Result<Bytes> set = Bytes{};
    };
    auto call = [server, size, pages, pgnos = std::move(pgnos).value()]() -> Result<Answer> {
      Answer a;
      if (pages) {
        auto s = server->pinned_pages(size, pgnos, &a.newest);
        a.set = s.ok() ? Result<Bytes>(encode_page_set(*s)) : Result<Bytes>(s.take_error());
      } else {
        auto s = server->pinned_leaves(size, pgnos, &a.newest);
        a.set = s.ok() ? Result<Bytes>(encode_leaf_set(*s)) : Result<Bytes>(s.take_error());
      }
      return a;
    };
    auto answer = co_await offload(pool, std::move(call));
    if (!answer.ok()) co_return error(req, status_for(answer.error().code), answer.error().message);
    Result<Bytes>& set = answer->set;
    if (!set.ok()) {
      if (set.error().code == Errc::not_found && answer->newest != 0)  // ask again at the newest
        co_return respond(req, http::status::gone,
                          dump_json({{"error", set.error().message}, {"newest", answer->newest}}, false));
      co_return error(req, status_for(set.error().code), fmt::format("{}: {}", path, set.error().message));
    }
    Bytes bytes = std::move(set).value();
    co_return respond(req, http::status::ok, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                      "application/octet-stream");
  }

  // GET /db/changes?since=M[&size=N] (docs/http-api.md "Changes"): the encoded
  // ChangeSet (docs/formats/pages.md "Change set") from head M to the pinned
  // head N (0 or absent: the newest), on the read lane; 410 {"error",
  // "newest"} when N is not the pinned one; 403 when M is not in the node's
  // change history, 413 past the cap on changed pages, 503 on a node with
  // nothing pinned: each tells the client to ask /db/leaves instead.
  asio::awaitable<Response> handle_changes(const Request& req, std::string_view path, std::string_view qs) {
    if (req.method() != http::verb::get)
      co_return error(req, http::status::method_not_allowed, fmt::format("{} takes GET", path));
    const PageServer* server = backend.page_server();
    if (!server) co_return error(req, http::status::service_unavailable, "this node serves no pages");
    uint64_t values[2] = {0, 0};
    const std::string_view names[2] = {"since", "size"};
    for (int i = 0; i < 2; ++i) {
      auto text = query_param(qs, path, names[i]);
      if (!text.ok()) co_return error(req, http::status::bad_request, text.error().message);
      if (!*text) {
        if (i == 0) co_return error(req, http::status::bad_request, fmt::format("{}: since= is missing (since=M[&size=N])", path));
        continue;
      }
      std::string_view t = **text;
      auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), values[i]);
      if (t.empty() || ec != std::errc() || end != t.data() + t.size())
        co_return error(req, http::status::bad_request, fmt::format("{}: {}={} is not a decimal number", path, names[i], t));
    }
    LaneSlot slot;
    if (!take_slot(slot, pending_reads, opts.max_pending_reads)) {
      busy_total.inc();
      co_return error(req, http::status::service_unavailable,
                      fmt::format("busy: {} read requests are already running or queued (the cap); try again later",
                                  opts.max_pending_reads));
    }
    struct Answer {
      uint64_t newest = 0;
      Result<Bytes> set = Bytes{};
    };
    auto call = [server, since = values[0], size = values[1]]() -> Result<Answer> {
      Answer a;
      auto s = server->pinned_changes(since, size, &a.newest);
      a.set = s.ok() ? Result<Bytes>(encode_change_set(*s)) : Result<Bytes>(s.take_error());
      return a;
    };
    auto answer = co_await offload(pool, std::move(call));
    if (!answer.ok()) co_return error(req, status_for(answer.error().code), answer.error().message);
    Result<Bytes>& set = answer->set;
    if (!set.ok()) {
      if (set.error().code == Errc::not_found && answer->newest != 0)
        co_return respond(req, http::status::gone,
                          dump_json({{"error", set.error().message}, {"newest", answer->newest}}, false));
      co_return error(req, status_for(set.error().code), fmt::format("{}: {}", path, set.error().message));
    }
    Bytes bytes = std::move(set).value();
    co_return respond(req, http::status::ok, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                      "application/octet-stream");
  }

  // One decimal parameter of /db/snapshot/pages, within [lo, hi].
  static Result<uint64_t> snapshot_param(std::string_view qs, std::string_view key, uint64_t lo, uint64_t hi) {
    std::optional<std::string_view> found;
    for (size_t i = 0; i <= qs.size();) {
      size_t amp = std::min(qs.find('&', i), qs.size());
      std::string_view part = qs.substr(i, amp - i);
      i = amp + 1;
      size_t eq = part.find('=');
      if (part.substr(0, eq) != key) continue;
      if (found) return make_error(Errc::invalid_argument, "/db/snapshot/pages: {} is given twice", key);
      found = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
    }
    if (!found) return make_error(Errc::invalid_argument, "/db/snapshot/pages: {}= is missing (size=N&from=P&count=K)", key);
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(found->data(), found->data() + found->size(), v);
    if (found->empty() || ec != std::errc() || end != found->data() + found->size())
      return make_error(Errc::invalid_argument, "/db/snapshot/pages: {}={} is not a decimal number", key, *found);
    if (v < lo || v > hi)
      return make_error(Errc::invalid_argument, "/db/snapshot/pages: {}={} is outside {}..{}", key, v, lo, hi);
    return v;
  }

  // GET /db/snapshot and GET /db/snapshot/pages (docs/http-api.md "Snapshots").
  // The manifest may make a copy of the database: it runs on the backup lane
  // under its cap; chunks (a pread and a multiproof) run on the read lane.
  asio::awaitable<Response> handle_snapshot(const Request& req, std::string_view path, std::string_view qs) {
    if (req.method() != http::verb::get)
      co_return error(req, http::status::method_not_allowed, fmt::format("{} takes GET", path));
    SnapshotSource* snaps = backend.snapshots();
    if (!snaps) co_return error(req, http::status::not_found, "this node serves no snapshots");
    LaneSlot slot;
    if (path == "/db/snapshot") {
      if (!take_slot(slot, pending_backups, opts.max_backups)) {
        busy_total.inc();
        co_return error(req, http::status::service_unavailable,
                        fmt::format("busy: {} backups or snapshots are being made (cap {})", opts.max_backups,
                                    opts.max_backups));
      }
      auto call = [this, snaps]() -> Result<SnapshotManifest> { return snaps->newest(&stopped); };
      auto m = co_await offload(backup_pool, std::move(call));
      if (!m.ok()) co_return error(req, status_for(m.error().code), m.error().to_string());
      nlohmann::json doc{{"size", m->head.size},
                         {"page_count", m->head.page_count},
                         {"page_size", m->page_size},
                         {"chunk_pages", m->chunk_pages},
                         {"state_root", to_hex(m->head.state_root)},
                         {"head", to_hex(encode_head(m->head))}};
      co_return respond(req, http::status::ok, dump_json(doc, false));
    }
    auto size = snapshot_param(qs, "size", 1, std::numeric_limits<uint64_t>::max());
    if (!size.ok()) co_return error(req, http::status::bad_request, size.error().message);
    auto from = snapshot_param(qs, "from", 1, std::numeric_limits<uint32_t>::max());
    if (!from.ok()) co_return error(req, http::status::bad_request, from.error().message);
    auto count = snapshot_param(qs, "count", 1, kMaxChunkPageBytes / 512);
    if (!count.ok()) co_return error(req, http::status::bad_request, count.error().message);
    if (!take_slot(slot, pending_reads, opts.max_pending_reads)) {
      busy_total.inc();
      co_return error(req, http::status::service_unavailable,
                      fmt::format("busy: {} read requests are already running or queued (the cap); try again later",
                                  opts.max_pending_reads));
    }
    auto call = [snaps, n = *size, p = static_cast<uint32_t>(*from), k = static_cast<uint32_t>(*count)] {
      return snaps->chunk(n, p, k);
    };
    auto chunk = co_await offload(pool, std::move(call));
    if (!chunk.ok()) {
      if (chunk.error().code == Errc::not_found)  // gone: the fetcher starts again at the newest
        co_return respond(req, http::status::gone,
                          dump_json({{"error", chunk.error().message}, {"newest", snaps->newest_held()}}, false));
      co_return error(req, status_for(chunk.error().code), chunk.error().message);
    }
    Bytes bytes = std::move(chunk).value();
    co_return respond(req, http::status::ok, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                      "application/octet-stream");
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

  static bool is_load(const Request::header_type& head) {
    std::string_view target(head.target().data(), head.target().size());
    return target.substr(0, target.find('?')) == "/db/load";
  }

  // The upload's spool file, removed with whatever SQLite made beside it.
  struct SpoolFile {
    std::filesystem::path path;
    ~SpoolFile() { remove(); }
    void remove() {
      if (path.empty()) return;
      std::error_code ec;
      for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
        std::filesystem::remove(path.string() + suffix, ec);
      }
      path.clear();
    }
  };

  // POST /db/load (docs/http-api.md "Loading a database"), read straight from
  // the header: everything that can refuse it (method, role, token, declared
  // size, a busy write lane) answers before a byte of the body is read, and the
  // connection then closes (the unread body). The body goes to a spool file
  // under max_load_bytes, then the backend loads it on the write lane. Returns
  // whether the connection stays open.
  asio::awaitable<bool> serve_load(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                   http::request_parser<http::string_body>& parser) {
    const Request head(parser.get().base());
    const bool bodiless = parser.is_done();  // Content-Length: 0, or no body at all
    std::optional<Response> refused;
    LaneSlot slot;
    if (head.method() != http::verb::post) {
      refused.emplace(error(head, http::status::method_not_allowed,
                            "/db/load takes POST with a SQLite file (Content-Type: application/octet-stream) "
                            "or a SQL dump (text) as the body"));
    } else if (!backend.accepts_writes() && !opts.primary_url) {
      refused.emplace(error(head, http::status::forbidden,
                            "this node is a read-only peer and knows no primary to load into (start it with "
                            "--primary-url)"));
    } else if (!backend.accepts_writes()) {
      // A load is not forwarded (it would stream the whole upload through this
      // peer): 307 makes the client send the same POST to the primary.
      refused.emplace(error(head, http::status::temporary_redirect,
                            fmt::format("this node is a read-only peer; load into the primary at {}",
                                        *opts.primary_url)));
      refused->set(http::field::location, *opts.primary_url + std::string(head.target()));
    } else if (!authorized(head)) {
      refused.emplace(error(head, http::status::unauthorized,
                            "loads need the write token (Authorization: Bearer <token>, or as the basic-auth "
                            "password)"));
      refused->set(http::field::www_authenticate, "Basic realm=\"swarmlite\"");
    } else if (bodiless) {
      refused.emplace(error(head, http::status::bad_request, "/db/load: the body is empty"));
    } else if (parser.content_length() && *parser.content_length() > opts.max_load_bytes) {
      refused.emplace(error(head, http::status::payload_too_large,
                            fmt::format("upload of {} bytes is over the load cap of {} bytes",
                                        *parser.content_length(), opts.max_load_bytes)));
    } else if (!take_slot(slot, pending_writes, opts.max_pending_writes)) {
      busy_total.inc();
      refused.emplace(error(head, http::status::service_unavailable,
                            fmt::format("busy: {} write requests are already running or queued (the cap); "
                                        "try again later",
                                        opts.max_pending_writes)));
    }
    if (refused) {
      refused->keep_alive(bodiless && head.keep_alive());  // else the unread body follows
      const bool sent = co_await send(stream, *refused);
      if (sent && !bodiless) co_await drain(stream);
      co_return sent && refused->keep_alive();
    }
    SpoolFile spool;
    {
      static std::atomic<uint64_t> counter{0};
      std::error_code ec;
      std::filesystem::path dir = opts.load_dir.empty() ? std::filesystem::temp_directory_path(ec) : opts.load_dir;
      spool.path = dir / fmt::format(".swarmlite-load-{}-{}.upload", ::getpid(), counter.fetch_add(1));
    }
    http::request_parser<http::file_body> upload(std::move(parser));
    upload.body_limit(opts.max_load_bytes);
    error_code ec;
    upload.get().body().open(spool.path.c_str(), beast::file_mode::write_new, ec);
    if (ec) {
      co_await refuse(stream, http::status::internal_server_error,
                      fmt::format("/db/load: cannot create the spool file {}: {}", spool.path.string(),
                                  ec.message()));
      co_return false;
    }
    if (beast::iequals(head[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return false;
    }
    stream.expires_after(opts.load_timeout);
    co_await http::async_read(stream, buffer, upload, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      error_code closed;
      upload.get().body().file().close(closed);
      spool.remove();  // before answering: nothing of a refused upload stays
      if (ec == http::error::body_limit) {
        co_await refuse(stream, http::status::payload_too_large,
                        fmt::format("upload over the load cap of {} bytes", opts.max_load_bytes));
        co_await drain(stream);
      } else {
        co_await refuse_unreadable(stream, ec, "upload");
      }
      co_return false;
    }
    upload.get().body().file().close(ec);
    std::error_code size_ec;
    const uint64_t bytes = std::filesystem::file_size(spool.path, size_ec);
    if (size_ec) {
      Response res = error(head, http::status::internal_server_error,
                           fmt::format("/db/load: the spool file {}: {}", spool.path.string(), size_ec.message()));
      co_return co_await send(stream, res) && false;
    }
    bytes_in.inc(bytes);
    // The SQLite file header's magic decides, as rqlite does; a client that
    // says octet-stream but sends something else gets told so.
    LoadFormat format = LoadFormat::sql;
    {
      char magic[16] = {};
      std::ifstream in(spool.path, std::ios::binary);
      in.read(magic, sizeof magic);
      if (in.gcount() == sizeof magic && std::memcmp(magic, "SQLite format 3\0", sizeof magic) == 0) {
        format = LoadFormat::sqlite;
      } else if (beast::iequals(head[http::field::content_type], "application/octet-stream")) {
        spool.remove();  // before answering, as below
        Response res = error(head, http::status::bad_request,
                             "/db/load: the body is sent as application/octet-stream but is not a SQLite "
                             "database (no \"SQLite format 3\" header); send SQL dumps as text/plain");
        res.keep_alive(head.keep_alive());
        co_return co_await send(stream, res) && res.keep_alive();
      }
    }
    LoadRequest load{format, spool.path, bytes, std::chrono::steady_clock::now() + opts.load_timeout, &stopped};
    auto t0 = std::chrono::steady_clock::now();
    auto call = [this, load] { return backend.load(load); };
    auto r = co_await offload(write_pool, std::move(call));
    spool.remove();  // before answering: a client that got its answer finds no upload left
    execute_seconds.observe(seconds_since(t0));
    Response res = r.ok() ? respond(head, http::status::ok, render_load(*r, seconds_since(t0)))
                          : error(head, status_for(r.error().code), r.error().to_string());
    res.set(kSizeHeader, std::to_string(backend.size()));
    res.keep_alive(head.keep_alive());
    co_return co_await send(stream, res) && res.keep_alive();
  }

  // After answering a request whose body was not read: stop sending, then read
  // and discard what the client still sends, for a moment, so that closing
  // does not reset the connection (a close with unread data sends RST) before
  // the client read the answer.
  asio::awaitable<void> drain(beast::tcp_stream& stream) {
    error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.expires_after(std::chrono::seconds(2));
    std::array<char, 16384> sink;
    for (size_t total = 0; !ec && total < (64u << 20);) {
      total += co_await stream.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // rqlite's answer shape (one result, no error) plus what was loaded.
  static std::string render_load(const nlohmann::json& load, double seconds) {
    nlohmann::json doc;
    doc["results"] = nlohmann::json::array({nlohmann::json::object()});
    doc["load"] = load;
    doc["time"] = seconds;
    return doc.dump();
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
    set_no_delay(socket, opts.tcp_no_delay, "HTTP connection");
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(opts.max_header_bytes + (64u << 10));
    bool first = true;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(opts.max_header_bytes));
      // Beast checks Content-Length against this while parsing the header: no
      // limit here (the maximum, not boost::none, which Boost 1.74 compares as
      // below every length); the endpoint's own cap is set just below.
      parser.body_limit(std::numeric_limits<std::uint64_t>::max());
      stream.expires_after(first ? opts.read_timeout : opts.idle_timeout);
      first = false;
      error_code ec;
      co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_await refuse_unreadable(stream, ec, "request");
        break;
      }
      stream.expires_after(opts.read_timeout);
      if (is_load(parser.get())) {  // streams its body to disk under its own cap
        if (!co_await serve_load(stream, buffer, parser)) break;
        continue;
      }
      parser.body_limit(opts.max_body_bytes);
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
    set_no_delay(socket, opts.tcp_no_delay, "HTTP connection");
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
  if (s.backend.accepts_writes() && !s.opts.load_dir.empty()) {
    // Uploads a killed process left behind (load_dir is this node's own directory).
    std::error_code lec;
    for (const auto& de : std::filesystem::directory_iterator(s.opts.load_dir, lec)) {
      const std::string name = de.path().filename().string();
      if (name.rfind(".swarmlite-load-", 0) == 0) {
        std::filesystem::remove(de.path(), lec);
        spdlog::info("removed {}, an upload to /db/load that an earlier run did not finish", de.path().string());
      }
    }
  }
  s.size_notifies = s.backend.set_size_listener([&s] { s.size_grew(); });
  asio::co_spawn(s.ioc, s.accept_loop(), asio::detached);
  s.io_thread = std::thread([&s] { s.ioc.run(); });
  return ok_status();
}

void HttpApi::stop() {
  Impl& s = *impl_;
  if (!s.started || s.stopped.exchange(true)) return;
  if (s.size_notifies) s.backend.set_size_listener({});  // no call into s once stopped
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
  {
    std::unique_lock lock(s.submitted_mu);
    s.submitted_cv.wait(lock, [&] { return s.submitted_writes == 0; });
  }
  s.control_pool.join();
  s.backup_pool.join();
}

uint16_t HttpApi::bound_port() const { return impl_->bound.port(); }
std::string HttpApi::bound_address() const { return impl_->bound_address(); }
Metrics& HttpApi::metrics() { return *impl_->metrics; }

}  // namespace swarmlite::net
