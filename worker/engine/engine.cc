#include "worker/engine/engine.h"

#include <algorithm>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace kvc::engine {
namespace {

SchedulerOptions WithPrefixCaching(SchedulerOptions options, bool no_kv_cache) {
  options.prefix_caching = !no_kv_cache;
  return options;
}

}  // namespace

Engine::Engine(backend::Backend* backend, const EngineOptions& options)
    : backend_(backend),
      options_(options),
      max_context_tokens_(options.max_context_tokens > 0
                              ? options.max_context_tokens
                              : backend->config().max_position_embeddings),
      blocks_(BlockManager::Options{.num_blocks = backend->kv_cache_options().num_blocks,
                                    .block_size = backend->kv_cache_options().block_size,
                                    .epoch = options.epoch,
                                    .replay_events = options.replay_events}),
      scheduler_(&blocks_, options.hash,
                 WithPrefixCaching(options.scheduler, options.no_kv_cache)) {
  KVC_CHECK(options.hash.block_size == static_cast<uint32_t>(blocks_.block_size()),
            "the hashing block size must equal the KV cache block size");
  KVC_CHECK(max_context_tokens_ > 0, "the context length must be positive");
}

absl::Status Engine::Submit(SequenceId id, std::vector<int32_t> prompt, GenerationOptions options,
                            uint64_t seed) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  const int vocab = backend_->config().vocab_size;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", i, " has id ", prompt[i],
                                                     ", outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (absl::Status status = ValidateSamplingOptions(options.sampling); !status.ok()) {
    return status;
  }
  if (options.max_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be positive, got ", options.max_tokens));
  }
  const int64_t total = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  if (total > max_context_tokens_) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt of ", prompt.size(), " tokens + max_tokens ", options.max_tokens,
                     " exceeds the context of ", max_context_tokens_, " tokens"));
  }
  const int64_t blocks_needed = (total + blocks_.block_size() - 1) / blocks_.block_size();
  if (blocks_needed > blocks_.num_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("the request needs ", blocks_needed,
                                                     " KV blocks and the whole pool has ",
                                                     blocks_.num_blocks()));
  }
  if (!active_ids_.insert(id).second) {
    return absl::AlreadyExistsError(absl::StrCat("request ", id, " is already running"));
  }
  scheduler_.Add(std::make_unique<Sequence>(id, std::move(prompt), std::move(options), seed));
  return absl::OkStatus();
}

bool Engine::Cancel(SequenceId id) {
  std::unique_ptr<Sequence> sequence = scheduler_.Remove(id);
  if (sequence == nullptr) return false;
  active_ids_.erase(id);
  cancelled_.push_back(
      RequestOutput{.id = id,
                    .finish_reason = FinishReason::kCancelled,
                    .prompt_tokens = sequence->prompt_len,
                    .cached_prompt_tokens = std::max(sequence->cached_prompt_tokens, 0),
                    .completion_tokens = sequence->num_generated()});
  return true;
}

absl::Status Engine::Step(std::vector<RequestOutput>* outputs) {
  absl::Status status = StepOnce(outputs);
  work_left_after_step_ = !idle();
  return status;
}

absl::Status Engine::RunBackend(const std::vector<ScheduledChunk>& chunks,
                                const backend::ForwardBatch& batch) {
  if (!backend_->SamplesTokens()) return backend_->Forward(batch, &logits_);
  token_sampling_.clear();
  for (const ScheduledChunk& chunk : chunks) {
    const Sequence& s = *chunk.sequence;
    const SamplingOptions& options = s.sampler.options();
    token_sampling_.push_back(backend::TokenSampling{
        .sample = s.num_computed + chunk.num_new_tokens == static_cast<int>(s.tokens.size()),
        .temperature = options.temperature,
        .top_p = options.top_p,
        .top_k = options.top_k,
        .seed = s.sampler.seed(),
        .output_position = static_cast<uint64_t>(s.num_generated()),
        .logprob = s.options.logprobs});
  }
  absl::Status status = backend_->ForwardAndSample(batch, token_sampling_, &sampled_);
  if (status.ok()) {
    KVC_CHECK(sampled_.token_ids.size() == chunks.size() &&
                  (sampled_.logprobs.empty() || sampled_.logprobs.size() == chunks.size()),
              "the backend returned a token list that does not match the batch");
  }
  return status;
}

