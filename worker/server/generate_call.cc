#include "worker/server/generate_call.h"

#include <limits>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/block_hash.h"
#include "common/grpc_status.h"
#include "worker/server/worker_service.h"

namespace kvc::server {

namespace pb = ::kvcluster::v1;

absl::Status PrepareRequest(const WorkerService& service, const pb::GenerateRequest& request,
                            SubmitArgs* args) {
  const WorkerServiceOptions& options = service.options();
  switch (request.prompt_case()) {
    case pb::GenerateRequest::kText: {
      if (service.tokenizer() == nullptr) {
        return absl::InvalidArgumentError(
            "this worker has no tokenizer (no tokenizer.json in its model directory): send the "
            "prompt as token_ids");
      }
      if (static_cast<int64_t>(request.text().size()) > options.max_prompt_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat("the prompt text has ", request.text().size(), " bytes; the limit is ",
                         options.max_prompt_bytes));
      }
      for (uint32_t id :
           service.tokenizer()->Encode(request.text(), request.add_special_tokens())) {
        args->prompt.push_back(static_cast<int32_t>(id));
      }
      break;
    }
    case pb::GenerateRequest::kTokenIds:
      for (uint32_t id : request.token_ids().ids()) {
        if (id > static_cast<uint32_t>(std::numeric_limits<int32_t>::max())) {
          return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is out of range"));
        }
        args->prompt.push_back(static_cast<int32_t>(id));
      }
      break;
    case pb::GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("the request has no prompt: set token_ids or text");
  }
  if (!request.lora_name().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA adapter '", request.lora_name(), "' is not available on this worker"));
  }

  const pb::SamplingParams& sampling = request.sampling();
  engine::GenerationOptions& generation = args->options;
  generation.sampling.temperature = sampling.temperature();
  generation.sampling.top_p = sampling.top_p() == 0.0f ? 1.0f : sampling.top_p();
  generation.sampling.top_k = sampling.top_k();
  generation.max_tokens = sampling.max_tokens();
  generation.ignore_eos = sampling.ignore_eos();
  generation.logprobs = sampling.logprobs();
  for (uint32_t id : sampling.stop_token_ids()) {
    generation.stop_token_ids.push_back(static_cast<int32_t>(id));
  }
  if (sampling.stop_size() > options.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrCat(
        sampling.stop_size(), " stop strings; the limit is ", options.max_stop_strings));
  }
  for (const std::string& stop : sampling.stop()) {
    if (stop.empty()) return absl::InvalidArgumentError("a stop string is empty");
    if (static_cast<int>(stop.size()) > options.max_stop_string_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("a stop string has ", stop.size(),
                                                     " bytes; the limit is ",
                                                     options.max_stop_string_bytes));
    }
  }
  if (sampling.stop_size() > 0 && service.tokenizer() == nullptr) {
    return absl::InvalidArgumentError(
        "stop strings need a tokenizer and this worker has none: use stop_token_ids");
  }
  generation.salt_hash = SaltHash(options.model_identity, request.lora_name(), request.cache_salt(),
                                  options.hash.seed);
  if (sampling.has_seed()) {
    args->seed = sampling.seed();
  } else {
    // One random_device read per thread, not per request: opening it costs more than the
    // rest of a short request's parsing.
    thread_local std::mt19937_64 seeds{std::random_device{}()};
    args->seed = seeds();
  }
  return absl::OkStatus();
}

// Forwards the engine's results to the call while it exists.
class GenerateCall::Sink final : public RequestSink {
 public:
  explicit Sink(std::shared_ptr<Link> link) : link_(std::move(link)) {}

  void OnOutput(const engine::RequestOutput& output) override {
    absl::MutexLock lock(&link_->mutex);
    if (link_->call != nullptr) link_->call->PushOutput(output);
  }
  void OnError(const absl::Status& status) override {
    absl::MutexLock lock(&link_->mutex);
    if (link_->call != nullptr) link_->call->PushError(status);
  }

 private:
  const std::shared_ptr<Link> link_;
};

GenerateCall::GenerateCall(WorkerService* service, const pb::GenerateRequest& request)
    : service_(service), link_(std::make_shared<Link>()) {
  absl::MutexLock lock(&link_->mutex);
  link_->call = this;
  Start(request);
}

void GenerateCall::Start(const pb::GenerateRequest& request) {
  SubmitArgs args;
  if (absl::Status status = PrepareRequest(*service_, request, &args); !status.ok()) {
    PushError(status);
    return;
  }
  id_ = service_->NextRequestId();
  args.id = id_;
  want_logprobs_ = args.options.logprobs;
  if (service_->tokenizer() != nullptr) {
    decoder_ = std::make_unique<StreamDecoder>(*service_->tokenizer());
    stops_.emplace(std::vector<std::string>(request.sampling().stop().begin(),
                                            request.sampling().stop().end()));
  }
  args.sink = std::make_shared<Sink>(link_);
  if (absl::Status status = service_->loop()->Submit(std::move(args)); !status.ok()) {
    PushError(status);
    return;
  }
  submitted_ = true;
}

