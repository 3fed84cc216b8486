// Arithmetic, concatenation and membership with Python's semantics. Python's integers are
// unbounded; here they are 64-bit and overflow is an error rather than a wrong number.
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/evaluator.h"

namespace kvc::chat::internal {
namespace {

absl::Status Unsupported(std::string_view op, const Value& left, const Value& right) {
  if (op == "+" && left.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("can only concatenate str (not \"", right.TypeName(), "\") to str"));
  }
  if (op == "+" && left.is_list() && right.is_list()) {
    return absl::InvalidArgumentError(absl::StrCat("can only concatenate ", left.TypeName(),
                                                   " (not \"", right.TypeName(), "\") to ",
                                                   left.TypeName()));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ", AsAbsl(op),
                                                 ": '", left.TypeName(), "' and '",
                                                 right.TypeName(), "'"));
}

absl::Status Overflow() {
  return absl::InvalidArgumentError("integer result out of the 64-bit range");
}

absl::StatusOr<Value> IntegerOp(std::string_view op, int64_t a, int64_t b) {
  int64_t result = 0;
  if (op == "+") {
    if (__builtin_add_overflow(a, b, &result)) return Overflow();
  } else if (op == "-") {
    if (__builtin_sub_overflow(a, b, &result)) return Overflow();
  } else if (op == "*") {
    if (__builtin_mul_overflow(a, b, &result)) return Overflow();
  } else if (op == "/") {
    if (b == 0) return absl::InvalidArgumentError("division by zero");
    return Value::Float(static_cast<double>(a) / static_cast<double>(b));
  } else if (op == "//" || op == "%") {
    if (b == 0) {
      return absl::InvalidArgumentError(op == "//" ? "integer division or modulo by zero"
                                                   : "integer modulo by zero");
    }
    if (a == INT64_MIN && b == -1) {
      if (op == "%") return Value::Int(0);
      return Overflow();
    }
    int64_t quotient = a / b;
    int64_t remainder = a % b;
    if (remainder != 0 && ((remainder < 0) != (b < 0))) {
      --quotient;
      remainder += b;
    }
    result = op == "//" ? quotient : remainder;
  } else if (op == "**") {
    if (b < 0) return Value::Float(std::pow(static_cast<double>(a), static_cast<double>(b)));
    result = 1;
    int64_t base = a;
    for (int64_t exponent = b; exponent > 0; exponent >>= 1) {
      if ((exponent & 1) && __builtin_mul_overflow(result, base, &result)) return Overflow();
      if (exponent > 1 && __builtin_mul_overflow(base, base, &base)) return Overflow();
    }
  }
  return Value::Int(result);
}

absl::StatusOr<Value> FloatOp(std::string_view op, double a, double b) {
  if (op == "+") return Value::Float(a + b);
  if (op == "-") return Value::Float(a - b);
  if (op == "*") return Value::Float(a * b);
  if (op == "/") {
    if (b == 0) return absl::InvalidArgumentError("float division by zero");
    return Value::Float(a / b);
  }
  if (op == "//") {
    if (b == 0) return absl::InvalidArgumentError("float floor division by zero");
    return Value::Float(std::floor(a / b));
  }
  if (op == "%") {
    if (b == 0) return absl::InvalidArgumentError("float modulo by zero");
    double remainder = std::fmod(a, b);
    if (remainder != 0 && ((remainder < 0) != (b < 0))) remainder += b;
    if (remainder == 0) remainder = std::copysign(0.0, b);
    return Value::Float(remainder);
  }
  if (a == 0 && b < 0) {
    return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
  }
  return Value::Float(std::pow(a, b));
}

absl::StatusOr<Value> Repeat(Evaluator& evaluator, const Value& sequence, int64_t times) {
  if (times <= 0) {
    return sequence.is_string() ? Value::String("") : Value::MakeList({}, sequence.list().is_tuple);
  }
  const size_t unit = sequence.is_string() ? sequence.string().size()
                                           : sequence.list().items.size() * sizeof(Value);
  size_t total = 0;
  if (__builtin_mul_overflow(unit, static_cast<size_t>(times), &total)) total = SIZE_MAX;
  if (absl::Status status = evaluator.CheckSize(total); !status.ok()) return status;
  if (sequence.is_string()) {
    std::string out;
    out.reserve(sequence.string().size() * times);
    for (int64_t i = 0; i < times; ++i) out += sequence.string();
    return Value::String(std::move(out));
  }
  std::vector<Value> items;
  for (int64_t i = 0; i < times; ++i) {
    items.insert(items.end(), sequence.list().items.begin(), sequence.list().items.end());
  }
  return Value::MakeList(std::move(items), sequence.list().is_tuple);
}

}  // namespace

absl::StatusOr<Value> BinaryOp(Evaluator& evaluator, std::string_view op, const Value& left,
                               const Value& right) {
  if (op == "~") return Value::String(ToStr(left) + ToStr(right));
  for (const Value* operand : {&left, &right}) {
    if (operand->is_undefined()) return absl::InvalidArgumentError(operand->undefined_hint());
  }
  if (left.is_number() && right.is_number()) {
    if (left.is_integral() && right.is_integral()) {
      return IntegerOp(op, left.integer(), right.integer());
    }
    return FloatOp(op, left.number(), right.number());
  }
  if (op == "+") {
    if (left.is_string() && right.is_string()) return Value::String(left.string() + right.string());
    if (left.is_list() && right.is_list() && left.is_tuple() == right.is_tuple()) {
      std::vector<Value> items = left.list().items;
      items.insert(items.end(), right.list().items.begin(), right.list().items.end());
      return Value::MakeList(std::move(items), left.is_tuple());
    }
  }
  if (op == "*") {
    if ((left.is_string() || left.is_list()) && right.is_integral()) {
      return Repeat(evaluator, left, right.integer());
    }
    if (left.is_integral() && (right.is_string() || right.is_list())) {
      return Repeat(evaluator, right, left.integer());
    }
  }
  if (op == "%" && left.is_string()) {
    absl::StatusOr<std::string> formatted = PercentFormat(evaluator, left.string(), right);
    if (!formatted.ok()) return formatted.status();
    return Value::String(*std::move(formatted));
  }
  return Unsupported(op, left, right);
}

absl::StatusOr<Value> UnaryOp(std::string_view op, const Value& operand) {
  if (operand.is_undefined()) return absl::InvalidArgumentError(operand.undefined_hint());
  if (operand.is_integral()) {
    if (op == "+") return Value::Int(operand.integer());
    if (operand.integer() == INT64_MIN) return Overflow();
    return Value::Int(-operand.integer());
  }
  if (operand.is_float()) return Value::Float(op == "-" ? -operand.number() : operand.number());
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for unary ", AsAbsl(op), ": '", operand.TypeName(), "'"));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("'in <string>' requires string as left operand, not ", item.TypeName()));
      }
      return container.string().find(item.string()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& element : container.list().items) {
        if (Equal(element, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      if (container.is_namespace()) break;
      return container.dict().Find(item) != nullptr;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("argument of type '", container.TypeName(), "' is not iterable"));
}

}  // namespace kvc::chat::internal
