// Jinja's tests (`x is defined`) and the global functions that Hugging Face gives chat
// templates: range, namespace, dict (Jinja's), raise_exception and strftime_now (its own).
#include <algorithm>
#include <chrono>
#include <ctime>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/evaluator.h"

namespace kvc::chat::internal {
namespace {

// Jinja's sandbox refuses longer ranges; so do we.
constexpr int64_t kMaxRange = 100000;

absl::StatusOr<bool> TestOneArg(std::string_view name, const CallArgs& args,
                                const std::function<absl::StatusOr<bool>(const Value&)>& test) {
  absl::StatusOr<std::vector<Value>> bound =
      BindArgs(absl::StrCat("test '", AsAbsl(name), "'"), args, {"other"}, 1);
  if (!bound.ok()) return bound.status();
  return test((*bound)[0]);
}

absl::StatusOr<bool> NoArgs(std::string_view name, const CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound =
      BindArgs(absl::StrCat("test '", AsAbsl(name), "'"), args, {});
  if (!bound.ok()) return bound.status();
  return true;
}

absl::StatusOr<bool> OrderTest(const Value& left, const Value& right, std::string_view op) {
  for (const Value* operand : {&left, &right}) {
    if (operand->is_undefined()) return absl::InvalidArgumentError(operand->undefined_hint());
  }
  absl::StatusOr<int> order = Compare(left, right, op);
  if (!order.ok()) return order.status();
  if (*order == 2) return false;
  if (op == "<") return *order < 0;
  if (op == "<=") return *order <= 0;
  if (op == ">") return *order > 0;
  return *order >= 0;
}

absl::StatusOr<int64_t> Remainder(Evaluator& evaluator, const Value& value, const Value& divisor) {
  absl::StatusOr<Value> remainder = BinaryOp(evaluator, "%", value, divisor);
  if (!remainder.ok()) return remainder.status();
  if (remainder->is_float()) return remainder->number() == 0 ? 0 : 1;
  return remainder->integer();
}

constexpr std::string_view kTests[] = {
    "defined", "undefined",   "none",   "boolean", "false",       "true",     "integer",
    "float",   "number",      "string", "mapping", "iterable",    "sequence", "callable",
    "lower",   "upper",       "odd",    "even",    "divisibleby", "sameas",   "escaped",
    "in",      "==",          "eq",     "equalto", "!=",          "ne",       ">",
    "gt",      "greaterthan", ">=",     "ge",      "<",           "lt",       "lessthan",
    "<=",      "le"};

absl::StatusOr<Value> Range(Evaluator&, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindArgs("range", args, {"start", "stop", "step"}, 1);
  if (!bound.ok()) return bound.status();
  for (const Value& value : *bound) {
    if (!value.is_undefined() && !value.is_integral()) {
      return absl::InvalidArgumentError(
          absl::StrCat("range() arguments must be integers, not ", value.TypeName()));
    }
  }
  int64_t start = 0;
  int64_t stop = (*bound)[0].integer();
  if (!(*bound)[1].is_undefined()) {
    start = (*bound)[0].integer();
    stop = (*bound)[1].integer();
  }
  const int64_t step = (*bound)[2].is_undefined() ? 1 : (*bound)[2].integer();
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  std::vector<Value> items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(items.size()) >= kMaxRange) {
      return absl::InvalidArgumentError(
          absl::StrCat("range too big: ranges are limited to ", kMaxRange, " items"));
    }
    items.push_back(Value::Int(i));
    if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
  }
  return Value::MakeList(std::move(items));
}

// namespace(...) and dict(...): a dict or pairs positionally, then keyword arguments.
absl::StatusOr<Value> MakeMapping(CallArgs& args, bool is_namespace, std::string_view function) {
  Value result = is_namespace ? Value::MakeNamespace() : Value::MakeDict();
  Dict& dict = result.mutable_dict();
  if (args.positional.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(function), " takes at most 1 positional argument"));
  }
  if (args.positional.size() == 1) {
    const Value& initial = args.positional[0];
    if (initial.is_mapping()) {
      for (const auto& [key, value] : initial.dict().entries) dict.Set(key, value);
    } else if (initial.is_list()) {
      for (const Value& pair : initial.list().items) {
        if (!pair.is_list() || pair.list().items.size() != 2) {
          return absl::InvalidArgumentError(
              absl::StrCat(AsAbsl(function), ": each item of the sequence must be a pair"));
        }
        dict.Set(pair.list().items[0], pair.list().items[1]);
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(function), ": cannot build a mapping from ", initial.TypeName()));
    }
  }
  for (auto& [key, value] : args.keyword) dict.Set(Value::String(key), value);
  return result;
}

absl::StatusOr<Value> StrftimeNow(Evaluator& evaluator, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindArgs("strftime_now", args, {"format"}, 1);
  if (!bound.ok()) return bound.status();
  if (!(*bound)[0].is_string()) {
    return absl::InvalidArgumentError("strftime_now: the format must be a string");
  }
  const std::string& format = (*bound)[0].string();
  if (format.empty()) return Value::String("");
  // Local time, as Python's datetime.now() gives it.
  const std::time_t now = std::chrono::system_clock::to_time_t(evaluator.Now());
  std::tm local{};
  localtime_r(&now, &local);
  // strftime reports 0 both for "too small" and for an empty result: grow a few times, then
  // take an empty result as the answer.
  for (size_t capacity = format.size() * 4 + 64; capacity <= format.size() * 256 + 4096;
       capacity *= 4) {
    std::string out(capacity, '\0');
    const size_t written = std::strftime(out.data(), out.size(), format.c_str(), &local);
    if (written > 0) {
      out.resize(written);
      return Value::String(std::move(out));
    }
  }
  return Value::String("");
}

