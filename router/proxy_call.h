// One proxied Generate on the Router gRPC service: routes the request and writes the chosen
// worker's stream to the client. The worker side (attempts, failover, load and statistics) is
// RoutedGenerate's; this class is the gRPC server side, on the router's GrpcLoop. Client
// cancellation cancels the worker's stream.
//
// Lifetime and threads: Listen arms one call waiting for the next Generate; once a request
// arrives the call arms the next one. Everything runs on the loop thread; the object deletes
// itself once the client's call and the worker's stream are both done. State below is guarded
// by RoutedGenerate::mutex_.
#ifndef KVCLUSTER_ROUTER_PROXY_CALL_H_
#define KVCLUSTER_ROUTER_PROXY_CALL_H_

#include <grpcpp/grpcpp.h>

#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "router/grpc_loop.h"
#include "router/routed_generate.h"
#include "router/router.h"

namespace kvc::router {

class ProxyCall final : public RoutedGenerate {
 public:
  // Waits for the next Generate call on `service`, whose calls complete on `cq` (the loop's).
  static void Listen(const Router* router, kvcluster::v1::Router::AsyncService* service,
                     grpc::ServerCompletionQueue* cq);

 private:
  ProxyCall(const Router* router, kvcluster::v1::Router::AsyncService* service,
            grpc::ServerCompletionQueue* cq);
  ~ProxyCall() override;

  void OnRequest(bool ok);
  void OnWriteDone(bool ok);
  void OnFinishDone(bool ok);
  void OnCallDone(bool ok);
  void LockedOnUpstreamProgress() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void LockedWriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void LockedFinish(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Drops the client side's reference once the finish and the call's end both completed.
  void MaybeRelease();

  kvcluster::v1::Router::AsyncService* const service_;
  grpc::ServerCompletionQueue* const cq_;
  GrpcLoop* const loop_;
  grpc::ServerContext context_;
  kvcluster::v1::GenerateRequest request_;
  grpc::ServerAsyncWriter<kvcluster::v1::GenerateResponse> writer_{&context_};
  GrpcLoop::MemberTag<ProxyCall> requested_{this, &ProxyCall::OnRequest};
  GrpcLoop::MemberTag<ProxyCall> written_{this, &ProxyCall::OnWriteDone};
  GrpcLoop::MemberTag<ProxyCall> finished_{this, &ProxyCall::OnFinishDone};
  GrpcLoop::MemberTag<ProxyCall> call_done_{this, &ProxyCall::OnCallDone};

  kvcluster::v1::GenerateResponse writing_message_ ABSL_GUARDED_BY(mutex_);
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mutex_) = false;
  // Loop-thread state.
  bool finish_done_ = false;
  bool call_done_seen_ = false;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_PROXY_CALL_H_
