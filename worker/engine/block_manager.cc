#include "worker/engine/block_manager.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace kvc::engine {

BlockManager::BlockManager(const Options& options)
    : block_size_(options.block_size),
      blocks_(options.num_blocks),
      events_(options.epoch, options.replay_events) {
  KVC_CHECK(options.num_blocks > 0, "the KV pool needs at least one block");
  KVC_CHECK(options.block_size > 0, "block size must be positive");
  free_.reserve(options.num_blocks);
  // Handed out lowest id first (the free list pops from the back).
  for (BlockId b = options.num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int BlockManager::CountCachedPrefix(std::span<const uint64_t> prompt_hashes) const {
  int matched = 0;
  for (uint64_t hash : prompt_hashes) {
    if (!cache_.contains(hash)) break;
    ++matched;
  }
  return matched;
}

BlockManager::AllocationPlan BlockManager::Plan(std::span<const uint64_t> prompt_hashes,
                                                int num_tokens) const {
  AllocationPlan plan;
  plan.total_blocks = (num_tokens + block_size_ - 1) / block_size_;
  // Never reuse the block holding the last prompt token: its logits must be computed, so at
  // least one token is always recomputed.
  const int reusable =
      std::min<int>(prompt_hashes.size(), std::max(num_tokens - 1, 0) / block_size_);
  for (int i = 0; i < reusable; ++i) {
    auto it = cache_.find(prompt_hashes[i]);
    if (it == cache_.end()) break;
    ++plan.cached_blocks;
    if (blocks_[it->second].ref_count == 0) ++plan.free_blocks_taken;
  }
  plan.free_blocks_taken += plan.total_blocks - plan.cached_blocks;
  return plan;
}

int BlockManager::BlocksNeeded(std::span<const uint64_t> prompt_hashes, int num_tokens) const {
  return Plan(prompt_hashes, num_tokens).free_blocks_taken;
}

absl::StatusOr<int> BlockManager::AllocateSequence(SequenceId id,
                                                   std::span<const uint64_t> prompt_hashes,
                                                   int num_tokens) {
  if (sequences_.contains(id)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", id, " already has blocks"));
  }
  if (num_tokens <= 0) return absl::InvalidArgumentError("a sequence needs at least one token");
  const AllocationPlan plan = Plan(prompt_hashes, num_tokens);
  if (plan.free_blocks_taken > num_free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("sequence needs ", plan.free_blocks_taken,
                                                     " free KV blocks, ", num_free_blocks(),
                                                     " available"));
  }
  const int cached = plan.cached_blocks;
  const int total = plan.total_blocks;
  Sequence seq;
  seq.blocks.reserve(total);
  for (int i = 0; i < cached; ++i) {
    const BlockId block = cache_.at(prompt_hashes[i]);
    Acquire(block);
    seq.blocks.push_back(block);
  }
  seq.num_committed = cached;
  std::vector<uint64_t> removed;
  for (int i = cached; i < total; ++i) {
    const BlockId block = TakeFreeBlock(&removed);
    Acquire(block);
    seq.blocks.push_back(block);
  }
  FlushRemoved(&removed);
  sequences_.emplace(id, std::move(seq));
  return cached;
}

absl::Status BlockManager::GrowSequence(SequenceId id, int num_tokens) {
  Sequence& seq = GetSequence(id);
  const int total = (num_tokens + block_size_ - 1) / block_size_;
  const int more = total - static_cast<int>(seq.blocks.size());
  if (more <= 0) return absl::OkStatus();
  if (more > num_free_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("sequence needs ", more, " more KV blocks, ", num_free_blocks(), " free"));
  }
  std::vector<uint64_t> removed;
  for (int i = 0; i < more; ++i) {
    const BlockId block = TakeFreeBlock(&removed);
    Acquire(block);
    seq.blocks.push_back(block);
  }
  FlushRemoved(&removed);
  return absl::OkStatus();
}

void BlockManager::CommitFullBlocks(SequenceId id, std::span<const FullBlockHash> hashes) {
  Sequence& seq = GetSequence(id);
  KVC_CHECK(seq.num_committed + hashes.size() <= seq.blocks.size(),
            "committing blocks the sequence does not have");
  StoredEvent stored;
  auto flush = [&] {
    if (stored.blocks.empty()) return;
    events_.Append(std::move(stored));
    stored = StoredEvent{};
  };
  for (const FullBlockHash& hash : hashes) {
    const int index = seq.num_committed++;
    const bool has_parent = index > 0;
    const uint64_t parent = has_parent ? blocks_[seq.blocks[index - 1]].seq_hash : 0;
    BlockId& slot = seq.blocks[index];
    // A block joins the cache only under a cached parent (it may have been dropped by a
    // reset), so the cache stays a forest of whole prefixes.
    if (has_parent && !blocks_[seq.blocks[index - 1]].cached) {
      flush();
      continue;
    }
    if (auto it = cache_.find(hash.seq_hash); it != cache_.end()) {
      // Computed twice: adopt the cached copy so the hash stays unique.
      flush();
      if (it->second != slot) {
        Acquire(it->second);
        Release(slot);
        slot = it->second;
      }
      continue;
    }
    Block& block = blocks_[slot];
    block.cached = true;
    block.seq_hash = hash.seq_hash;
    block.local_hash = hash.local_hash;
    block.has_parent = has_parent;
    block.parent_hash = parent;
    cache_.emplace(hash.seq_hash, slot);
    digest_.Add(hash.seq_hash);
    if (stored.blocks.empty() && has_parent) stored.parent = parent;
    stored.blocks.push_back(
        StoredBlock{hash.seq_hash, hash.local_hash, static_cast<uint32_t>(block_size_)});
  }
  flush();
}

