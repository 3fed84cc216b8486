// Stop strings over streamed text: emits text as soon as it cannot be the start of a stop
// string, holds back the rest, and cuts the output where a stop string completes.
// Thread-safety: none; one per request.
#ifndef KVCLUSTER_WORKER_SERVER_STOP_STRINGS_H_
#define KVCLUSTER_WORKER_SERVER_STOP_STRINGS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::server {

class StopStringFilter {
 public:
  // REQUIRES: no stop string is empty.
  explicit StopStringFilter(std::vector<std::string> stop_strings);

  // Adds newly decoded text and returns what may be shown now. When a stop string
  // completes, returns the text before it, sets *matched to it, and drops everything after.
  std::string Feed(std::string_view text, std::optional<std::string>* matched);

  // The text still held back, at the end of generation.
  std::string Flush();

 private:
  std::vector<std::string> stop_strings_;
  std::string held_;
};

}  // namespace kvc::server

#endif  // KVCLUSTER_WORKER_SERVER_STOP_STRINGS_H_