void GenerateCall::PushOutput(const engine::RequestOutput& output) {
  if (finished_) return;
  const absl::Time now = absl::Now();
  pb::GenerateResponse response;
  pb::TokenChunk* chunk = response.mutable_chunk();
  std::optional<std::string> matched_stop;
  for (size_t i = 0; i < output.new_tokens.size(); ++i) {
    chunk->add_token_ids(static_cast<uint32_t>(output.new_tokens[i]));
    if (want_logprobs_ && i < output.new_logprobs.size()) {
      chunk->add_logprobs(output.new_logprobs[i]);
    }
    if (decoder_ != nullptr && !matched_stop) {
      absl::StatusOr<std::string> text = decoder_->Add(output.new_tokens[i]);
      if (text.ok()) chunk->mutable_text()->append(stops_->Feed(*text, &matched_stop));
    }
  }
  if (!output.new_tokens.empty()) {
    if (first_token_ == absl::InfinitePast()) first_token_ = now;
    last_token_ = now;
  }
  const bool done = matched_stop.has_value() || output.finish_reason != engine::FinishReason::kNone;
  if (done && !matched_stop && decoder_ != nullptr) {
    chunk->mutable_text()->append(stops_->Feed(decoder_->Finish(), &matched_stop));
    if (!matched_stop) chunk->mutable_text()->append(stops_->Flush());
  }
  const bool has_chunk = chunk->token_ids_size() > 0 || !chunk->text().empty();
  if (!done) {
    if (has_chunk) pending_.push_back(std::move(response));
    WriteNext();
    return;
  }
  // The last chunk travels in the result's message.
  if (!has_chunk) response.clear_chunk();
  if (matched_stop) {
    service_->loop()->Cancel(id_);  // the engine stops at once; its cancellation is ignored
    PushResult(std::move(response), output, pb::FINISH_REASON_STOP, *matched_stop);
  } else if (output.finish_reason == engine::FinishReason::kStop) {
    PushResult(std::move(response), output, pb::FINISH_REASON_STOP,
               output.new_tokens.empty() ? "" : absl::StrCat(output.new_tokens.back()));
  } else if (output.finish_reason == engine::FinishReason::kLength) {
    PushResult(std::move(response), output, pb::FINISH_REASON_LENGTH, "");
  } else {
    PushResult(std::move(response), output, pb::FINISH_REASON_CANCELLED, "");
  }
  WriteNext();
}

void GenerateCall::PushResult(pb::GenerateResponse response, const engine::RequestOutput& output,
                              pb::FinishReason reason, const std::string& stop_reason) {
  const absl::Time now = absl::Now();
  pb::GenerateResult* result = response.mutable_result();
  result->set_finish_reason(reason);
  result->set_stop_reason(stop_reason);
  result->set_worker_id(service_->worker_id());
  result->mutable_usage()->set_prompt_tokens(output.prompt_tokens);
  result->mutable_usage()->set_cached_prompt_tokens(output.cached_prompt_tokens);
  result->mutable_usage()->set_completion_tokens(output.completion_tokens);
  pb::Timings* timings = result->mutable_timings();
  if (output.first_scheduled != absl::InfinitePast()) {
    timings->set_queue_ms(absl::ToDoubleMilliseconds(output.first_scheduled - arrival_));
  }
  if (first_token_ != absl::InfinitePast()) {
    timings->set_time_to_first_token_ms(absl::ToDoubleMilliseconds(first_token_ - arrival_));
    if (output.completion_tokens > 1) {
      timings->set_time_per_output_token_ms(absl::ToDoubleMilliseconds(last_token_ - first_token_) /
                                            (output.completion_tokens - 1));
    }
  }
  timings->set_total_ms(absl::ToDoubleMilliseconds(now - arrival_));
  pending_.push_back(std::move(response));
  finished_ = true;
}

void GenerateCall::PushError(const absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  final_status_ = ToGrpcStatus(status);
  WriteNext();
}

void GenerateCall::WriteNext() {
  if (writing_ || finish_called_) return;
  if (!pending_.empty()) {
    writing_message_ = std::move(pending_.front());
    pending_.pop_front();
    writing_ = true;
    if (writing_message_.has_result() && pending_.empty()) {
      // The result is the stream's last message: send it with the status in one go.
      finish_called_ = true;
      StartWriteAndFinish(&writing_message_, grpc::WriteOptions(), final_status_);
      return;
    }
    // No buffer hint even when more is queued: a hinted write may wait for the next write
    // to flush it, and the next one starts only from its OnWriteDone.
    StartWrite(&writing_message_);
    return;
  }
  if (finished_) {
    finish_called_ = true;
    Finish(final_status_);
  }
}

void GenerateCall::OnWriteDone(bool ok) {
  absl::MutexLock lock(&link_->mutex);
  writing_ = false;
  if (!ok) {
    // The client went away: stop the engine's work and end the call.
    if (submitted_ && !finished_) service_->loop()->Cancel(id_);
    finished_ = true;
    pending_.clear();
    final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  WriteNext();
}

void GenerateCall::OnCancel() {
  absl::MutexLock lock(&link_->mutex);
  if (submitted_ && !finished_) service_->loop()->Cancel(id_);
  finished_ = true;
  pending_.clear();
  final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the request was cancelled");
  WriteNext();
}

void GenerateCall::OnDone() {
  {
    absl::MutexLock lock(&link_->mutex);
    link_->call = nullptr;
  }
  delete this;
}

}  // namespace kvc::server