void BlockManager::FreeSequence(SequenceId id) {
  auto it = sequences_.find(id);
  KVC_CHECK(it != sequences_.end(), "freeing an unknown sequence");
  const std::vector<BlockId>& blocks = it->second.blocks;
  for (auto block = blocks.rbegin(); block != blocks.rend(); ++block) Release(*block);
  sequences_.erase(it);
}

void BlockManager::ResetPrefixCache() {
  while (lru_head_ != kNone) {
    const BlockId block = lru_head_;
    LruUnlink(block);
    blocks_[block].cached = false;
    free_.push_back(block);
  }
  for (const auto& [hash, block] : cache_) blocks_[block].cached = false;
  cache_.clear();
  digest_.Clear();
  events_.Append(ClearedEvent{});
}

const std::vector<BlockId>& BlockManager::BlockTable(SequenceId id) const {
  return GetSequence(id).blocks;
}

int BlockManager::num_committed_blocks(SequenceId id) const {
  return GetSequence(id).num_committed;
}

std::vector<StoredEvent> BlockManager::Snapshot() const {
  // Children lists, then a depth-first walk from the roots: each chain comes out as one run.
  absl::flat_hash_map<uint64_t, std::vector<BlockId>> children;
  std::vector<BlockId> roots;
  for (const auto& [hash, block] : cache_) {
    const Block& b = blocks_[block];
    if (b.has_parent && cache_.contains(b.parent_hash)) {
      children[b.parent_hash].push_back(block);
    } else {
      roots.push_back(block);
    }
  }
  std::vector<StoredEvent> runs;
  std::vector<BlockId> stack(roots.rbegin(), roots.rend());
  uint64_t last_emitted = 0;
  bool have_last = false;
  while (!stack.empty()) {
    const BlockId block = stack.back();
    stack.pop_back();
    const Block& b = blocks_[block];
    const bool continues_run = have_last && b.has_parent && b.parent_hash == last_emitted;
    if (!continues_run) {
      runs.emplace_back();
      if (b.has_parent) runs.back().parent = b.parent_hash;
    }
    runs.back().blocks.push_back(
        StoredBlock{b.seq_hash, b.local_hash, static_cast<uint32_t>(block_size_)});
    last_emitted = b.seq_hash;
    have_last = true;
    if (auto it = children.find(b.seq_hash); it != children.end()) {
      stack.insert(stack.end(), it->second.rbegin(), it->second.rend());
    }
  }
  return runs;
}

BlockManager::Sequence& BlockManager::GetSequence(SequenceId id) {
  auto it = sequences_.find(id);
  KVC_CHECK(it != sequences_.end(), "unknown sequence");
  return it->second;
}

const BlockManager::Sequence& BlockManager::GetSequence(SequenceId id) const {
  auto it = sequences_.find(id);
  KVC_CHECK(it != sequences_.end(), "unknown sequence");
  return it->second;
}

BlockId BlockManager::TakeFreeBlock(std::vector<uint64_t>* removed) {
  if (!free_.empty()) {
    const BlockId block = free_.back();
    free_.pop_back();
    return block;
  }
  KVC_CHECK(lru_head_ != kNone, "no free KV block (callers check num_free_blocks first)");
  const BlockId block = lru_head_;
  LruUnlink(block);
  Block& b = blocks_[block];
  cache_.erase(b.seq_hash);
  digest_.Remove(b.seq_hash);
  removed->push_back(b.seq_hash);
  b.cached = false;
  return block;
}

void BlockManager::Acquire(BlockId block) {
  Block& b = blocks_[block];
  if (b.ref_count == 0 && b.cached) LruUnlink(block);
  ++b.ref_count;
}

void BlockManager::Release(BlockId block) {
  Block& b = blocks_[block];
  KVC_CHECK(b.ref_count > 0, "releasing an unreferenced block");
  if (--b.ref_count > 0) return;
  if (b.cached) {
    LruPushBack(block);
  } else {
    free_.push_back(block);
  }
}

void BlockManager::LruPushBack(BlockId block) {
  Block& b = blocks_[block];
  b.lru_prev = lru_tail_;
  b.lru_next = kNone;
  if (lru_tail_ != kNone) blocks_[lru_tail_].lru_next = block;
  lru_tail_ = block;
  if (lru_head_ == kNone) lru_head_ = block;
  ++num_evictable_;
}

void BlockManager::LruUnlink(BlockId block) {
  Block& b = blocks_[block];
  if (b.lru_prev != kNone) {
    blocks_[b.lru_prev].lru_next = b.lru_next;
  } else {
    lru_head_ = b.lru_next;
  }
  if (b.lru_next != kNone) {
    blocks_[b.lru_next].lru_prev = b.lru_prev;
  } else {
    lru_tail_ = b.lru_prev;
  }
  b.lru_prev = b.lru_next = kNone;
  --num_evictable_;
}

void BlockManager::FlushRemoved(std::vector<uint64_t>* removed) {
  if (removed->empty()) return;
  events_.Append(RemovedEvent{std::move(*removed)});
  removed->clear();
}

}  // namespace kvc::engine
