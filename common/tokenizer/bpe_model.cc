#include "common/tokenizer/bpe_model.h"

#include <cstring>
#include <functional>
#include <queue>
#include <utility>

namespace kvc::tokenizer_internal {
namespace {

// Words up to this many bytes are merged with flat arrays (a linear scan for the best pair is
// cheaper than a heap at this size); longer ones use a heap, so a huge piece (a megabyte of
// '=' signs) costs O(n log n) rather than O(n^2).
constexpr size_t kShortWordBytes = 64;
// Only words this short are cached: longer ones rarely repeat.
constexpr size_t kMaxCachedWordBytes = 64;
constexpr int kCacheShards = 16;
constexpr size_t kCacheShardCapacity = 8192;

}  // namespace

// Thread safety: every method may be called concurrently; each shard's map is guarded by its
// own mutex.
class BpeModel::WordCache {
 public:
  // Appends the cached ids of `word` to *ids and returns true, or returns false.
  bool Lookup(std::string_view word, std::vector<uint32_t>* ids) const {
    const Shard& shard = shards_[ShardOf(word)];
    absl::MutexLock lock(&shard.mutex);
    const auto it = shard.words.find(absl::string_view(word.data(), word.size()));
    if (it == shard.words.end()) return false;
    ids->insert(ids->end(), it->second.begin(), it->second.end());
    return true;
  }

  void Insert(std::string_view word, const uint32_t* ids, size_t count) {
    Shard& shard = shards_[ShardOf(word)];
    absl::MutexLock lock(&shard.mutex);
    if (shard.words.size() >= kCacheShardCapacity) shard.words.clear();
    shard.words.try_emplace(std::string(word), ids, ids + count);
  }

 private:
  struct Shard {
    mutable absl::Mutex mutex;
    absl::flat_hash_map<std::string, std::vector<uint32_t>> words ABSL_GUARDED_BY(mutex);
  };

  // A cheap spread over shards; the map hashes the whole word itself.
  static size_t ShardOf(std::string_view word) {
    const auto first = static_cast<unsigned char>(word.front());
    const auto last = static_cast<unsigned char>(word.back());
    return (word.size() * 31 + first * 7 + last) % kCacheShards;
  }

  std::array<Shard, kCacheShards> shards_;
};

BpeModel::BpeModel(const std::array<uint32_t, 256>& byte_ids, const std::vector<Merge>& merges,
                   absl::flat_hash_map<std::string, uint32_t> words, bool ignore_merges)
    : byte_ids_(byte_ids),
      words_(std::move(words)),
      ignore_merges_(ignore_merges),
      cache_(std::make_unique<WordCache>()) {
  pairs_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& merge = merges[rank];
    const uint64_t key = (uint64_t{merge.left} << 32) | merge.right;
    pairs_.try_emplace(key, (uint64_t{rank} << 32) | merge.merged);
  }
  if (!ignore_merges_) {
    // Keep only the tokens that merging their own bytes reproduces: for those, the whole-word
    // lookup is exactly what merging would give, and it spares most words of natural text the
    // merge loop and the locked cache alike.
    std::vector<uint32_t> ids;
    for (auto it = words_.begin(); it != words_.end();) {
      ids.clear();
      MergeWord(it->first, &ids);
      if (ids.size() == 1 && ids[0] == it->second) {
        ++it;
      } else {
        words_.erase(it++);
      }
    }
  }
}

BpeModel::~BpeModel() = default;

BpeModel::PairResult BpeModel::LookupPair(uint32_t left, uint32_t right) const {
  const auto it = pairs_.find((uint64_t{left} << 32) | right);
  if (it == pairs_.end()) return {kNoMerge, 0};
  return {static_cast<uint32_t>(it->second >> 32), static_cast<uint32_t>(it->second)};
}

