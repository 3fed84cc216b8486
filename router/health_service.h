// The standard gRPC health service (grpc.health.v1.Health: Check and Watch) on the router's
// GrpcLoop, in place of gRPC's built-in one (which runs on threads of its own).
//
// "" (the whole server) is SERVING from the start; other names are set with SetServingStatus,
// and unknown names answer NOT_FOUND (Check) or SERVICE_UNKNOWN (Watch). Shutdown turns every
// name NOT_SERVING, as a server about to stop should report.
//
// Thread-safety: thread-safe.
#ifndef KVCLUSTER_ROUTER_HEALTH_SERVICE_H_
#define KVCLUSTER_ROUTER_HEALTH_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "router/grpc_loop.h"
#include "router/unary_call.h"

namespace kvc::router {

class HealthService {
 public:
  HealthService();
  ~HealthService();

  // Register with the server builder before the server starts.
  grpc::Service* service() { return &service_; }
  // Starts answering, on `loop` (whose queue is `cq`). REQUIRES: the server started; `loop`
  // outlives this object's calls.
  void Serve(GrpcLoop* loop, grpc::ServerCompletionQueue* cq);

  void SetServingStatus(const std::string& name, bool serving);
  void Shutdown();

 private:
  class WatchCall;
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;

  void ListenForWatch();
  Status StatusOf(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  grpc::health::v1::Health::AsyncService service_;
  GrpcLoop* loop_ = nullptr;
  grpc::ServerCompletionQueue* cq_ = nullptr;
  std::unique_ptr<
      UnaryMethod<grpc::health::v1::HealthCheckRequest, grpc::health::v1::HealthCheckResponse>>
      check_;

  mutable absl::Mutex mutex_;
  absl::flat_hash_map<std::string, bool> serving_ ABSL_GUARDED_BY(mutex_);
  bool shut_down_ ABSL_GUARDED_BY(mutex_) = false;
  absl::flat_hash_set<WatchCall*> watchers_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_HEALTH_SERVICE_H_
