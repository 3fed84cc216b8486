#include "worker/backend/backend.h"

#include "absl/strings/str_cat.h"

namespace kvc::backend {

absl::Status ValidateForwardBatch(const ForwardBatch& b, int vocab_size, const KvCacheOptions& kv) {
  const int seqs = b.num_sequences();
  if (seqs == 0) return absl::InvalidArgumentError("empty batch");
  if (int(b.context_lens.size()) != seqs || int(b.block_indptr.size()) != seqs + 1 ||
      b.block_indptr[0] != 0 || b.block_indptr[seqs] != int(b.block_indices.size())) {
    return absl::InvalidArgumentError("per-sequence arrays disagree in length");
  }
  if (b.positions.size() != b.token_ids.size()) {
    return absl::InvalidArgumentError("token_ids and positions differ in length");
  }
  int64_t token = 0;
  for (int s = 0; s < seqs; ++s) {
    const int n = b.num_new_tokens[s], ctx = b.context_lens[s];
    if (n <= 0 || ctx < n) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, ": ", n, " new tokens, context length ", ctx));
    }
    if (token + n > b.num_tokens()) {
      return absl::InvalidArgumentError("num_new_tokens sum past the token list");
    }
    for (int i = 0; i < n; ++i) {
      if (b.positions[token + i] != ctx - n + i) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": token ", i,
                                                       " has position ", b.positions[token + i],
                                                       ", expected ", ctx - n + i));
      }
      const int32_t id = b.token_ids[token + i];
      if (id < 0 || id >= vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " out of vocabulary"));
      }
    }
    token += n;
    const int begin = b.block_indptr[s], end = b.block_indptr[s + 1];
    const int needed = (ctx + kv.block_size - 1) / kv.block_size;
    if (end < begin || end - begin < needed) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": block table has ",
                                                     end - begin, " blocks, needs ", needed));
    }
    for (int i = begin; i < begin + needed; ++i) {
      if (b.block_indices[i] < 0 || b.block_indices[i] >= kv.num_blocks) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s, ": block index ", b.block_indices[i], " out of range"));
      }
    }
  }
  if (token != b.num_tokens()) {
    return absl::InvalidArgumentError("num_new_tokens do not sum to the token count");
  }
  return absl::OkStatus();
}

}  // namespace kvc::backend
