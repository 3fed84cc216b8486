// One Generate stream: validates and tokenizes the request, submits it to the engine loop,
// and writes the engine's outputs (token ids, text deltas that never split a character,
// stop strings applied) followed by one result with usage and timings.
//
// Lifetime and threads: gRPC owns the call and deletes it in OnDone. The engine thread
// reaches it through a shared Link whose pointer OnDone clears, so a late output from the
// engine finds no call rather than a deleted one. State below is guarded by link_->mutex.
#ifndef KVCLUSTER_WORKER_SERVER_GENERATE_CALL_H_
#define KVCLUSTER_WORKER_SERVER_GENERATE_CALL_H_

#include <deque>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tokenizer/tokenizer.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "worker/server/engine_loop.h"
#include "worker/server/stop_strings.h"

namespace kvc::server {

class WorkerService;

// Turns a wire request into engine arguments. INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for an
// oversized prompt, FAILED_PRECONDITION for text without a tokenizer) with a precise message.
absl::Status PrepareRequest(const WorkerService& service,
                            const kvcluster::v1::GenerateRequest& request, SubmitArgs* args);

class GenerateCall final : public grpc::ServerWriteReactor<kvcluster::v1::GenerateResponse> {
 public:
  GenerateCall(WorkerService* service, const kvcluster::v1::GenerateRequest& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  struct Link {
    absl::Mutex mutex;
    GenerateCall* call ABSL_GUARDED_BY(mutex) = nullptr;
  };
  class Sink;

  void Start(const kvcluster::v1::GenerateRequest& request);
  // The Push* methods run with link_->mutex held.
  void PushOutput(const engine::RequestOutput& output);
  void PushError(const absl::Status& status);
  // Queues the stream's last message: `response` (holding the last chunk, if any) plus the
  // result.
  void PushResult(kvcluster::v1::GenerateResponse response, const engine::RequestOutput& output,
                  kvcluster::v1::FinishReason reason, const std::string& stop_reason);
  void WriteNext();

  WorkerService* const service_;
  const std::shared_ptr<Link> link_;
  const absl::Time arrival_ = absl::Now();
  engine::SequenceId id_ = 0;
  bool submitted_ = false;
  bool want_logprobs_ = false;
  std::unique_ptr<StreamDecoder> decoder_;
  std::optional<StopStringFilter> stops_;
  std::deque<kvcluster::v1::GenerateResponse> pending_;
  kvcluster::v1::GenerateResponse writing_message_;
  bool writing_ = false;
  // No more outputs will be queued; the stream finishes with final_status_ once drained.
  bool finished_ = false;
  bool finish_called_ = false;
  grpc::Status final_status_;
  absl::Time first_token_ = absl::InfinitePast();
  absl::Time last_token_ = absl::InfinitePast();
};

}  // namespace kvc::server

#endif  // KVCLUSTER_WORKER_SERVER_GENERATE_CALL_H_
