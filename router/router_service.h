// The Router gRPC service (proto/kvcluster/v1) on the router's GrpcLoop: Generate proxies
// through ProxyCall, Route returns the decision only, GetStats / ListWorkers report,
// RegisterWorker / DeregisterWorker change the pool (a deregistration waits for the worker's
// link to stop, so it runs on the loop's helper thread).
//
// Thread-safety: construct, register and Serve on one thread; the calls then run on the loop.
#ifndef KVCLUSTER_ROUTER_ROUTER_SERVICE_H_
#define KVCLUSTER_ROUTER_ROUTER_SERVICE_H_

#include <memory>

#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "router/grpc_loop.h"
#include "router/router.h"
#include "router/unary_call.h"

namespace kvc::router {

// Fills a StatsResponse from the router's counters and the index.
kvcluster::v1::StatsResponse CollectStats(const Router& router);

class RouterService {
 public:
  RouterService() = default;

  // Register with the server builder before the server starts.
  grpc::Service* service() { return &service_; }
  // Starts answering calls on the pool's loop (whose queue is `cq`). REQUIRES: the server
  // started; `router` and the loop outlive this object's calls.
  void Serve(Router* router, grpc::ServerCompletionQueue* cq);

 private:
  template <typename Request, typename Response>
  using Method = std::unique_ptr<UnaryMethod<Request, Response>>;

  kvcluster::v1::Router::AsyncService service_;
  Method<kvcluster::v1::RouteRequest, kvcluster::v1::RouteResponse> route_;
  Method<kvcluster::v1::GetStatsRequest, kvcluster::v1::StatsResponse> get_stats_;
  Method<kvcluster::v1::ListWorkersRequest, kvcluster::v1::ListWorkersResponse> list_workers_;
  Method<kvcluster::v1::RegisterWorkerRequest, kvcluster::v1::RegisterWorkerResponse> register_;
  Method<kvcluster::v1::DeregisterWorkerRequest, kvcluster::v1::DeregisterWorkerResponse>
      deregister_;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_ROUTER_SERVICE_H_
