// Template values as JSON text exactly as Python's json.dumps writes them, which is what the
// `tojson` filter of Hugging Face's chat templates calls (not Jinja's own HTML-escaping tojson).
// Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_JSON_DUMP_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_JSON_DUMP_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/chat_template/value.h"

namespace kvc::chat::internal {

// json.dumps keyword arguments.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  // One level of indentation; unset writes everything on one line.
  std::optional<std::string> indent;
  // Defaults follow json.dumps: (", ", ": ") without indent, (",", ": ") with it.
  std::optional<std::string> item_separator;
  std::optional<std::string> key_separator;
  bool sort_keys = false;
};

// INVALID_ARGUMENT for what JSON cannot hold (Undefined, functions, namespaces, non-scalar keys).
absl::StatusOr<std::string> JsonDump(const Value& value, const JsonDumpOptions& options);

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_JSON_DUMP_H_
