// The Asio socket a Session is made from (net/session.h keeps Asio out of its
// header). Include only where Asio is already used (session.cpp, node.cpp).
#pragma once

#include <fmt/format.h>

#include <boost/asio/ip/tcp.hpp>
#include <string>

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

}  // namespace swarmlite::net
