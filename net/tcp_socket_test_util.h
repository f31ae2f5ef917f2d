// Test helper: the TCP_NODELAY setting of this process's own connected TCP
// sockets, found by port (getsockname/getpeername over the open descriptors),
// so a test can check what a node or server set on sockets it never exposes.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdint>
#include <vector>

namespace swarmlite::net::testing {

// The port of an IPv4/IPv6 address, 0 for anything else.
inline uint16_t port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return 0;
}

struct SocketNoDelay {
  int fd = -1;
  uint16_t local_port = 0, peer_port = 0;
  bool no_delay = false;
};

// Every connected TCP socket of this process with `local_port` (0: any) and
// `peer_port` (0: any), with its TCP_NODELAY.
inline std::vector<SocketNoDelay> connected_tcp_sockets(uint16_t local_port, uint16_t peer_port) {
  std::vector<SocketNoDelay> out;
  rlimit lim{};
  int max_fd = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 65536 ? static_cast<int>(lim.rlim_cur) : 65536;
  for (int fd = 0; fd < max_fd; ++fd) {
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;  // listener, unconnected
    if (local.ss_family != AF_INET && local.ss_family != AF_INET6) continue;
    SocketNoDelay s{fd, port_of(local), port_of(peer), false};
    if ((local_port && s.local_port != local_port) || (peer_port && s.peer_port != peer_port)) continue;
    int v = 0;
    len = sizeof v;
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) != 0) continue;
    s.no_delay = v != 0;
    out.push_back(s);
  }
  return out;
}

}  // namespace swarmlite::net::testing
