// The values a chat template computes with: the Python objects that Jinja templates see (None,
// bool, int, float, str, list, tuple, dict, jinja's Undefined and Namespace, callables), with
// Python's equality, ordering, truthiness, str() and repr(). Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_VALUE_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat_template/absl_view.h"

namespace kvc::chat::internal {

class Evaluator;
class Value;

// Arguments of a call: f(a, b, key=c).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using NativeFunction = std::function<absl::StatusOr<Value>(Evaluator&, CallArgs&)>;

struct Function {
  std::string name;  // For messages: "range", "str.split", "macro 'm'".
  NativeFunction call;
};

// A list or a tuple. Lists are never mutated after construction (the templates run in an
// immutable sandbox, as Hugging Face runs them), so sharing one between values is safe.
struct List {
  std::vector<Value> items;
  bool is_tuple = false;
};

// A dict in insertion order, or a jinja namespace() (the one mutable object: `set ns.x = v`).
// Lookup is linear: template dicts (a message, a tool) hold a handful of keys.
struct Dict {
  std::vector<std::pair<Value, Value>> entries;
  bool is_namespace = false;

  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  void Set(Value key, Value value);
};

// Thread-safety: a Value is a small handle; copies share lists, dicts and functions. One
// evaluation owns its values; the shared parts are read-only except namespaces, which never
// leave the evaluation that made them.
class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  // Undefined. `hint` is the error to report when the value is used in a way that needs it
  // ("'x' is undefined", "'dict object' has no attribute 'y'").
  Value() : kind_(Kind::kUndefined), data_(std::string("value is undefined")) {}
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool value);
  static Value Int(int64_t value);
  static Value Float(double value);
  static Value String(std::string value);
  static Value MakeList(std::vector<Value> items, bool is_tuple = false);
  static Value MakeDict(std::vector<std::pair<Value, Value>> entries = {});
  static Value MakeNamespace();
  static Value MakeFunction(std::string name, NativeFunction call);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return is_list() && list().is_tuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return is_dict() && dict().is_namespace; }
  bool is_mapping() const { return is_dict() && !dict().is_namespace; }
  bool is_function() const { return kind_ == Kind::kFunction; }
  // bool, int or float (Python's bool is an int).
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  // bool or int.
  bool is_integral() const { return is_bool() || is_int(); }

  bool boolean() const { return std::get<bool>(data_); }
  // REQUIRES: is_integral().
  int64_t integer() const {
    return is_bool() ? static_cast<int64_t>(boolean()) : std::get<int64_t>(data_);
  }
  // REQUIRES: is_number().
  double number() const;
  const std::string& string() const { return std::get<std::string>(data_); }
  const std::string& undefined_hint() const { return std::get<std::string>(data_); }
  const List& list() const { return *std::get<std::shared_ptr<List>>(data_); }
  const Dict& dict() const { return *std::get<std::shared_ptr<Dict>>(data_); }
  // Only namespaces are mutated.
  Dict& mutable_dict() const { return *std::get<std::shared_ptr<Dict>>(data_); }
  const Function& function() const { return *std::get<std::shared_ptr<const Function>>(data_); }

  // Python's bool(x); Undefined is false.
  bool Truthy() const;
  // Python's type name: "int", "str", "NoneType", "dict", "Undefined", ...
  std::string TypeName() const;
  // Same object (Jinja's `sameas`): equal scalars, or the same list/dict/function.
  bool SameAs(const Value& other) const;

 private:
  using Data =
      std::variant<std::monostate, bool, int64_t, double, std::string, std::shared_ptr<List>,
                   std::shared_ptr<Dict>, std::shared_ptr<const Function>>;
  // Builds the alternative in place: going through a temporary Data trips GCC 12's
  // maybe-uninitialized warning under the sanitizers.
  template <typename T>
  Value(Kind kind, T&& value)
      : kind_(kind), data_(std::in_place_type<std::decay_t<T>>, std::forward<T>(value)) {}

  Kind kind_;
  Data data_;
};

// Python's ==.
bool Equal(const Value& left, const Value& right);
// Python's <, <=, >, >= as a three-way comparison; TypeError (INVALID_ARGUMENT) across types.
absl::StatusOr<int> Compare(const Value& left, const Value& right, std::string_view op);
// Python's str(x); Undefined renders as "".
std::string ToStr(const Value& value);
// Python's repr(x).
std::string Repr(const Value& value);
// Python's repr(float): shortest round-trip digits, "1.0", "1e+16", "nan", "inf".
std::string FormatFloat(double value);
// Python's iter(x): a list's or tuple's items, a dict's keys, a string's characters, nothing
// for Undefined; TypeError for the rest.
absl::StatusOr<std::vector<Value>> Iterate(const Value& value);
// Python's len(x); Undefined has length 0.
absl::StatusOr<int64_t> Length(const Value& value);
// A JSON document as template values (objects become dicts in document order).
Value FromJson(const nlohmann::ordered_json& json);

// The UTF-8 characters of `text`, each a view into it; a byte that does not start a valid
// sequence stands alone, so that any byte string splits without loss.
std::vector<std::string_view> Utf8Chars(std::string_view text);
// The length of the character at `pos` and the start of the one that ends at `end`, split as
// Utf8Chars splits. REQUIRES: pos < text.size(); 0 < end <= text.size(), end a boundary.
size_t Utf8CharLength(std::string_view text, size_t pos);
size_t Utf8PreviousCharStart(std::string_view text, size_t end);

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_VALUE_H_
