#include "worker/server/stop_strings.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace kvc::server {

StopStringFilter::StopStringFilter(std::vector<std::string> stop_strings)
    : stop_strings_(std::move(stop_strings)) {
  for (const std::string& stop : stop_strings_) {
    KVC_CHECK(!stop.empty(), "empty stop string (requests are validated before this)");
  }
}

std::string StopStringFilter::Feed(std::string_view text, std::optional<std::string>* matched) {
  held_.append(text);
  if (stop_strings_.empty()) return std::exchange(held_, {});
  // The earliest completed stop string wins.
  size_t cut = std::string::npos;
  for (const std::string& stop : stop_strings_) {
    const size_t at = held_.find(stop);
    if (at != std::string::npos && at < cut) {
      cut = at;
      *matched = stop;
    }
  }
  if (cut != std::string::npos) {
    std::string shown = held_.substr(0, cut);
    held_.clear();
    return shown;
  }
  // Hold back the longest tail that some stop string starts with.
  size_t hold = 0;
  for (const std::string& stop : stop_strings_) {
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > hold; --n) {
      if (std::string_view(held_).substr(held_.size() - n) == std::string_view(stop).substr(0, n)) {
        hold = n;
        break;
      }
    }
  }
  std::string shown = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return shown;
}

std::string StopStringFilter::Flush() { return std::exchange(held_, {}); }

}  // namespace kvc::server
