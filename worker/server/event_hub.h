// The worker's KV events as subscribers see them: a bounded, thread-safe copy of the engine's
// numbered events, plus the cache summary (block count and digest) as of the newest one, so
// that a heartbeat always describes exactly the events sent before it.
//
// Thread-safety: thread-safe. The engine thread publishes; any number of subscriber threads
// wait and read. State below is guarded by mutex_.
#ifndef KVCLUSTER_WORKER_SERVER_EVENT_HUB_H_
#define KVCLUSTER_WORKER_SERVER_EVENT_HUB_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/block_hash.h"
#include "worker/engine/kv_events.h"

namespace kvc::server {

struct CacheState {
  uint64_t epoch = 0;
  uint64_t last_seq = 0;
  BlockSetDigest digest;
};

class EventHub {
 public:
  EventHub(uint64_t epoch, size_t capacity);

  uint64_t epoch() const { return epoch_; }

  // Appends events (seqs continuing the previous ones) and the cache summary after them.
  void Publish(std::vector<engine::NumberedEvent> events, const BlockSetDigest& digest);

  struct Update {
    // Events from the requested seq to state.last_seq, in order.
    std::vector<engine::NumberedEvent> events;
    CacheState state;
    // The requested seq is no longer buffered: the subscriber needs a snapshot.
    bool gone = false;
    // Shutdown() was called.
    bool closed = false;
  };

  // Returns the events with seq >= from_seq, waiting up to `timeout` for some to arrive
  // (an empty update on timeout still carries the current state for a heartbeat).
  Update WaitSince(uint64_t from_seq, absl::Duration timeout) const;

  CacheState state() const;

  // Wakes every waiter; later waits return closed at once.
  void Shutdown();

 private:
  const uint64_t epoch_;
  const size_t capacity_;
  mutable absl::Mutex mutex_;
  std::deque<engine::NumberedEvent> buffer_ ABSL_GUARDED_BY(mutex_);
  CacheState state_ ABSL_GUARDED_BY(mutex_);
  bool closed_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace kvc::server

#endif  // KVCLUSTER_WORKER_SERVER_EVENT_HUB_H_
