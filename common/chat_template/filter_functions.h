// The filter functions shared between filters.cc (single values and the table of all filters)
// and sequence_filters.cc (sequences and mappings). Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_FILTER_FUNCTIONS_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_FILTER_FUNCTIONS_H_

#include <initializer_list>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/value.h"

namespace kvc::chat::internal {

// A filter: `input | name(args)`.
using FilterFunction = absl::StatusOr<Value> (*)(Evaluator&, Value& input, CallArgs& args);

inline absl::StatusOr<std::vector<Value>> BindFilterArgs(
    std::string_view filter, const CallArgs& args, std::initializer_list<std::string_view> params,
    size_t required = 0) {
  return BindArgs(absl::StrCat("filter '", AsAbsl(filter), "'"), args, params, required);
}

// A boolean option: given and true.
inline bool FilterFlag(const Value& value) { return !value.is_undefined() && value.Truthy(); }

// sequence_filters.cc
absl::StatusOr<Value> DictSort(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> First(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> ItemsFilter(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Join(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Last(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> ListFilter(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Map(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Max(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Min(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> RejectAttr(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> RejectFilter(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Reverse(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> SelectAttr(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> SelectFilter(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Sort(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Sum(Evaluator&, Value& input, CallArgs& args);
absl::StatusOr<Value> Unique(Evaluator&, Value& input, CallArgs& args);

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_FILTER_FUNCTIONS_H_
