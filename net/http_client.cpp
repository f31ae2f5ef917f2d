// Synchronous HTTP client over Beast (see http_client.h): one private
// io_context per call runs a coroutine whose every step shares one deadline.
#include "net/http_client.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <charconv>
#include <optional>

#include "net/http_json.h"
#include "net/tcp_socket.h"

namespace swarmlite::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

Result<HttpUrl> parse_http_url(std::string_view url) {
  HttpUrl out;
  std::string_view rest = url;
  if (rest.substr(0, 8) == "https://")
    return make_error(Errc::invalid_argument, "URL \"{}\": https is not supported; use http:// (or a TLS proxy)", url);
  if (rest.substr(0, 7) == "http://") rest.remove_prefix(7);
  else if (rest.find("://") != std::string_view::npos)
    return make_error(Errc::invalid_argument, "URL \"{}\": only http:// is supported", url);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    out.base_path = std::string(rest.substr(slash));
    while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  }
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    SWL_ASSIGN(out.user, url_decode(userinfo.substr(0, colon)));
    if (colon != std::string_view::npos) {
      SWL_ASSIGN(out.password, url_decode(userinfo.substr(colon + 1)));
    }
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return make_error(Errc::invalid_argument, "URL \"{}\": unclosed [", url);
    out.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return make_error(Errc::invalid_argument, "URL \"{}\": junk after ]", url);
      port_text = authority.substr(close + 2);
    }
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty()) return make_error(Errc::invalid_argument, "URL \"{}\": no host", url);
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 || port > 65535)
      return make_error(Errc::invalid_argument, "URL \"{}\": bad port \"{}\"", url, port_text);
    out.port = static_cast<uint16_t>(port);
  }
  return out;
}

namespace {

asio::awaitable<void> run_call(const HttpUrl& url, const HttpRequest& request, const HttpClientOptions& options,
                               std::optional<Result<HttpResponse>>& out) {
  auto ex = co_await asio::this_coro::executor;
  error_code ec;
  beast::tcp_stream stream(ex);
  stream.expires_after(options.timeout);
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(url.host, std::to_string(url.port),
                                                   asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out = make_error(Errc::unavailable, "resolve {}: {}", url.host, ec.message());
    co_return;
  }
  co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out = make_error(Errc::unavailable, "connect to {}:{}: {}", url.host, url.port, ec.message());
    co_return;
  }
  set_no_delay(stream.socket(), options.tcp_no_delay, fmt::format("HTTP client to {}:{}", url.host, url.port));
  http::request<http::string_body> req{http::string_to_verb(request.method), url.base_path + request.target, 11};
  req.set(http::field::host, url.host + ":" + std::to_string(url.port));
  req.set(http::field::user_agent, "swarmlite");
  if (!request.accept.empty()) req.set(http::field::accept, request.accept);
  for (const auto& h : request.headers) req.set(h.first, h.second);
  if (!request.authorization.empty()) {
    req.set(http::field::authorization, request.authorization);
  } else if (!url.user.empty() || !url.password.empty()) {
    std::string up = url.user + ":" + url.password;
    req.set(http::field::authorization, "Basic " + base64_encode(as_bytes(up)));
  }
  if (!request.body.empty() || request.method == "POST") {
    req.set(http::field::content_type, request.content_type);
    req.body() = request.body;
  }
  req.keep_alive(false);
  req.prepare_payload();
  co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out = make_error(Errc::unavailable, "send to {}:{}: {}", url.host, url.port, ec.message());
    co_return;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(options.max_body_bytes);
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec == http::error::body_limit) {
    out = make_error(Errc::too_large, "response from {}:{} is over {} bytes", url.host, url.port, options.max_body_bytes);
    co_return;
  }
  if (ec == beast::error::timeout) {
    out = make_error(Errc::unavailable, "{}:{} did not answer within {} ms", url.host, url.port, options.timeout.count());
    co_return;
  }
  if (ec) {
    out = make_error(Errc::bad_value, "reading the response from {}:{}: {}", url.host, url.port, ec.message());
    co_return;
  }
  auto& res = parser.get();
  HttpResponse r;
  r.status = res.result_int();
  r.content_type = std::string(res[http::field::content_type]);
  r.swarmlite_size = std::string(res["X-Swarmlite-Size"]);
  r.body = std::move(res.body());
  out = std::move(r);
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

}  // namespace

Result<HttpResponse> http_call(const HttpUrl& url, const HttpRequest& request, const HttpClientOptions& options) {
  if (http::string_to_verb(request.method) == http::verb::unknown)
    return make_error(Errc::invalid_argument, "unknown HTTP method {}", request.method);
  asio::io_context ioc{1};
  std::optional<Result<HttpResponse>> out;
  std::exception_ptr failure;
  asio::co_spawn(ioc, run_call(url, request, options, out), [&](std::exception_ptr e) { failure = e; });
  ioc.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      return make_error(Errc::internal, "HTTP call to {}:{} failed: {}", url.host, url.port, e.what());
    }
  }
  if (!out) return make_error(Errc::internal, "HTTP call to {}:{} ended without a result", url.host, url.port);
  return std::move(*out);
}

}  // namespace swarmlite::net