std::vector<std::pair<std::string_view, Value>> MakeGlobals() {
  std::vector<std::pair<std::string_view, Value>> globals;
  globals.emplace_back("range", Value::MakeFunction("range", Range));
  globals.emplace_back(
      "namespace", Value::MakeFunction("namespace", [](Evaluator& evaluator, CallArgs& args) {
        absl::StatusOr<Value> made = MakeMapping(args, /*is_namespace=*/true, "namespace");
        if (made.ok()) evaluator.TrackNamespace(*made);
        return made;
      }));
  globals.emplace_back("dict", Value::MakeFunction("dict", [](Evaluator&, CallArgs& args) {
                         return MakeMapping(args, /*is_namespace=*/false, "dict");
                       }));
  globals.emplace_back(
      "raise_exception",
      Value::MakeFunction("raise_exception",
                          [](Evaluator& evaluator, CallArgs& args) -> absl::StatusOr<Value> {
                            absl::StatusOr<std::vector<Value>> bound =
                                BindArgs("raise_exception", args, {"message"}, 1);
                            if (!bound.ok()) return bound.status();
                            return evaluator.Raise(ToStr((*bound)[0]));
                          }));
  globals.emplace_back("strftime_now", Value::MakeFunction("strftime_now", StrftimeNow));
  return globals;
}

}  // namespace

bool IsKnownTest(std::string_view name) {
  return name == "filter" || name == "test" ||
         std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

absl::StatusOr<bool> CallTest(Evaluator& evaluator, std::string_view name, const Value& input,
                              CallArgs& args) {
  if (name == "==" || name == "eq" || name == "equalto") {
    return TestOneArg(name, args, [&](const Value& other) { return Equal(input, other); });
  }
  if (name == "!=" || name == "ne") {
    return TestOneArg(name, args, [&](const Value& other) { return !Equal(input, other); });
  }
  if (name == "<" || name == "lt" || name == "lessthan") {
    return TestOneArg(name, args, [&](const Value& other) { return OrderTest(input, other, "<"); });
  }
  if (name == "<=" || name == "le") {
    return TestOneArg(name, args,
                      [&](const Value& other) { return OrderTest(input, other, "<="); });
  }
  if (name == ">" || name == "gt" || name == "greaterthan") {
    return TestOneArg(name, args, [&](const Value& other) { return OrderTest(input, other, ">"); });
  }
  if (name == ">=" || name == "ge") {
    return TestOneArg(name, args,
                      [&](const Value& other) { return OrderTest(input, other, ">="); });
  }
  if (name == "sameas") {
    return TestOneArg(name, args, [&](const Value& other) { return input.SameAs(other); });
  }
  if (name == "in") {
    return TestOneArg(name, args, [&](const Value& other) { return Contains(other, input); });
  }
  if (name == "divisibleby") {
    return TestOneArg(name, args, [&](const Value& other) -> absl::StatusOr<bool> {
      absl::StatusOr<int64_t> remainder = Remainder(evaluator, input, other);
      if (!remainder.ok()) return remainder.status();
      return *remainder == 0;
    });
  }
  if (absl::StatusOr<bool> no_args = NoArgs(name, args); !no_args.ok()) return no_args;
  if (name == "defined") return !input.is_undefined();
  if (name == "undefined") return input.is_undefined();
  if (name == "none") return input.is_none();
  if (name == "boolean") return input.is_bool();
  if (name == "false") return input.is_bool() && !input.boolean();
  if (name == "true") return input.is_bool() && input.boolean();
  if (name == "integer") return input.is_int();
  if (name == "float") return input.is_float();
  if (name == "number") return input.is_number();
  if (name == "string") return input.is_string();
  if (name == "mapping") return input.is_mapping();
  if (name == "iterable") {
    return input.is_undefined() || input.is_string() || input.is_list() || input.is_mapping();
  }
  if (name == "sequence") {
    return input.is_undefined() || input.is_string() || input.is_list() || input.is_mapping();
  }
  if (name == "callable") return input.is_function() || input.is_undefined();
  if (name == "escaped") return false;
  if (name == "lower" || name == "upper") {
    const std::string text = ToStr(input);
    bool cased = false;
    for (char c : text) {
      const bool upper = c >= 'A' && c <= 'Z';
      const bool lower = c >= 'a' && c <= 'z';
      if ((name == "lower" && upper) || (name == "upper" && lower)) return false;
      cased = cased || upper || lower;
    }
    return cased;
  }
  if (name == "odd" || name == "even") {
    absl::StatusOr<int64_t> remainder = Remainder(evaluator, input, Value::Int(2));
    if (!remainder.ok()) return remainder.status();
    return (*remainder != 0) == (name == "odd");
  }
  if (name == "filter") return input.is_string() && IsKnownFilter(input.string());
  if (name == "test") return input.is_string() && IsKnownTest(input.string());
  return absl::InternalError(absl::StrCat("no test named ", AsAbsl(name)));
}

const Value* FindGlobal(std::string_view name) {
  static const auto* globals = new std::vector<std::pair<std::string_view, Value>>(MakeGlobals());
  for (const auto& [global_name, value] : *globals) {
    if (global_name == name) return &value;
  }
  return nullptr;
}

}  // namespace kvc::chat::internal
