// The Router gRPC service (proto/kvcluster/v1): Generate proxies through ProxyCall (callback
// API: no thread per stream), Route returns the decision only, GetStats / ListWorkers report,
// RegisterWorker / DeregisterWorker change the pool.
//
// Thread-safety: thread-safe.
#ifndef KVCLUSTER_ROUTER_ROUTER_SERVICE_H_
#define KVCLUSTER_ROUTER_ROUTER_SERVICE_H_

#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "router/arena_allocator.h"
#include "router/router.h"

namespace kvc::router {

// Fills a StatsResponse from the router's counters and the index.
kvcluster::v1::StatsResponse CollectStats(const Router& router);

class RouterService final : public kvcluster::v1::Router::CallbackService {
 public:
  explicit RouterService(Router* router) : router_(router) {
    SetMessageAllocatorFor_Route(&route_allocator_);
  }

  grpc::ServerWriteReactor<kvcluster::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const kvcluster::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Route(grpc::CallbackServerContext* context,
                                  const kvcluster::v1::RouteRequest* request,
                                  kvcluster::v1::RouteResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const kvcluster::v1::GetStatsRequest* request,
                                     kvcluster::v1::StatsResponse* response) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const kvcluster::v1::ListWorkersRequest* request,
                                        kvcluster::v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* RegisterWorker(
      grpc::CallbackServerContext* context, const kvcluster::v1::RegisterWorkerRequest* request,
      kvcluster::v1::RegisterWorkerResponse* response) override;
  grpc::ServerUnaryReactor* DeregisterWorker(
      grpc::CallbackServerContext* context, const kvcluster::v1::DeregisterWorkerRequest* request,
      kvcluster::v1::DeregisterWorkerResponse* response) override;

 private:
  Router* const router_;
  ArenaMessageAllocator<kvcluster::v1::RouteRequest, kvcluster::v1::RouteResponse> route_allocator_;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_ROUTER_SERVICE_H_
