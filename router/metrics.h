// The router's statistics as Prometheus text exposition (served on /metrics), and the small
// HTTP server that serves it with /health. Built on cpp-httplib (Debian libcpp-httplib-dev).
//
// Thread-safety: thread-safe; the server answers on its own threads.
#ifndef KVCLUSTER_ROUTER_METRICS_H_
#define KVCLUSTER_ROUTER_METRICS_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "kvcluster/v1/kvcluster.pb.h"
#include "router/router.h"

namespace httplib {
class Server;
}

namespace kvc::router {

std::string PrometheusText(const kvcluster::v1::StatsResponse& stats,
                           const kvcluster::v1::ListWorkersResponse& workers);

class HttpServer {
 public:
  // Binds host:port (port 0 picks one) and serves /metrics and /health.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& host_port,
                                                           const Router* router);
  ~HttpServer();
  int port() const { return port_; }
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_METRICS_H_
