// UnaryCall: serves one unary method of an async gRPC service on the router's GrpcLoop.
//
// Serve(method) arms a call that waits for the method's next request; when one arrives the
// call arms the next, runs the handler and finishes. The handler runs on the loop thread and
// must not block, unless the method is marked blocking: it then runs on the loop's helper
// thread. Request and response live in a protobuf arena that the call reuses after it
// finished, so a method's calls usually allocate nothing.
//
// Thread-safety: a method's state is only touched on the loop thread (and by its handler).
#ifndef KVCLUSTER_ROUTER_UNARY_CALL_H_
#define KVCLUSTER_ROUTER_UNARY_CALL_H_

#include <google/protobuf/arena.h>
#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <vector>

#include "router/grpc_loop.h"

namespace kvc::router {

template <typename Request, typename Response>
class UnaryMethod {
 public:
  // Asks the service for the next call of this method (e.g. AsyncService::RequestRoute bound
  // to the service and the server's completion queue).
  using RequestFn = std::function<void(grpc::ServerContext*, Request*,
                                       grpc::ServerAsyncResponseWriter<Response>*, void* tag)>;
  using Handler = std::function<grpc::Status(const Request&, Response*)>;

  UnaryMethod(GrpcLoop* loop, RequestFn request, Handler handler, bool blocking = false)
      : loop_(loop),
        request_(std::move(request)),
        handler_(std::move(handler)),
        blocking_(blocking) {}
  ~UnaryMethod() {
    for (Call* call : idle_) delete call;
  }
  UnaryMethod(const UnaryMethod&) = delete;
  UnaryMethod& operator=(const UnaryMethod&) = delete;

  // Arms a call for the next request. Call once after the server started; later calls arm
  // their successors themselves.
  void Serve() {
    Call* call;
    if (idle_.empty()) {
      call = new Call(this);
    } else {
      call = idle_.back();
      idle_.pop_back();
    }
    call->Arm();
  }

 private:
  class Call final : public GrpcLoop::Tag {
   public:
    explicit Call(UnaryMethod* method) : method_(method) {}

    void Arm() {
      method_->loop_->CallStarted();
      arena_.Reset();
      request_ = google::protobuf::Arena::CreateMessage<Request>(&arena_);
      response_ = google::protobuf::Arena::CreateMessage<Response>(&arena_);
      context_.emplace();
      writer_.emplace(&*context_);
      matched_ = false;
      method_->request_(&*context_, request_, &*writer_, this);
    }

    void Done(bool ok) override {
      UnaryMethod* method = method_;
      if (matched_ || !ok) {  // finished, or no call will come (the server is shutting down)
        writer_.reset();
        context_.reset();
        if (ok) {
          method->idle_.push_back(this);
        } else {
          delete this;
        }
        method->loop_->CallEnded();
        return;
      }
      matched_ = true;
      method->Serve();
      if (method->blocking_) {
        method->loop_->RunBlocking([this] { Finish(method_->handler_(*request_, response_)); });
      } else {
        Finish(method->handler_(*request_, response_));
      }
    }

   private:
    void Finish(const grpc::Status& status) {
      if (status.ok()) {
        writer_->Finish(*response_, status, this);
      } else {
        writer_->FinishWithError(status, this);
      }
    }

    UnaryMethod* const method_;
    google::protobuf::Arena arena_;
    Request* request_ = nullptr;
    Response* response_ = nullptr;
    std::optional<grpc::ServerContext> context_;
    std::optional<grpc::ServerAsyncResponseWriter<Response>> writer_;
    bool matched_ = false;
  };

  GrpcLoop* const loop_;
  const RequestFn request_;
  const Handler handler_;
  const bool blocking_;
  std::vector<Call*> idle_;  // finished calls, ready for reuse
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_UNARY_CALL_H_