void BpeModel::EncodeWord(std::string_view word, std::vector<uint32_t>* ids) const {
  if (word.size() == 1) {
    ids->push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (const auto it = words_.find(absl::string_view(word.data(), word.size()));
      it != words_.end()) {
    ids->push_back(it->second);
    return;
  }
  if (word.size() > kMaxCachedWordBytes) {
    MergeWord(word, ids);
    return;
  }
  if (cache_->Lookup(word, ids)) return;
  const size_t first = ids->size();
  MergeWord(word, ids);
  cache_->Insert(word, ids->data() + first, ids->size() - first);
}

void BpeModel::MergeWord(std::string_view word, std::vector<uint32_t>* ids) const {
  if (word.size() <= kShortWordBytes) {
    MergeShortWord(word, ids);
  } else {
    MergeLongWord(word, ids);
  }
}

void BpeModel::MergeShortWord(std::string_view word, std::vector<uint32_t>* ids) const {
  uint32_t symbols[kShortWordBytes];
  // ranks[i] and merged[i] describe the pair (symbols[i], symbols[i + 1]).
  uint32_t ranks[kShortWordBytes];
  uint32_t merged[kShortWordBytes];
  size_t count = word.size();
  for (size_t i = 0; i < count; ++i) symbols[i] = byte_ids_[static_cast<unsigned char>(word[i])];
  for (size_t i = 0; i + 1 < count; ++i) {
    const PairResult pair = LookupPair(symbols[i], symbols[i + 1]);
    ranks[i] = pair.rank;
    merged[i] = pair.merged;
  }
  while (count > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < count; ++i) {
      if (ranks[i] < ranks[best]) best = i;
    }
    if (ranks[best] == kNoMerge) break;
    symbols[best] = merged[best];
    const size_t tail = count - best - 2;
    std::memmove(symbols + best + 1, symbols + best + 2, tail * sizeof(uint32_t));
    std::memmove(ranks + best, ranks + best + 1, tail * sizeof(uint32_t));
    std::memmove(merged + best, merged + best + 1, tail * sizeof(uint32_t));
    --count;
    if (best > 0) {
      const PairResult pair = LookupPair(symbols[best - 1], symbols[best]);
      ranks[best - 1] = pair.rank;
      merged[best - 1] = pair.merged;
    }
    if (best + 1 < count) {
      const PairResult pair = LookupPair(symbols[best], symbols[best + 1]);
      ranks[best] = pair.rank;
      merged[best] = pair.merged;
    }
  }
  ids->insert(ids->end(), symbols, symbols + count);
}

void BpeModel::MergeLongWord(std::string_view word, std::vector<uint32_t>* ids) const {
  const size_t count = word.size();
  std::vector<uint32_t> symbols(count);
  // A doubly linked list over positions; a merged-away position gets next = kRemoved.
  constexpr uint32_t kEnd = UINT32_MAX;
  constexpr uint32_t kRemoved = UINT32_MAX - 1;
  std::vector<uint32_t> next(count);
  std::vector<uint32_t> prev(count);
  for (size_t i = 0; i < count; ++i) {
    symbols[i] = byte_ids_[static_cast<unsigned char>(word[i])];
    next[i] = i + 1 < count ? i + 1 : kEnd;
    prev[i] = i > 0 ? i - 1 : kEnd;
  }
  // A candidate merge of the symbol at `left` with its successor, valid only while both still
  // hold the ids it was computed for. Ordered by (rank, left): lowest rank, leftmost first.
  struct Candidate {
    uint32_t rank;
    uint32_t left;
    uint32_t left_id;
    uint32_t right_id;
    uint32_t merged;
    bool operator>(const Candidate& other) const {
      return std::pair(rank, left) > std::pair(other.rank, other.left);
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](uint32_t left) {
    if (left == kEnd || next[left] == kEnd) return;
    const uint32_t right = next[left];
    const PairResult pair = LookupPair(symbols[left], symbols[right]);
    if (pair.rank != kNoMerge) {
      queue.push({pair.rank, left, symbols[left], symbols[right], pair.merged});
    }
  };
  for (size_t i = 0; i + 1 < count; ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate candidate = queue.top();
    queue.pop();
    const uint32_t left = candidate.left;
    if (next[left] == kRemoved || next[left] == kEnd) continue;
    const uint32_t right = next[left];
    if (symbols[left] != candidate.left_id || symbols[right] != candidate.right_id) continue;
    symbols[left] = candidate.merged;
    next[left] = next[right];
    if (next[right] != kEnd) prev[next[right]] = left;
    next[right] = kRemoved;
    push_pair(prev[left]);
    push_pair(left);
  }
  for (uint32_t i = 0; i != kEnd; i = next[i]) ids->push_back(symbols[i]);
}

}  // namespace kvc::tokenizer_internal
