#include "router/http_connection.h"

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace kvc::router {

namespace {

// The numeric host and port of an address, formatted as cpp-httplib formats request peers.
bool HostAndPort(const sockaddr_storage& address, socklen_t length, std::string* host, int* port) {
  char name[NI_MAXHOST];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, name, sizeof(name), nullptr,
                  0, NI_NUMERICHOST) != 0) {
    return false;
  }
  *host = name;
  if (address.ss_family == AF_INET) {
    *port = ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
  } else if (address.ss_family == AF_INET6) {
    *port = ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  } else {
    return false;
  }
  return true;
}

bool IsConnection(int fd, const std::string& peer_address, int peer_port, int local_port) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  std::string host;
  int port = 0;
  // Not a socket (ENOTSOCK), or not on the HTTP port: cheap to rule out first.
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      !HostAndPort(address, length, &host, &port) || port != local_port) {
    return false;
  }
  length = sizeof(address);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      !HostAndPort(address, length, &host, &port)) {
    return false;  // the listening socket has no peer
  }
  return port == peer_port && host == peer_address;
}

}  // namespace

void ClientConnection::Find() {
  looked_up_ = true;
  // A keep-alive connection's requests are all served by one thread: try its last socket first.
  thread_local int last_fd = -1;
  if (last_fd >= 0 && IsConnection(last_fd, peer_address_, peer_port_, local_port_)) {
    fd_ = last_fd;
    return;
  }
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  const int own_fd = dirfd(dir);
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    const int fd = std::atoi(entry->d_name);
    if (fd == own_fd) continue;
    if (IsConnection(fd, peer_address_, peer_port_, local_port_)) {
      fd_ = fd;
      break;
    }
  }
  closedir(dir);
  if (fd_ >= 0) last_fd = fd_;
}

bool ClientConnection::Open() {
  if (!looked_up_) Find();
  if (fd_ < 0) return true;
  char byte;
  const ssize_t n = recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return true;  // the next request already arrived: the peer is there
  if (n == 0) return false;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

}  // namespace kvc::router