absl::Status Engine::StepOnce(std::vector<RequestOutput>* outputs) {
  for (RequestOutput& output : cancelled_) outputs->push_back(std::move(output));
  cancelled_.clear();
  const std::vector<ScheduledChunk> chunks = scheduler_.Schedule();
  if (chunks.empty()) return absl::OkStatus();

  backend::ForwardBatch batch;
  batch.follows_previous_step = work_left_after_step_;
  for (const ScheduledChunk& chunk : chunks) {
    const Sequence& s = *chunk.sequence;
    // Without the KV cache every step recomputes the sequence from its first token.
    const int start = options_.no_kv_cache ? 0 : s.num_computed;
    const int end = s.num_computed + chunk.num_new_tokens;
    batch.AddSequence(std::span(s.tokens).subspan(start, end - start), start,
                      blocks_.BlockTable(s.id));
  }
  if (absl::Status status = RunBackend(chunks, batch); !status.ok()) {
    for (const ScheduledChunk& chunk : chunks) {
      RequestOutput output;
      Emit(chunk.sequence, FinishReason::kCancelled, outputs, &output);
    }
    return status;
  }

  const size_t vocab = backend_->config().vocab_size;
  for (size_t i = 0; i < chunks.size(); ++i) {
    Sequence* s = chunks[i].sequence;
    s->num_computed += chunks[i].num_new_tokens;
    if (!options_.no_kv_cache) {
      s->HashFullBlocks(options_.hash);
      const int full = s->num_computed / blocks_.block_size();
      const int committed = blocks_.num_committed_blocks(s->id);
      if (full > committed) {
        blocks_.CommitFullBlocks(s->id,
                                 std::span(s->block_hashes).subspan(committed, full - committed));
      }
    }
    if (s->num_uncomputed() > 0) continue;  // a prefill chunk short of the prompt's end

    SampledToken sampled;
    if (backend_->SamplesTokens()) {
      KVC_CHECK(sampled_.token_ids[i] >= 0 && sampled_.token_ids[i] < static_cast<int>(vocab),
                "the backend sampled a token outside the vocabulary");
      sampled.token = static_cast<uint32_t>(sampled_.token_ids[i]);
      if (!sampled_.logprobs.empty()) sampled.logprob = sampled_.logprobs[i];
    } else {
      const std::span<const float> row(logits_.data() + i * vocab, vocab);
      sampled = s->sampler.Sample(row, s->num_generated(), &sampler_scratch_);
    }
    const int32_t token = static_cast<int32_t>(sampled.token);
    s->tokens.push_back(token);
    RequestOutput output;
    output.new_tokens.push_back(token);
    if (s->options.logprobs && (!backend_->SamplesTokens() || !sampled_.logprobs.empty())) {
      output.new_logprobs.push_back(sampled.logprob);
    }
    if (IsStopToken(*s, token)) {
      Emit(s, FinishReason::kStop, outputs, &output);
    } else if (s->num_generated() >= s->options.max_tokens ||
               static_cast<int>(s->tokens.size()) >= max_context_tokens_) {
      Emit(s, FinishReason::kLength, outputs, &output);
    } else {
      Emit(s, FinishReason::kNone, outputs, &output);
    }
  }
  return absl::OkStatus();
}

void Engine::Emit(Sequence* sequence, FinishReason reason, std::vector<RequestOutput>* outputs,
                  RequestOutput* output) {
  output->id = sequence->id;
  output->finish_reason = reason;
  output->prompt_tokens = sequence->prompt_len;
  output->cached_prompt_tokens = std::max(sequence->cached_prompt_tokens, 0);
  output->completion_tokens = sequence->num_generated();
  output->first_scheduled = sequence->first_scheduled;
  outputs->push_back(std::move(*output));
  if (reason != FinishReason::kNone) {
    active_ids_.erase(sequence->id);
    scheduler_.Remove(sequence->id);  // frees the blocks; `sequence` is gone after this
  }
}

bool Engine::IsStopToken(const Sequence& sequence, int32_t token) const {
  const auto& stops = sequence.options.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) return true;
  if (sequence.options.ignore_eos) return false;
  const auto& eos = backend_->config().eos_token_ids;
  return std::find(eos.begin(), eos.end(), token) != eos.end();
}

EngineLoad Engine::Load() const {
  return EngineLoad{.running_requests = scheduler_.num_running(),
                    .waiting_requests = scheduler_.num_waiting(),
                    .used_blocks = blocks_.num_blocks() - blocks_.num_free_blocks(),
                    .free_blocks = blocks_.num_free_blocks(),
                    .cached_blocks = blocks_.num_evictable_blocks(),
                    .tokens_in_flight = scheduler_.tokens_in_flight()};
}

}  // namespace kvc::engine
