#include "worker/engine/block_manager.h"

#include <gtest/gtest.h>

#include <list>
#include <map>
#include <random>
#include <set>

#include "common/block_hash.h"

namespace kvc::engine {
namespace {

constexpr int kBlockSize = 4;

std::vector<FullBlockHash> Hashes(const std::vector<uint32_t>& tokens) {
  const BlockHashes h = HashBlocks(tokens, /*salt_hash=*/7, HashConfig{.block_size = kBlockSize});
  std::vector<FullBlockHash> out;
  for (size_t i = 0; i < h.seq.size(); ++i) out.push_back({h.seq[i], h.local[i]});
  return out;
}

std::vector<uint64_t> SeqHashes(const std::vector<uint32_t>& tokens) {
  std::vector<uint64_t> out;
  for (const FullBlockHash& h : Hashes(tokens)) out.push_back(h.seq_hash);
  return out;
}

std::vector<uint32_t> Tokens(uint32_t first, int n) {
  std::vector<uint32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

// Replays events into the set of cached hashes they describe.
void Replay(const KvEvent& event, std::set<uint64_t>* cached) {
  if (const auto* stored = std::get_if<StoredEvent>(&event)) {
    for (const StoredBlock& b : stored->blocks) cached->insert(b.seq_hash);
  } else if (const auto* removed = std::get_if<RemovedEvent>(&event)) {
    for (uint64_t h : removed->seq_hashes) cached->erase(h);
  } else {
    cached->clear();
  }
}

std::set<uint64_t> SnapshotSet(const BlockManager& manager) {
  std::set<uint64_t> out;
  for (const StoredEvent& run : manager.Snapshot()) {
    for (const StoredBlock& b : run.blocks) out.insert(b.seq_hash);
  }
  return out;
}

BlockManager Make(int num_blocks) {
  return BlockManager(BlockManager::Options{.num_blocks = num_blocks, .block_size = kBlockSize});
}

TEST(BlockManagerTest, ReusesCachedPrefixAndReportsIt) {
  BlockManager manager = Make(16);
  const std::vector<uint32_t> prompt = Tokens(100, 13);  // 3 full blocks + 1 token
  ASSERT_EQ(*manager.AllocateSequence(1, SeqHashes(prompt), 13), 0);
  manager.CommitFullBlocks(1, Hashes(prompt));
  EXPECT_EQ(manager.num_cached_blocks(), 3);
  manager.FreeSequence(1);
  EXPECT_EQ(manager.num_evictable_blocks(), 3);
  EXPECT_EQ(manager.num_free_blocks(), 16);

  ASSERT_EQ(*manager.AllocateSequence(2, SeqHashes(prompt), 13), 3);
  EXPECT_EQ(manager.num_evictable_blocks(), 0);
  EXPECT_EQ(manager.num_free_blocks(), 12);
}

TEST(BlockManagerTest, LastPromptTokenIsAlwaysRecomputed) {
  BlockManager manager = Make(16);
  const std::vector<uint32_t> prompt = Tokens(0, 8);  // exactly 2 blocks
  ASSERT_TRUE(manager.AllocateSequence(1, SeqHashes(prompt), 8).ok());
  manager.CommitFullBlocks(1, Hashes(prompt));
  manager.FreeSequence(1);
  // Only the first block is reused: the second holds the token whose logits are needed.
  EXPECT_EQ(*manager.AllocateSequence(2, SeqHashes(prompt), 8), 1);
  // Committing the recomputed block adopts the cached copy instead of caching it twice.
  const std::vector<BlockId> before = manager.BlockTable(2);
  const auto hashes = Hashes(prompt);
  manager.CommitFullBlocks(2, std::span(hashes).subspan(1));
  EXPECT_EQ(manager.num_cached_blocks(), 2);
  EXPECT_NE(manager.BlockTable(2)[1], before[1]);
  EXPECT_EQ(manager.num_free_blocks(), 14);
}

TEST(BlockManagerTest, EvictsLeastRecentlyReleasedChildBeforeParent) {
  BlockManager manager = Make(4);
  const std::vector<uint32_t> prompt = Tokens(0, 12);                    // 3 blocks
  ASSERT_TRUE(manager.AllocateSequence(1, SeqHashes(prompt), 13).ok());  // 4 blocks
  manager.CommitFullBlocks(1, Hashes(prompt));
  manager.FreeSequence(1);
  const uint64_t last_seq = manager.events().last_seq();
  // A fresh 2-block sequence must evict one cached block (there is one never-cached block).
  ASSERT_TRUE(manager.AllocateSequence(2, SeqHashes(Tokens(500, 8)), 8).ok());
  auto events = manager.events().Since(last_seq + 1);
  ASSERT_TRUE(events.has_value());
  ASSERT_EQ(events->size(), 1u);
  const auto& removed = std::get<RemovedEvent>((*events)[0].event);
  EXPECT_EQ(removed.seq_hashes, std::vector<uint64_t>{SeqHashes(prompt)[2]});  // the tail
  EXPECT_EQ(manager.CountCachedPrefix(SeqHashes(prompt)), 2);
}

TEST(BlockManagerTest, ExhaustionChangesNothing) {
  BlockManager manager = Make(3);
  ASSERT_TRUE(manager.AllocateSequence(1, {}, 8).ok());
  const auto status = manager.AllocateSequence(2, {}, 8);
  EXPECT_EQ(status.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(manager.HasSequence(2));
  EXPECT_EQ(manager.num_free_blocks(), 1);
  EXPECT_EQ(manager.GrowSequence(1, 13).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(manager.BlockTable(1).size(), 2u);
  EXPECT_TRUE(manager.GrowSequence(1, 12).ok());
  EXPECT_EQ(manager.num_free_blocks(), 0);
}

TEST(BlockManagerTest, StoredEventsCarryParents) {
  BlockManager manager = Make(8);
  const std::vector<uint32_t> tokens = Tokens(0, 12);
  const auto hashes = Hashes(tokens);
  ASSERT_TRUE(manager.AllocateSequence(1, {}, 12).ok());
  manager.CommitFullBlocks(1, std::span(hashes).first(1));
  manager.CommitFullBlocks(1, std::span(hashes).subspan(1));
  auto events = manager.events().Since(1);
  ASSERT_TRUE(events.has_value());
  ASSERT_EQ(events->size(), 2u);
  const auto& first = std::get<StoredEvent>((*events)[0].event);
  const auto& second = std::get<StoredEvent>((*events)[1].event);
  EXPECT_FALSE(first.parent.has_value());
  ASSERT_TRUE(second.parent.has_value());
  EXPECT_EQ(*second.parent, hashes[0].seq_hash);
  EXPECT_EQ(second.blocks.size(), 2u);
  EXPECT_EQ(second.blocks[0].num_tokens, static_cast<uint32_t>(kBlockSize));
}

TEST(BlockManagerTest, ResetDropsCacheAndLaterBlocksStayUncached) {
  BlockManager manager = Make(8);
  const std::vector<uint32_t> tokens = Tokens(0, 12);
  const auto hashes = Hashes(tokens);
  ASSERT_TRUE(manager.AllocateSequence(1, {}, 12).ok());
  manager.CommitFullBlocks(1, std::span(hashes).first(1));
  manager.ResetPrefixCache();
  EXPECT_EQ(manager.num_cached_blocks(), 0);
  EXPECT_EQ(manager.digest(), BlockSetDigest{});
  // Its parent left the cache, so the next block cannot enter it.
  manager.CommitFullBlocks(1, std::span(hashes).subspan(1));
  EXPECT_EQ(manager.num_cached_blocks(), 0);
  manager.FreeSequence(1);
  EXPECT_EQ(manager.num_free_blocks(), 8);
  EXPECT_EQ(manager.num_evictable_blocks(), 0);
}

TEST(KvEventLogTest, ReplaysWhatItStillHolds) {
  KvEventLog log(/*epoch=*/9, /*capacity=*/3);
  for (int i = 0; i < 5; ++i) log.Append(ClearedEvent{});
  EXPECT_EQ(log.last_seq(), 5u);
  EXPECT_FALSE(log.Since(2).has_value());  // evicted from the buffer
  ASSERT_TRUE(log.Since(3).has_value());
  EXPECT_EQ(log.Since(3)->size(), 3u);
  EXPECT_EQ(log.Since(3)->front().seq, 3u);
  EXPECT_TRUE(log.Since(6)->empty());
  EXPECT_FALSE(log.Since(7).has_value());  // from the future
  EXPECT_FALSE(log.Since(0).has_value());
}

// A plain model of the same policy with no block ids at all: only counts, a map of cached
// hashes to reference counts and a list for LRU order.
class ReferenceManager {
 public:
  explicit ReferenceManager(int num_blocks) : free_uncached_(num_blocks) {}

  struct Entry {
    bool cached = false;
    uint64_t hash = 0;
    // Nonzero for a block that was cached and shared when the cache was reset: it stays
    // shared, uncached, until its last user releases it.
    uint64_t detached = 0;
  };

  int num_free() const { return free_uncached_ + static_cast<int>(lru_.size()); }
  int num_evictable() const { return static_cast<int>(lru_.size()); }
  std::set<uint64_t> cached() const {
    std::set<uint64_t> out;
    for (const auto& [h, ref] : refs_) out.insert(h);
    return out;
  }
  int ref(const Entry& entry) const {
    if (entry.cached) return refs_.at(entry.hash);
    return entry.detached ? detached_refs_.at(entry.detached) : 1;
  }
  const std::vector<Entry>& entries(SequenceId id) const { return seqs_.at(id).entries; }

  // Returns the cached count, or -1 when the pool is too small.
  int Allocate(SequenceId id, const std::vector<uint64_t>& prompt, int num_tokens,
               std::vector<KvEvent>* events) {
    const int total = (num_tokens + kBlockSize - 1) / kBlockSize;
    const int reusable = std::min<int>(prompt.size(), (num_tokens - 1) / kBlockSize);
    int cached = 0;
    int taken = 0;
    while (cached < reusable && refs_.contains(prompt[cached])) {
      if (refs_[prompt[cached]] == 0) ++taken;
      ++cached;
    }
    taken += total - cached;
    if (taken > num_free()) return -1;
    Seq seq;
    for (int i = 0; i < cached; ++i) {
      Ref(prompt[i]);
      seq.entries.push_back({true, prompt[i]});
    }
    seq.committed = cached;
    AddFresh(&seq, total - cached, events);
    seqs_[id] = seq;
    return cached;
  }

  bool Grow(SequenceId id, int num_tokens, std::vector<KvEvent>* events) {
    Seq& seq = seqs_.at(id);
    const int more = (num_tokens + kBlockSize - 1) / kBlockSize - int(seq.entries.size());
    if (more <= 0) return true;
    if (more > num_free()) return false;
    AddFresh(&seq, more, events);
    return true;
  }

  void Commit(SequenceId id, const std::vector<FullBlockHash>& hashes,
              std::vector<KvEvent>* events) {
    Seq& seq = seqs_.at(id);
    StoredEvent stored;
    auto flush = [&] {
      if (!stored.blocks.empty()) events->push_back(stored);
      stored = StoredEvent{};
    };
    for (const FullBlockHash& h : hashes) {
      const int i = seq.committed++;
      Entry& entry = seq.entries[i];
      if (i > 0 && !seq.entries[i - 1].cached) {
        flush();
        continue;
      }
      if (refs_.contains(h.seq_hash)) {
        flush();
        if (!(entry.cached && entry.hash == h.seq_hash)) {
          ++free_uncached_;  // the sequence's own copy
          Ref(h.seq_hash);
          entry = {true, h.seq_hash};
        }
        continue;
      }
      entry = {true, h.seq_hash};
      refs_[h.seq_hash] = 1;
      if (stored.blocks.empty() && i > 0) stored.parent = seq.entries[i - 1].hash;
      stored.blocks.push_back({h.seq_hash, h.local_hash, kBlockSize});
    }
    flush();
  }

  void Free(SequenceId id) {
    const Seq& seq = seqs_.at(id);
    for (auto it = seq.entries.rbegin(); it != seq.entries.rend(); ++it) {
      if (it->detached) {
        if (--detached_refs_[it->detached] == 0) ++free_uncached_;
      } else if (!it->cached) {
        ++free_uncached_;
      } else if (--refs_[it->hash] == 0) {
        lru_.push_back(it->hash);
      }
    }
    seqs_.erase(id);
  }

  void Reset(std::vector<KvEvent>* events) {
    free_uncached_ += static_cast<int>(lru_.size());
    lru_.clear();
    refs_.clear();
    ++resets_;
    for (auto& [id, seq] : seqs_) {
      for (Entry& e : seq.entries) {
        if (!e.cached) continue;
        e.cached = false;
        e.detached = e.hash * 0x9e3779b97f4a7c15ull + resets_;
        ++detached_refs_[e.detached];
      }
    }
    events->push_back(ClearedEvent{});
  }

 private:
  struct Seq {
    std::vector<Entry> entries;
    int committed = 0;
  };

  void Ref(uint64_t hash) {
    if (refs_[hash]++ == 0) lru_.remove(hash);
  }

  void AddFresh(Seq* seq, int n, std::vector<KvEvent>* events) {
    RemovedEvent removed;
    for (int i = 0; i < n; ++i) {
      if (free_uncached_ > 0) {
        --free_uncached_;
      } else {
        removed.seq_hashes.push_back(lru_.front());
        refs_.erase(lru_.front());
        lru_.pop_front();
      }
      seq->entries.push_back({false, 0});
    }
    if (!removed.seq_hashes.empty()) events->push_back(removed);
  }

  int free_uncached_;
  std::map<uint64_t, int> refs_;
  std::list<uint64_t> lru_;
  std::map<SequenceId, Seq> seqs_;
  std::map<uint64_t, int> detached_refs_;
  uint64_t resets_ = 0;
};

TEST(BlockManagerRandomizedTest, MatchesReferenceModel) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937 rng(seed);
    const int num_blocks = 8 + rng() % 40;
    BlockManager manager(BlockManager::Options{
        .num_blocks = num_blocks, .block_size = kBlockSize, .epoch = seed, .replay_events = 8});
    ReferenceManager reference(num_blocks);
    std::vector<KvEvent> expected_events;
    std::set<uint64_t> replayed;
    uint64_t next_event = 1;
    std::map<SequenceId, std::vector<uint32_t>> live;  // tokens written so far
    SequenceId next_id = 1;

    // Prompts branch from a few shared stems so that prefixes repeat.
    auto random_prompt = [&] {
      std::vector<uint32_t> tokens = Tokens(1000 * (rng() % 3), int(rng() % 3) * kBlockSize);
      const int extra = 1 + rng() % (3 * kBlockSize);
      for (int i = 0; i < extra; ++i) tokens.push_back(rng() % 4);
      return tokens;
    };

    for (int step = 0; step < 400; ++step) {
      const int op = rng() % 10;
      if (op < 4 || live.empty()) {
        const std::vector<uint32_t> prompt = random_prompt();
        const SequenceId id = next_id++;
        const auto got = manager.AllocateSequence(id, SeqHashes(prompt), prompt.size());
        const int want = reference.Allocate(id, SeqHashes(prompt), prompt.size(), &expected_events);
        ASSERT_EQ(got.ok(), want >= 0);
        if (got.ok()) {
          ASSERT_EQ(*got, want);
          // Compute the prompt: commit every full block past the cached ones.
          auto hashes = Hashes(prompt);
          hashes.erase(hashes.begin(), hashes.begin() + want);
          manager.CommitFullBlocks(id, hashes);
          reference.Commit(id, hashes, &expected_events);
          live[id] = prompt;
        } else {
          ASSERT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
        }
      } else if (op < 7) {
        // Decode a few tokens into a random sequence.
        auto it = std::next(live.begin(), rng() % live.size());
        std::vector<uint32_t>& tokens = it->second;
        const int n = 1 + rng() % 6;
        const size_t new_size = tokens.size() + n;
        const bool grew = manager.GrowSequence(it->first, new_size).ok();
        ASSERT_EQ(grew, reference.Grow(it->first, new_size, &expected_events));
        if (grew) {
          for (int i = 0; i < n; ++i) tokens.push_back(rng() % 4);
          const auto all = Hashes(tokens);
          const int done = manager.num_committed_blocks(it->first);
          std::vector<FullBlockHash> fresh(all.begin() + done, all.end());
          manager.CommitFullBlocks(it->first, fresh);
          reference.Commit(it->first, fresh, &expected_events);
        }
      } else if (op < 9) {
        auto it = std::next(live.begin(), rng() % live.size());
        manager.FreeSequence(it->first);
        reference.Free(it->first);
        live.erase(it);
      } else if (rng() % 8 == 0) {
        manager.ResetPrefixCache();
        reference.Reset(&expected_events);
      }

      // Same counts, same cache, same events, and the events describe the cache.
      ASSERT_EQ(manager.num_free_blocks(), reference.num_free());
      ASSERT_EQ(manager.num_evictable_blocks(), reference.num_evictable());
      const std::set<uint64_t> cached = reference.cached();
      ASSERT_EQ(SnapshotSet(manager), cached);
      ASSERT_EQ(manager.num_cached_blocks(), static_cast<int>(cached.size()));
      BlockSetDigest digest;
      for (uint64_t h : cached) digest.Add(h);
      ASSERT_EQ(manager.digest(), digest);
      const auto events = manager.events().Since(next_event);
      ASSERT_TRUE(events.has_value());
      ASSERT_EQ(events->size(), expected_events.size());
      for (size_t i = 0; i < events->size(); ++i) {
        ASSERT_EQ((*events)[i].seq, next_event + i);
        ASSERT_TRUE((*events)[i].event == expected_events[i]) << "event " << next_event + i;
        Replay((*events)[i].event, &replayed);
      }
      next_event += events->size();
      expected_events.clear();
      ASSERT_EQ(replayed, cached);
      // Reference counts and block tables agree.
      std::map<BlockId, int> uses;
      for (const auto& [id, tokens] : live) {
        const auto& table = manager.BlockTable(id);
        const auto& entries = reference.entries(id);
        ASSERT_EQ(table.size(), entries.size());
        for (size_t i = 0; i < table.size(); ++i) {
          ++uses[table[i]];
          ASSERT_EQ(manager.ref_count(table[i]), reference.ref(entries[i]));
        }
      }
      for (const auto& [block, count] : uses) ASSERT_EQ(manager.ref_count(block), count);
    }
  }
}

TEST(BlockManagerTest, SnapshotListsParentsBeforeChildren) {
  BlockManager manager = Make(32);
  for (uint32_t branch = 0; branch < 3; ++branch) {
    std::vector<uint32_t> tokens = Tokens(0, 8);
    for (uint32_t i = 0; i < 9; ++i) tokens.push_back(branch * 100 + i);
    ASSERT_TRUE(manager.AllocateSequence(branch, SeqHashes(tokens), tokens.size()).ok());
    const auto hashes = Hashes(tokens);
    const int done = manager.num_committed_blocks(branch);
    manager.CommitFullBlocks(branch,
                             std::vector<FullBlockHash>(hashes.begin() + done, hashes.end()));
  }
  std::set<uint64_t> seen;
  for (const StoredEvent& run : manager.Snapshot()) {
    if (run.parent) {
      EXPECT_TRUE(seen.contains(*run.parent));
    }
    for (const StoredBlock& b : run.blocks) seen.insert(b.seq_hash);
  }
  EXPECT_EQ(seen.size(), 2u + 3u * 2u);
}

}  // namespace
}  // namespace kvc::engine
