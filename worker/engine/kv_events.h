// KV events as the engine produces them (DESIGN.md "KV events"), and the numbered, bounded
// log that the worker's SubscribeKvEvents streams replay from. The wire form is
// kvcluster.v1.KvEvent; the server converts.
#ifndef KVCLUSTER_WORKER_ENGINE_KV_EVENTS_H_
#define KVCLUSTER_WORKER_ENGINE_KV_EVENTS_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "common/block_hash.h"

namespace kvc::engine {

struct StoredBlock {
  uint64_t seq_hash = 0;
  uint64_t local_hash = 0;
  uint32_t num_tokens = 0;
  friend bool operator==(const StoredBlock&, const StoredBlock&) = default;
};

// Blocks that entered the prefix cache, each the child of the one before it; the first is
// the child of `parent` (absent for the first block of a sequence).
struct StoredEvent {
  std::optional<uint64_t> parent;
  std::vector<StoredBlock> blocks;
  friend bool operator==(const StoredEvent&, const StoredEvent&) = default;
};

struct RemovedEvent {
  std::vector<uint64_t> seq_hashes;
  friend bool operator==(const RemovedEvent&, const RemovedEvent&) = default;
};

struct ClearedEvent {
  friend bool operator==(const ClearedEvent&, const ClearedEvent&) = default;
};

using KvEvent = std::variant<StoredEvent, RemovedEvent, ClearedEvent>;

struct NumberedEvent {
  uint64_t seq = 0;
  KvEvent event;
  // Wall-clock time of Append, in Unix milliseconds (subscribers measure event lag with it).
  int64_t unix_time_ms = 0;
};

// The events of one worker lifetime (epoch), numbered from 1, with the newest `capacity`
// kept for replay, and the digest of the cache contents they imply.
// Thread-safety: none; owned by the engine thread (the server copies out under its own lock).
class KvEventLog {
 public:
  KvEventLog(uint64_t epoch, size_t capacity) : epoch_(epoch), capacity_(capacity) {}

  uint64_t epoch() const { return epoch_; }
  // Seq of the newest event; 0 before the first.
  uint64_t last_seq() const { return next_seq_ - 1; }

  // Appends an event and returns its seq.
  uint64_t Append(KvEvent event);

  // The events with seq >= from_seq, or nullopt when some of them are no longer buffered
  // (the subscriber needs a snapshot). from_seq == last_seq() + 1 gives an empty list.
  std::optional<std::vector<NumberedEvent>> Since(uint64_t from_seq) const;

 private:
  const uint64_t epoch_;
  const size_t capacity_;
  uint64_t next_seq_ = 1;
  std::deque<NumberedEvent> buffer_;
};

}  // namespace kvc::engine

#endif  // KVCLUSTER_WORKER_ENGINE_KV_EVENTS_H_
