// The built-ins that templates call: Jinja's filters and tests (filters.cc, tests.cc), the
// global functions Hugging Face provides (globals.cc: range, namespace, dict, raise_exception,
// strftime_now), the Python str and dict methods templates use (methods.cc), and the operators
// (operators.cc, percent_format.cc). Internal to common/chat_template. All are stateless and
// thread-safe.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_BUILTINS_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_BUILTINS_H_

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat_template/value.h"

namespace kvc::chat::internal {

class Evaluator;

bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);
// REQUIRES: IsKnownFilter(name) / IsKnownTest(name).
absl::StatusOr<Value> CallFilter(Evaluator& evaluator, std::string_view name, Value input,
                                 CallArgs& args);
absl::StatusOr<bool> CallTest(Evaluator& evaluator, std::string_view name, const Value& input,
                              CallArgs& args);
// A global function by name, or nullptr.
const Value* FindGlobal(std::string_view name);
// `object.name` when it names a method of a str or dict, bound to `object`.
std::optional<Value> BoundMethod(const Value& object, std::string_view name);

// Operators with Python's semantics: + - * / // % ** on numbers, strings and lists, ~, unary
// minus and plus, `in`. TypeError and ZeroDivisionError become INVALID_ARGUMENT.
absl::StatusOr<Value> BinaryOp(Evaluator& evaluator, std::string_view op, const Value& left,
                               const Value& right);
absl::StatusOr<Value> UnaryOp(std::string_view op, const Value& operand);
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// Python's `format % arguments` (percent_format.cc): a tuple gives the arguments in order, a
// mapping serves %(key)s, anything else is the one argument.
absl::StatusOr<std::string> PercentFormat(Evaluator& evaluator, const std::string& format,
                                          const Value& arguments);

// Binds a call's arguments to `params` in order, as Python does, for a function named
// `function` in messages. Left-out parameters are Undefined; the first `required` must be given.
absl::StatusOr<std::vector<Value>> BindArgs(std::string_view function, const CallArgs& args,
                                            std::initializer_list<std::string_view> params,
                                            size_t required = 0);

// Python string operations shared by filters and methods. Whitespace is Python's str.isspace().
bool IsPySpace(std::string_view utf8_char);
// str.strip / lstrip / rstrip; `chars` unset strips whitespace.
std::string PyStrip(std::string_view text, const std::optional<std::string>& chars, bool left,
                    bool right);
// Case mapping covers ASCII only: role names, markers and the like in templates are ASCII.
std::string AsciiUpper(std::string_view text);
std::string AsciiLower(std::string_view text);
// Python int() and float() of a value (numbers, numeric strings); nullopt when not numeric.
std::optional<int64_t> ToInteger(const Value& value, int base = 10);
std::optional<double> ToFloat(const Value& value);

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_BUILTINS_H_
