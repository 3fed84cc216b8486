// ClientConnection: notices that an HTTP client went away while its request waits for a
// worker. cpp-httplib (0.11, Debian bookworm) tells a handler nothing about its connection and
// reports a closed peer only when a write fails, which a request waiting for a long prefill,
// or a non-streaming request, does not attempt. So the handler finds its connection's socket
// (the one whose local port and peer address are the request's) and peeks at it: a peer that
// closed or reset the connection reads as end-of-file or an error, while a live one has
// nothing to read or the start of a next (pipelined) request.
//
// A client that half-closes its sending side after the request (shutdown(SHUT_WR), which
// common HTTP clients do not do) looks gone too.
//
// Thread-safety: not thread-safe; a ClientConnection is used by the thread that serves the
// request. The socket
// stays the request's while the handler runs: cpp-httplib closes it only afterwards.
#ifndef KVCLUSTER_ROUTER_HTTP_CONNECTION_H_
#define KVCLUSTER_ROUTER_HTTP_CONNECTION_H_

#include <string>
#include <utility>

namespace kvc::router {

class ClientConnection {
 public:
  // The connection with this peer address and port on local port `local_port`. The socket is
  // looked up on the first Open(), so requests answered quickly never pay for it; an unknown
  // one (no such socket) is never reported gone.
  ClientConnection(std::string peer_address, int peer_port, int local_port)
      : peer_address_(std::move(peer_address)), peer_port_(peer_port), local_port_(local_port) {}

  // False once the peer closed or reset the connection.
  bool Open();

 private:
  void Find();

  std::string peer_address_;
  int peer_port_;
  int local_port_;
  bool looked_up_ = false;
  int fd_ = -1;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_HTTP_CONNECTION_H_
