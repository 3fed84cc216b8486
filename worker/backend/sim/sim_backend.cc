#include "worker/backend/sim/sim_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/model/config.h"

namespace kvc::backend {
namespace {

class SteadyClock final : public SimClock {
 public:
  absl::Duration Now() override {
    return absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
  }
  void SleepFor(absl::Duration duration) override {
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(duration));
  }
};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Distinguishes the greedy stream from seeded draws that happen to use the same numbers.
constexpr uint64_t kGreedyStream = 0x6a09e667f3bcc908ull;

class SimBackend final : public Backend {
 public:
  SimBackend(const model::ModelConfig& config, const SimBackendOptions& options)
      : config_(config),
        kv_options_(options.kv_cache),
        cost_(config, options.kv_cache.dtype, options.profile),
        speedup_(options.speedup),
        clock_(options.clock != nullptr ? options.clock : RealSimClock()) {
    for (int id : config.eos_token_ids) {
      if (id >= 0 && id < config.vocab_size) eos_ids_.push_back(id);
    }
    std::sort(eos_ids_.begin(), eos_ids_.end());
    eos_ids_.erase(std::unique(eos_ids_.begin(), eos_ids_.end()), eos_ids_.end());
    choices_ = static_cast<uint64_t>(config.vocab_size) - eos_ids_.size();
    logprob_ = -static_cast<float>(std::log(static_cast<double>(choices_)));
  }

  const model::ModelConfig& config() const override { return config_; }
  const KvCacheOptions& kv_cache_options() const override { return kv_options_; }

  absl::Status Forward(const ForwardBatch&, std::vector<float>*) override {
    return absl::UnimplementedError(
        "the sim backend computes no logits: it chooses tokens itself (ForwardAndSample)");
  }

  bool SamplesTokens() const override { return true; }

  absl::Status ForwardAndSample(const ForwardBatch& batch, std::span<const TokenSampling> sampling,
                                SampledTokens* out) override {
    out->token_ids.clear();
    out->logprobs.clear();
    if (batch.num_sequences() == 0 && batch.num_tokens() == 0) return absl::OkStatus();
    const absl::Duration start = clock_->Now();
    if (absl::Status status = ValidateForwardBatch(batch, config_.vocab_size, kv_options_);
        !status.ok()) {
      return status;
    }
    if (static_cast<int>(sampling.size()) != batch.num_sequences()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sampling has ", sampling.size(), " entries for ", batch.num_sequences(), " sequences"));
    }
    int token = 0;
    for (int s = 0; s < batch.num_sequences(); ++s) {
      const int last = token + batch.num_new_tokens[s] - 1;
      token += batch.num_new_tokens[s];
      out->token_ids.push_back(
          sampling[s].sample ? Choose(sampling[s], batch.token_ids[last], batch.positions[last])
                             : -1);
    }
    out->logprobs.assign(out->token_ids.size(), logprob_);

    const absl::Duration cost = cost_.StepTime(sim::StepShape::Of(batch)) / speedup_;
    const absl::Duration begin = batch.follows_previous_step && has_last_end_
                                     ? std::max(last_end_, start - kMaxCarriedLateness)
                                     : start;
    const absl::Duration end = begin + cost;
    const absl::Duration now = clock_->Now();
    if (end > now) clock_->SleepFor(end - now);
    last_end_ = end;
    has_last_end_ = true;
    return absl::OkStatus();
  }

  absl::Status ReadKvBlock(int, int, std::vector<float>*, std::vector<float>*) const override {
    return absl::FailedPreconditionError("the sim backend keeps no K/V data");
  }

  absl::Status CopyKvBlock(int src, int dst) override {
    if (src < 0 || src >= kv_options_.num_blocks || dst < 0 || dst >= kv_options_.num_blocks) {
      return absl::InvalidArgumentError("block out of range");
    }
    return absl::OkStatus();  // no data to copy
  }

 private:
  // A token from the uniform distribution over the non-EOS ids; see the header.
  int32_t Choose(const TokenSampling& sampling, int32_t last_token, int32_t last_position) const {
    const bool greedy = sampling.temperature == 0.0f || sampling.top_k == 1;
    const uint64_t hash =
        greedy ? SplitMix64(SplitMix64(kGreedyStream ^ static_cast<uint32_t>(last_token)) ^
                            static_cast<uint64_t>(last_position))
               : SplitMix64(SplitMix64(sampling.seed) ^ sampling.output_position);
    uint64_t id = hash % choices_;
    for (int eos : eos_ids_) {  // skip the EOS ids: the i-th non-EOS id
      if (static_cast<uint64_t>(eos) <= id) ++id;
    }
    return static_cast<int32_t>(id);
  }

  const model::ModelConfig config_;
  const KvCacheOptions kv_options_;
  const sim::CostModel cost_;
  const double speedup_;
  SimClock* const clock_;
  std::vector<int> eos_ids_;  // sorted, unique, inside the vocabulary
  uint64_t choices_ = 0;      // vocabulary size without the EOS ids
  float logprob_ = 0;
  // When the previous step's modelled time ended (by the clock), for back-to-back steps.
  absl::Duration last_end_;
  bool has_last_end_ = false;
};

}  // namespace

SimClock* RealSimClock() {
  static SteadyClock* const clock = new SteadyClock();
  return clock;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateSimBackend(const model::ModelConfig& config,
                                                          const SimBackendOptions& options) {
  if (absl::Status status = model::ValidateModelConfig(config); !status.ok()) return status;
  if (options.kv_cache.num_blocks <= 0 || options.kv_cache.block_size <= 0) {
    return absl::InvalidArgumentError("kv cache needs a positive num_blocks and block_size");
  }
  if (!(options.speedup > 0) || !std::isfinite(options.speedup)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the sim speedup must be a finite number > 0, got ", options.speedup));
  }
  if (absl::Status status = sim::ValidateSimProfile(options.profile); !status.ok()) {
    return status;
  }
  int eos_in_vocab = 0;
  std::vector<int> eos = config.eos_token_ids;
  std::sort(eos.begin(), eos.end());
  eos.erase(std::unique(eos.begin(), eos.end()), eos.end());
  for (int id : eos) eos_in_vocab += id >= 0 && id < config.vocab_size;
  if (eos_in_vocab >= config.vocab_size) {
    return absl::InvalidArgumentError("the vocabulary holds nothing but EOS ids");
  }
  return std::make_unique<SimBackend>(config, options);
}

}  // namespace kvc::backend
