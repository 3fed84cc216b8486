// One proxied Generate on the Router gRPC service: routes the request and writes the chosen
// worker's stream to the client. The worker side (attempts, failover, load and statistics) is
// RoutedGenerate's; this class is the gRPC server side. Client cancellation cancels the
// worker's stream.
//
// Lifetime and threads: gRPC calls the server side (this reactor) and each worker stream on
// its threads; the object deletes itself once both sides are done. State below is guarded by
// RoutedGenerate::mutex_.
#ifndef KVCLUSTER_ROUTER_PROXY_CALL_H_
#define KVCLUSTER_ROUTER_PROXY_CALL_H_

#include <grpcpp/grpcpp.h>

#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "router/routed_generate.h"
#include "router/router.h"

namespace kvc::router {

class ProxyCall final : public grpc::ServerWriteReactor<kvcluster::v1::GenerateResponse>,
                        public RoutedGenerate {
 public:
  ProxyCall(const Router* router, const kvcluster::v1::GenerateRequest& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void LockedOnUpstreamProgress() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void LockedWriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  kvcluster::v1::GenerateResponse writing_message_ ABSL_GUARDED_BY(mutex_);
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_PROXY_CALL_H_
