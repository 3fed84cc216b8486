// BpeModel: the merge stage of byte-level BPE. A word (one pre-tokenized piece, as raw bytes)
// starts as one symbol per byte; the adjacent pair with the lowest merge rank is merged, the
// leftmost first among equals, until no adjacent pair has a merge. This is Hugging Face's BPE
// without dropout, and works on bytes instead of the byte-level alphabet's characters, so no
// per-call translation is needed.
//
// Thread safety: immutable after construction except for the word cache, which is guarded by
// per-shard mutexes; EncodeWord may be called from any number of threads at once.
#ifndef KVCLUSTER_COMMON_TOKENIZER_BPE_MODEL_H_
#define KVCLUSTER_COMMON_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace kvc::tokenizer_internal {

struct Merge {
  uint32_t left;
  uint32_t right;
  uint32_t merged;
};

class BpeModel {
 public:
  // byte_ids[b]: the id of the token for the single byte b.
  // merges: in rank order (rank = index). A repeated pair keeps its first (lowest) rank.
  // words: raw bytes -> id of every vocabulary token. With ignore_merges, a piece that is a
  //   whole token is emitted as it is, before any merging (Hugging Face's rule). Without it,
  //   only tokens that merging reproduces are kept, so the lookup is a pure shortcut.
  BpeModel(const std::array<uint32_t, 256>& byte_ids, const std::vector<Merge>& merges,
           absl::flat_hash_map<std::string, uint32_t> words, bool ignore_merges);
  ~BpeModel();

  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of `word` (non-empty raw bytes) to *ids.
  void EncodeWord(std::string_view word, std::vector<uint32_t>* ids) const;

  // The merge algorithm alone, without the whole-word shortcut or the cache; exposed so tests
  // can check both merge paths (short words and long ones) against each other.
  void MergeWord(std::string_view word, std::vector<uint32_t>* ids) const;

 private:
  static constexpr uint32_t kNoMerge = UINT32_MAX;

  // rank and merged id of the pair (left, right), or kNoMerge.
  struct PairResult {
    uint32_t rank;
    uint32_t merged;
  };
  PairResult LookupPair(uint32_t left, uint32_t right) const;
  void MergeShortWord(std::string_view word, std::vector<uint32_t>* ids) const;
  void MergeLongWord(std::string_view word, std::vector<uint32_t>* ids) const;

  std::array<uint32_t, 256> byte_ids_;
  // (left << 32 | right) -> (rank << 32 | merged).
  absl::flat_hash_map<uint64_t, uint64_t> pairs_;
  absl::flat_hash_map<std::string, uint32_t> words_;  // see the constructor
  bool ignore_merges_;

  // Merging is the costly step and natural text repeats its words, so results are cached.
  // Sharded so that concurrent encoders rarely wait on each other; a full shard is cleared
  // rather than tracked for recency, which keeps hits cheap and memory bounded.
  class WordCache;
  std::unique_ptr<WordCache> cache_;
};

}  // namespace kvc::tokenizer_internal

#endif  // KVCLUSTER_COMMON_TOKENIZER_BPE_MODEL_H_
