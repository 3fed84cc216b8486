#include "worker/backend/generate.h"

#include <algorithm>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvc::backend {

int32_t ArgMax(std::span<const float> values) {
  return int32_t(std::max_element(values.begin(), values.end()) - values.begin());
}

absl::StatusOr<std::vector<int32_t>> GenerateGreedy(Backend& backend,
                                                    std::span<const int32_t> prompt,
                                                    const GenerateOptions& options) {
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  const KvCacheOptions& kv = backend.kv_cache_options();
  const int64_t max_len = int64_t(prompt.size()) + options.max_new_tokens;
  const int64_t blocks = (max_len + kv.block_size - 1) / kv.block_size;
  if (blocks > kv.num_blocks) {
    return absl::ResourceExhaustedError(
        absl::StrCat(max_len, " tokens need ", blocks, " KV blocks; the pool has ", kv.num_blocks));
  }
  std::vector<int32_t> block_table(blocks);
  std::iota(block_table.begin(), block_table.end(), 0);

  std::vector<int32_t> sequence(prompt.begin(), prompt.end());
  std::vector<int32_t> generated;
  std::vector<float> logits;
  int num_cached = 0;  // tokens whose K/V are in the cache (always 0 without it)
  while (int(generated.size()) < options.max_new_tokens) {
    ForwardBatch batch;
    const std::span<const int32_t> new_tokens =
        std::span<const int32_t>(sequence).subspan(num_cached);
    const int used_blocks = int((sequence.size() + kv.block_size - 1) / kv.block_size);
    batch.AddSequence(new_tokens, num_cached,
                      std::span<const int32_t>(block_table).first(used_blocks));
    if (absl::Status s = backend.Forward(batch, &logits); !s.ok()) return s;
    const int32_t next = ArgMax(logits);
    generated.push_back(next);
    if (options.use_kv_cache) num_cached = int(sequence.size());
    sequence.push_back(next);
    if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), next) !=
        options.stop_token_ids.end()) {
      break;
    }
  }
  return generated;
}

}  // namespace kvc::backend
