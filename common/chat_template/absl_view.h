// Debian's Abseil has its own string_view type, distinct from std::string_view; absl::StrCat and
// friends take only that one. Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_ABSL_VIEW_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_ABSL_VIEW_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace kvc::chat::internal {

inline absl::string_view AsAbsl(std::string_view text) { return {text.data(), text.size()}; }

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_ABSL_VIEW_H_
