#include "worker/engine/kv_events.h"

#include "absl/time/clock.h"

namespace kvc::engine {

uint64_t KvEventLog::Append(KvEvent event) {
  const uint64_t seq = next_seq_++;
  buffer_.push_back(NumberedEvent{seq, std::move(event), absl::ToUnixMillis(absl::Now())});
  while (buffer_.size() > capacity_) buffer_.pop_front();
  return seq;
}

std::optional<std::vector<NumberedEvent>> KvEventLog::Since(uint64_t from_seq) const {
  if (from_seq == 0 || from_seq > next_seq_) return std::nullopt;
  const uint64_t oldest = buffer_.empty() ? next_seq_ : buffer_.front().seq;
  if (from_seq < oldest) return std::nullopt;
  return std::vector<NumberedEvent>(buffer_.begin() + (from_seq - oldest), buffer_.end());
}

}  // namespace kvc::engine
