// Internal to kvindex: recency order of one worker's blocks, for approximate mode's capacity
// bound. An intrusive doubly linked list in a vector (slots reused through a free list), plus
// a map from seq hash to slot, so touch, erase and pop are O(1) without a heap node per block.
//
// Thread safety: none; owned by PrefixIndex under its lock.
#ifndef KVCLUSTER_KVINDEX_WORKER_LRU_H_
#define KVCLUSTER_KVINDEX_WORKER_LRU_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/check.h"

namespace kvc::kvindex::internal {

class WorkerLru {
 public:
  size_t size() const { return slot_of_.size(); }
  bool Contains(uint64_t seq_hash) const { return slot_of_.contains(seq_hash); }
  // Starts loading the block's map slot, for loops that will touch it a few steps later.
  void Prefetch(uint64_t seq_hash) const { slot_of_.prefetch(seq_hash); }

  // Makes the block the most recently used (adding it when absent).
  void Touch(uint64_t seq_hash) {
    auto [it, inserted] = slot_of_.try_emplace(seq_hash, kNone);
    if (!inserted) {
      Unlink(it->second);
    } else {
      if (free_.empty()) {
        it->second = static_cast<uint32_t>(entries_.size());
        entries_.push_back({});
      } else {
        it->second = free_.back();
        free_.pop_back();
      }
      entries_[it->second].seq_hash = seq_hash;
    }
    PushFront(it->second);
  }

  void Erase(uint64_t seq_hash) {
    auto it = slot_of_.find(seq_hash);
    if (it == slot_of_.end()) return;
    Unlink(it->second);
    free_.push_back(it->second);
    slot_of_.erase(it);
  }

  // REQUIRES: size() > 0.
  uint64_t PopLeastRecent() {
    KVC_CHECK(tail_ != kNone, "pop from an empty LRU");
    const uint64_t seq_hash = entries_[tail_].seq_hash;
    Erase(seq_hash);
    return seq_hash;
  }

  uint64_t MemoryBytes() const {
    return sizeof(*this) + entries_.capacity() * sizeof(Entry) +
           free_.capacity() * sizeof(uint32_t) +
           slot_of_.bucket_count() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
  }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Entry {
    uint64_t seq_hash = 0;
    uint32_t newer = kNone;
    uint32_t older = kNone;
  };

  void Unlink(uint32_t slot) {
    Entry& entry = entries_[slot];
    if (entry.newer == kNone) {
      head_ = entry.older;
    } else {
      entries_[entry.newer].older = entry.older;
    }
    if (entry.older == kNone) {
      tail_ = entry.newer;
    } else {
      entries_[entry.older].newer = entry.newer;
    }
    entry.newer = entry.older = kNone;
  }

  void PushFront(uint32_t slot) {
    Entry& entry = entries_[slot];
    entry.newer = kNone;
    entry.older = head_;
    if (head_ != kNone) entries_[head_].newer = slot;
    head_ = slot;
    if (tail_ == kNone) tail_ = slot;
  }

  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;
  absl::flat_hash_map<uint64_t, uint32_t> slot_of_;
  uint32_t head_ = kNone;  // most recent
  uint32_t tail_ = kNone;  // least recent
};

}  // namespace kvc::kvindex::internal

#endif  // KVCLUSTER_KVINDEX_WORKER_LRU_H_
