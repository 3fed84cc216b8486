#include "worker/server/event_hub.h"

#include <utility>

#include "common/check.h"

namespace kvc::server {

EventHub::EventHub(uint64_t epoch, size_t capacity) : epoch_(epoch), capacity_(capacity) {
  state_.epoch = epoch;
}

void EventHub::Publish(std::vector<engine::NumberedEvent> events, const BlockSetDigest& digest) {
  absl::MutexLock lock(&mutex_);
  for (engine::NumberedEvent& event : events) {
    KVC_CHECK(event.seq == state_.last_seq + 1, "published events must be contiguous");
    state_.last_seq = event.seq;
    buffer_.push_back(std::move(event));
  }
  while (buffer_.size() > capacity_) buffer_.pop_front();
  state_.digest = digest;
}

EventHub::Update EventHub::WaitSince(uint64_t from_seq, absl::Duration timeout) const {
  absl::MutexLock lock(&mutex_);
  auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mutex_) {
    return closed_ || state_.last_seq >= from_seq;
  };
  mutex_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  Update update;
  update.state = state_;
  update.closed = closed_;
  if (from_seq > state_.last_seq + 1 || from_seq == 0) {
    update.gone = true;  // from the future (another epoch's numbering)
    return update;
  }
  if (from_seq > state_.last_seq) return update;
  const uint64_t oldest = buffer_.empty() ? state_.last_seq + 1 : buffer_.front().seq;
  if (from_seq < oldest) {
    update.gone = true;
    return update;
  }
  update.events.assign(buffer_.begin() + (from_seq - oldest), buffer_.end());
  return update;
}

CacheState EventHub::state() const {
  absl::MutexLock lock(&mutex_);
  return state_;
}

void EventHub::Shutdown() {
  absl::MutexLock lock(&mutex_);
  closed_ = true;
}

}  // namespace kvc::server
