// The sim backend: no math. Each forward step takes the time the cost model (cost_model.h)
// gives for its shape on a GPU-class device, divided by a speedup, and chooses synthetic next
// tokens itself (Backend::ForwardAndSample), so no vocabulary-sized logits are ever made.
// Everything around it is the real engine: block manager, scheduler, prefix cache, KV events,
// the Generate stream and its usage reports. Many sim workers on a small machine exercise the
// real router at cluster scale.
//
// Timing: a step lasts cost / speedup of wall time, measured from the end of the previous
// step when the engine went straight on (ForwardBatch::follows_previous_step), so the engine's
// own work between steps and any oversleep are taken out of the sleep rather than added to it;
// from the call otherwise (after idling). Lateness carried from step to step is capped at
// kMaxCarriedLateness: a long stall of the process is not paid back in a burst. A step with no
// sequences costs nothing.
//
// Tokens: drawn from a uniform distribution over the vocabulary without the EOS ids (so a
// generation never ends by EOS; requests end by max_tokens or a stop token), deterministic:
// - temperature 0 (or top_k 1): a hash of the sequence's last token and its position, so the
//   same prompt always continues the same way, as a real model's argmax does;
// - otherwise: a hash of (seed, output position), engine::Sampler's contract.
// top_p and other top_k values do not change a uniform draw. Every token's logprob is
// -ln(vocab_size - number of EOS ids), its probability under that distribution.
//
// The backend keeps no K/V data: ReadKvBlock is FAILED_PRECONDITION, CopyKvBlock only checks
// its arguments, and Forward (logits) is UNIMPLEMENTED.
#ifndef KVCLUSTER_WORKER_BACKEND_SIM_SIM_BACKEND_H_
#define KVCLUSTER_WORKER_BACKEND_SIM_SIM_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/backend/backend.h"
#include "worker/backend/sim/cost_model.h"
#include "worker/model/model.h"

namespace kvc::backend {

// Monotonic time as the sim backend sees it: the seam that lets tests run steps on a fake
// clock. Implementations must be safe to call from the engine thread.
class SimClock {
 public:
  virtual ~SimClock() = default;
  // Time since an arbitrary fixed origin; never decreases.
  virtual absl::Duration Now() = 0;
  virtual void SleepFor(absl::Duration duration) = 0;
};

// The steady clock and a real sleep; shared, thread-safe.
SimClock* RealSimClock();

inline constexpr absl::Duration kMaxCarriedLateness = absl::Milliseconds(20);

struct SimBackendOptions {
  // The pool's size sets the engine's capacity; no K/V memory is allocated for it.
  KvCacheOptions kv_cache;
  sim::SimProfile profile;
  // Wall time of a step = modelled time / speedup; > 0.
  double speedup = 1.0;
  // nullptr: RealSimClock(). Must outlive the backend.
  SimClock* clock = nullptr;
};

// INVALID_ARGUMENT for a bad config (ValidateModelConfig), pool size, profile or speedup, or a
// vocabulary with nothing but EOS ids.
absl::StatusOr<std::unique_ptr<Backend>> CreateSimBackend(const model::ModelConfig& config,
                                                          const SimBackendOptions& options);

}  // namespace kvc::backend

#endif  // KVCLUSTER_WORKER_BACKEND_SIM_SIM_BACKEND_H_
