// The Asio socket a Session is made from (net/session.h keeps Asio out of its
// header), and set_no_delay for every TCP socket we own. Include only where
// Asio is already used (session.cpp, node.cpp, http_api.cpp, http_client.cpp).
#pragma once

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <string>
#include <string_view>

namespace swarmlite::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct TcpSocket {
  boost::asio::ip::tcp::socket socket;
};

// "ip:port", "[ip6]:port".
inline std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep) {
  auto addr = ep.address();
  if (addr.is_v6()) return fmt::format("[{}]:{}", addr.to_string(), ep.port());
  return fmt::format("{}:{}", addr.to_string(), ep.port());
}

// Sets TCP_NODELAY (on: Nagle's algorithm off). Every message we send is
// one small write that the other side is waiting for (a head, a batch, an
// HTTP answer); with Nagle a write behind an unacknowledged one waits for the
// peer's delayed ACK (40 ms on Linux), which was most of the replication lag
// (docs/performance.md "Replication lag"). `on` = false only for the benchmark's
// A/B run. A failure costs latency, not correctness: logged at debug, the
// connection goes on. `what` names the connection for that log line.
inline void set_no_delay(boost::asio::ip::tcp::socket& socket, bool on, std::string_view what) {
  boost::system::error_code ec;
  socket.set_option(boost::asio::ip::tcp::no_delay(on), ec);
  if (ec) spdlog::debug("{}: setting TCP_NODELAY={} failed: {}", what, on, ec.message());
}

}  // namespace swarmlite::net
