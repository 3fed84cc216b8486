// Expressions: names, literals, attribute and item access, slices, calls, filters, tests and
// operators.
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/evaluator.h"

namespace kvc::chat::internal {
namespace {

// Jinja's description of an object in "has no attribute" messages.
std::string ObjectDescription(const Value& object) {
  if (object.is_none()) return "None";
  return absl::StrCat(object.TypeName(), " object");
}

Value MissingAttribute(const Value& object, std::string_view name) {
  return Value::Undefined(absl::StrCat(Repr(Value::String(ObjectDescription(object))),
                                       " has no attribute '", AsAbsl(name), "'"));
}

Value MissingItem(const Value& object, const Value& key) {
  if (key.is_string()) return MissingAttribute(object, key.string());
  return Value::Undefined(absl::StrCat(ObjectDescription(object), " has no element ", Repr(key)));
}

// Python's slice.indices(length) applied: the positions a slice selects.
std::vector<int64_t> SlicePositions(int64_t length, const Value& start, const Value& stop,
                                    int64_t step) {
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? length : length - 1;
  auto clamp = [&](const Value& bound, int64_t if_none) {
    if (bound.is_none()) return if_none;
    int64_t index = bound.integer();
    if (index < 0) {
      index += length;
      if (index < lower) index = lower;
    } else if (index > upper) {
      index = upper;
    }
    return index;
  };
  const int64_t first = clamp(start, step > 0 ? lower : upper);
  const int64_t end = clamp(stop, step > 0 ? upper : lower);
  std::vector<int64_t> positions;
  for (int64_t i = first; step > 0 ? i < end : i > end; i += step) positions.push_back(i);
  return positions;
}

}  // namespace

absl::StatusOr<Value> Evaluator::Eval(const Expr& expr, Scope& scope) {
  if (absl::Status status = Step(); !status.ok()) return status;
  absl::StatusOr<Value> result = EvalImpl(expr, scope);
  if (!result.ok() && !error_offset_) error_offset_ = expr.offset;
  return result;
}

absl::Status Evaluator::EvalArgs(const Expr& expr, size_t first, Scope& scope, CallArgs* args) {
  for (size_t i = first; i < expr.children.size(); ++i) {
    absl::StatusOr<Value> value = Eval(*expr.children[i], scope);
    if (!value.ok()) return value.status();
    args->positional.push_back(*std::move(value));
  }
  for (const auto& [name, arg] : expr.keyword) {
    absl::StatusOr<Value> value = Eval(*arg, scope);
    if (!value.ok()) return value.status();
    args->keyword.emplace_back(name, *std::move(value));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Evaluator::EvalImpl(const Expr& expr, Scope& scope) {
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return expr.literal;
    case ExprKind::kName: {
      if (const Value* value = scope.Find(expr.name)) return *value;
      if (const Value* global = FindGlobal(expr.name)) return *global;
      return Value::Undefined(absl::StrCat("'", expr.name, "' is undefined"));
    }
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(expr.children.size());
      for (const ExprPtr& child : expr.children) {
        absl::StatusOr<Value> item = Eval(*child, scope);
        if (!item.ok()) return item;
        items.push_back(*std::move(item));
      }
      return Value::MakeList(std::move(items), expr.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      Value dict = Value::MakeDict();
      for (size_t i = 0; i + 1 < expr.children.size(); i += 2) {
        absl::StatusOr<Value> key = Eval(*expr.children[i], scope);
        if (!key.ok()) return key;
        absl::StatusOr<Value> value = Eval(*expr.children[i + 1], scope);
        if (!value.ok()) return value;
        if (key->is_list() || key->is_dict() || key->is_undefined()) {
          return absl::InvalidArgumentError(
              absl::StrCat("unhashable type: '", key->TypeName(), "'"));
        }
        dict.mutable_dict().Set(*std::move(key), *std::move(value));
      }
      return dict;
    }
    case ExprKind::kGetAttr: {
      absl::StatusOr<Value> object = Eval(*expr.children[0], scope);
      if (!object.ok()) return object;
      return GetAttr(*object, expr.name);
    }
    case ExprKind::kGetItem: {
      absl::StatusOr<Value> object = Eval(*expr.children[0], scope);
      if (!object.ok()) return object;
      absl::StatusOr<Value> key = Eval(*expr.children[1], scope);
      if (!key.ok()) return key;
      return GetItem(*object, *key);
    }
    case ExprKind::kSlice:
      return EvalSlice(expr, scope);
    case ExprKind::kCall: {
      absl::StatusOr<Value> callee = Eval(*expr.children[0], scope);
      if (!callee.ok()) return callee;
      CallArgs args;
      if (absl::Status status = EvalArgs(expr, 1, scope, &args); !status.ok()) return status;
      return Call(*callee, args);
    }
    case ExprKind::kFilter: {
      absl::StatusOr<Value> input = Eval(*expr.children[0], scope);
      if (!input.ok()) return input;
      CallArgs args;
      if (absl::Status status = EvalArgs(expr, 1, scope, &args); !status.ok()) return status;
      return Filter(expr.name, *std::move(input), args);
    }
    case ExprKind::kTest: {
      absl::StatusOr<Value> input = Eval(*expr.children[0], scope);
      if (!input.ok()) return input;
      CallArgs args;
      if (absl::Status status = EvalArgs(expr, 1, scope, &args); !status.ok()) return status;
      absl::StatusOr<bool> result = Test(expr.name, *input, args);
      if (!result.ok()) return result.status();
      return Value::Bool(*result != expr.negated);
    }
    case ExprKind::kUnary: {
      absl::StatusOr<Value> operand = Eval(*expr.children[0], scope);
      if (!operand.ok()) return operand;
      if (expr.name == "not") return Value::Bool(!operand->Truthy());
      return UnaryOp(expr.name, *operand);
    }
    case ExprKind::kBinary: {
      absl::StatusOr<Value> left = Eval(*expr.children[0], scope);
      if (!left.ok()) return left;
      // `and` and `or` short-circuit and give an operand, as in Python.
      if (expr.name == "and" && !left->Truthy()) return left;
      if (expr.name == "or" && left->Truthy()) return left;
      absl::StatusOr<Value> right = Eval(*expr.children[1], scope);
      if (!right.ok()) return right;
      if (expr.name == "and" || expr.name == "or") return right;
      absl::StatusOr<Value> result = BinaryOp(*this, expr.name, *left, *right);
      if (!result.ok()) return result;
      if (result->is_string()) {
        if (absl::Status status = CheckSize(result->string().size()); !status.ok()) return status;
      }
      return result;
    }
    case ExprKind::kCompare:
      return EvalCompare(expr, scope);
    case ExprKind::kConditional: {
      absl::StatusOr<Value> condition = Eval(*expr.children[0], scope);
      if (!condition.ok()) return condition;
      if (condition->Truthy()) return Eval(*expr.children[1], scope);
      if (expr.children[2] != nullptr) return Eval(*expr.children[2], scope);
      return Value::Undefined("the inline if-expression evaluated to false and has no else");
    }
  }
  return absl::InternalError("unknown expression kind");
}

absl::StatusOr<Value> Evaluator::EvalCompare(const Expr& expr, Scope& scope) {
  absl::StatusOr<Value> left = Eval(*expr.children[0], scope);
  if (!left.ok()) return left;
  for (size_t i = 0; i < expr.ops.size(); ++i) {
    absl::StatusOr<Value> right = Eval(*expr.children[i + 1], scope);
    if (!right.ok()) return right;
    const std::string& op = expr.ops[i];
    bool holds = false;
    if (op == "==" || op == "!=") {
      holds = Equal(*left, *right) == (op == "==");
    } else if (op == "in" || op == "not in") {
      absl::StatusOr<bool> contained = Contains(*right, *left);
      if (!contained.ok()) return contained.status();
      holds = *contained == (op == "in");
    } else {
      for (const Value* operand : {&*left, &*right}) {
        if (operand->is_undefined()) return absl::InvalidArgumentError(operand->undefined_hint());
      }
      absl::StatusOr<int> order = Compare(*left, *right, op);
      if (!order.ok()) return order.status();
      if (*order == 2) {
        holds = false;  // NaN.
      } else if (op == "<") {
        holds = *order < 0;
      } else if (op == "<=") {
        holds = *order <= 0;
      } else if (op == ">") {
        holds = *order > 0;
      } else {
        holds = *order >= 0;
      }
    }
    if (!holds) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> Evaluator::EvalSlice(const Expr& expr, Scope& scope) {
  absl::StatusOr<Value> object = Eval(*expr.children[0], scope);
  if (!object.ok()) return object;
  Value bounds[3] = {Value::None(), Value::None(), Value::None()};
  for (int i = 0; i < 3; ++i) {
    if (expr.children[i + 1] == nullptr) continue;
    absl::StatusOr<Value> bound = Eval(*expr.children[i + 1], scope);
    if (!bound.ok()) return bound;
    bounds[i] = *std::move(bound);
  }
  if (object->is_undefined()) return absl::InvalidArgumentError(object->undefined_hint());
  for (const Value& bound : bounds) {
    // Python refuses other index types; Jinja turns that TypeError into Undefined.
    if (!bound.is_none() && !bound.is_integral()) {
      return Value::Undefined("slice indices must be integers or None");
    }
  }
  const int64_t step = bounds[2].is_none() ? 1 : bounds[2].integer();
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  if (object->is_list()) {
    const auto& items = object->list().items;
    std::vector<Value> selected;
    for (int64_t i :
         SlicePositions(static_cast<int64_t>(items.size()), bounds[0], bounds[1], step)) {
      selected.push_back(items[i]);
    }
    return Value::MakeList(std::move(selected), object->is_tuple());
  }
  if (object->is_string()) {
    const std::vector<std::string_view> chars = Utf8Chars(object->string());
    std::string selected;
    for (int64_t i :
         SlicePositions(static_cast<int64_t>(chars.size()), bounds[0], bounds[1], step)) {
      selected += chars[i];
    }
    return Value::String(std::move(selected));
  }
  return Value::Undefined(absl::StrCat("'", object->TypeName(), "' object is not subscriptable"));
}

absl::StatusOr<Value> Evaluator::GetAttr(const Value& object, std::string_view name) {
  if (object.is_undefined()) return absl::InvalidArgumentError(object.undefined_hint());
  if (object.is_dict()) {
    if (!object.is_namespace()) {
      if (std::optional<Value> method = BoundMethod(object, name)) return *std::move(method);
    }
    if (const Value* value = object.dict().Find(name)) return *value;
    return MissingAttribute(object, name);
  }
  if (std::optional<Value> method = BoundMethod(object, name)) return *std::move(method);
  return MissingAttribute(object, name);
}

absl::StatusOr<Value> Evaluator::GetItem(const Value& object, const Value& key) {
  if (object.is_undefined()) return absl::InvalidArgumentError(object.undefined_hint());
  if (object.is_mapping()) {
    if (const Value* value = object.dict().Find(key)) return *value;
  } else if (object.is_list() || object.is_string()) {
    if (key.is_integral()) {
      std::vector<std::string_view> chars;
      int64_t length = 0;
      if (object.is_list()) {
        length = static_cast<int64_t>(object.list().items.size());
      } else {
        chars = Utf8Chars(object.string());
        length = static_cast<int64_t>(chars.size());
      }
      int64_t index = key.integer();
      if (index < 0) index += length;
      if (index >= 0 && index < length) {
        if (object.is_list()) return object.list().items[index];
        return Value::String(std::string(chars[index]));
      }
    }
  }
  // Jinja's getitem falls back to the attribute of that name (d['items'] is the method).
  if (key.is_string()) return GetAttr(object, key.string());
  return MissingItem(object, key);
}

absl::StatusOr<Value> Evaluator::Call(const Value& callee, CallArgs& args) {
  if (callee.is_function()) return callee.function().call(*this, args);
  if (callee.is_undefined()) return absl::InvalidArgumentError(callee.undefined_hint());
  return absl::InvalidArgumentError(
      absl::StrCat("'", callee.TypeName(), "' object is not callable"));
}

absl::StatusOr<Value> Evaluator::Filter(std::string_view name, Value input, CallArgs& args) {
  return CallFilter(*this, name, std::move(input), args);
}

absl::StatusOr<bool> Evaluator::Test(std::string_view name, const Value& input, CallArgs& args) {
  return CallTest(*this, name, input, args);
}

}  // namespace kvc::chat::internal
