// The router's statistics as Prometheus text exposition, served on /metrics by the router's
// HTTP server (router/http_server.h).
//
// Thread-safety: a pure function.
#ifndef KVCLUSTER_ROUTER_METRICS_H_
#define KVCLUSTER_ROUTER_METRICS_H_

#include <string>

#include "kvcluster/v1/kvcluster.pb.h"

namespace kvc::router {

std::string PrometheusText(const kvcluster::v1::StatsResponse& stats,
                           const kvcluster::v1::ListWorkersResponse& workers);

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_METRICS_H_
