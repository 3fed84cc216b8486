#include "common/chat_template/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvc::chat::internal {

const Value* Dict::Find(const Value& key) const {
  for (const auto& [entry_key, entry_value] : entries) {
    if (Equal(entry_key, key)) return &entry_value;
  }
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [entry_key, entry_value] : entries) {
    if (entry_key.is_string() && entry_key.string() == key) return &entry_value;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (auto& [entry_key, entry_value] : entries) {
    if (Equal(entry_key, key)) {
      entry_value = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

Value Value::Undefined(std::string hint) { return Value(Kind::kUndefined, std::move(hint)); }
Value Value::None() { return Value(Kind::kNone, std::monostate()); }
Value Value::Bool(bool value) { return Value(Kind::kBool, bool{value}); }
Value Value::Int(int64_t value) { return Value(Kind::kInt, value); }
Value Value::Float(double value) { return Value(Kind::kFloat, value); }
Value Value::String(std::string value) { return Value(Kind::kString, std::move(value)); }

Value Value::MakeList(std::vector<Value> items, bool is_tuple) {
  auto list = std::make_shared<List>();
  list->items = std::move(items);
  list->is_tuple = is_tuple;
  return Value(Kind::kList, std::move(list));
}

Value Value::MakeDict(std::vector<std::pair<Value, Value>> entries) {
  auto dict = std::make_shared<Dict>();
  dict->entries = std::move(entries);
  return Value(Kind::kDict, std::move(dict));
}

Value Value::MakeNamespace() {
  auto dict = std::make_shared<Dict>();
  dict->is_namespace = true;
  return Value(Kind::kDict, std::move(dict));
}

Value Value::MakeFunction(std::string name, NativeFunction call) {
  return Value(Kind::kFunction,
               std::make_shared<const Function>(Function{std::move(name), std::move(call)}));
}

double Value::number() const {
  return is_float() ? std::get<double>(data_) : static_cast<double>(integer());
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return boolean();
    case Kind::kInt:
      return integer() != 0;
    case Kind::kFloat:
      return number() != 0.0;
    case Kind::kString:
      return !string().empty();
    case Kind::kList:
      return !list().items.empty();
    case Kind::kDict:
      return is_namespace() || !dict().entries.empty();
    case Kind::kFunction:
      return true;
  }
  return false;
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return is_tuple() ? "tuple" : "list";
    case Kind::kDict:
      return is_namespace() ? "Namespace" : "dict";
    case Kind::kFunction:
      return "function";
  }
  return "object";
}

bool Value::SameAs(const Value& other) const {
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kList:
      return &list() == &other.list();
    case Kind::kDict:
      return &dict() == &other.dict();
    case Kind::kFunction:
      return &function() == &other.function();
    default:
      return Equal(*this, other);
  }
}

bool Equal(const Value& left, const Value& right) {
  if (left.is_number() && right.is_number()) {
    if (left.is_integral() && right.is_integral()) return left.integer() == right.integer();
    return left.number() == right.number();
  }
  if (left.kind() != right.kind()) return false;
  switch (left.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return left.string() == right.string();
    case Value::Kind::kList: {
      const List& a = left.list();
      const List& b = right.list();
      if (a.is_tuple != b.is_tuple || a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i) {
        if (!Equal(a.items[i], b.items[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (left.is_namespace() || right.is_namespace()) return left.SameAs(right);
      const Dict& a = left.dict();
      const Dict& b = right.dict();
      if (a.entries.size() != b.entries.size()) return false;
      for (const auto& [key, value] : a.entries) {
        const Value* other = b.Find(key);
        if (other == nullptr || !Equal(value, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kFunction:
      return left.SameAs(right);
    default:
      return false;
  }
}

absl::StatusOr<int> Compare(const Value& left, const Value& right, std::string_view op) {
  if (left.is_number() && right.is_number()) {
    if (left.is_integral() && right.is_integral()) {
      return left.integer() < right.integer() ? -1 : (left.integer() > right.integer() ? 1 : 0);
    }
    const double a = left.number();
    const double b = right.number();
    // NaN compares false every way; 2 makes <, <=, >, >= all false in the caller.
    if (std::isnan(a) || std::isnan(b)) return 2;
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  if (left.is_string() && right.is_string()) {
    // Byte order of UTF-8 is code point order, as Python compares.
    const int order = left.string().compare(right.string());
    return order < 0 ? -1 : (order > 0 ? 1 : 0);
  }
  if (left.is_list() && right.is_list() && left.is_tuple() == right.is_tuple()) {
    const auto& a = left.list().items;
    const auto& b = right.list().items;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (Equal(a[i], b[i])) continue;
      return Compare(a[i], b[i], op);
    }
    return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", AsAbsl(op), "' not supported between instances of '", left.TypeName(),
                   "' and '", right.TypeName(), "'"));
}

std::string FormatFloat(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto result =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  const std::string_view text(buffer, result.ptr - buffer);
  // text is "[-]d[.ddd]e[+-]XX": split into sign, digits and the decimal exponent.
  const bool negative = text.front() == '-';
  const size_t e_pos = text.find('e');
  std::string digits;
  for (char c : text.substr(negative ? 1 : 0, e_pos - (negative ? 1 : 0))) {
    if (c != '.') digits += c;
  }
  int exponent = 0;
  std::from_chars(text.data() + e_pos + (text[e_pos + 1] == '+' ? 2 : 1), text.end(), exponent);
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out.append("0.");
      out.append(static_cast<size_t>(-exponent - 1), '0');
      out.append(digits);
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out.append(digits);
      out.append(static_cast<size_t>(exponent) + 1 - digits.size(), '0');
      out.append(".0");
    } else {
      out.append(digits, 0, static_cast<size_t>(exponent) + 1);
      out.push_back('.');
      out.append(digits, static_cast<size_t>(exponent) + 1);
    }
    return out;
  }
  out.push_back(digits[0]);
  if (digits.size() > 1) {
    out.push_back('.');
    out.append(digits, 1);
  }
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof(exponent_text), "e%c%02d", exponent < 0 ? '-' : '+',
                std::abs(exponent));
  return out + exponent_text;
}

namespace {

std::string ReprString(const std::string& text) {
  const bool has_single = text.find('\'') != std::string::npos;
  const bool has_double = text.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (std::string_view ch : Utf8Chars(text)) {
    const unsigned char first = static_cast<unsigned char>(ch.front());
    if (ch.size() == 1 && first < 0x80) {
      if (first == '\\') {
        out += "\\\\";
      } else if (first == static_cast<unsigned char>(quote)) {
        out += '\\';
        out += quote;
      } else if (first == '\n') {
        out += "\\n";
      } else if (first == '\r') {
        out += "\\r";
      } else if (first == '\t') {
        out += "\\t";
      } else if (first < 0x20 || first == 0x7f) {
        char escaped[8];
        std::snprintf(escaped, sizeof(escaped), "\\x%02x", first);
        out += escaped;
      } else {
        out += ch;
      }
    } else {
      // Non-ASCII characters print as themselves; Python escapes the non-printable ones
      // (C1 controls and a few others), which only the C1 range check approximates.
      const bool c1_control =
          ch.size() == 2 && first == 0xc2 && static_cast<unsigned char>(ch[1]) < 0xa0;
      if (c1_control) {
        char escaped[8];
        std::snprintf(escaped, sizeof(escaped), "\\x%02x", static_cast<unsigned char>(ch[1]));
        out += escaped;
      } else {
        out += ch;
      }
    }
  }
  out += quote;
  return out;
}

}  // namespace

std::string ToStr(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kString:
      return value.string();
    default:
      return Repr(value);
  }
}

std::string Repr(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return value.boolean() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(value.integer());
    case Value::Kind::kFloat:
      return FormatFloat(value.number());
    case Value::Kind::kString:
      return ReprString(value.string());
    case Value::Kind::kList: {
      const List& list = value.list();
      std::string out = list.is_tuple ? "(" : "[";
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i > 0) out += ", ";
        out += Repr(list.items[i]);
      }
      if (list.is_tuple && list.items.size() == 1) out += ",";
      out += list.is_tuple ? ")" : "]";
      return out;
    }
    case Value::Kind::kDict: {
      std::string out = value.is_namespace() ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [key, item] : value.dict().entries) {
        if (!first) out += ", ";
        first = false;
        out += Repr(key) + ": " + Repr(item);
      }
      out += value.is_namespace() ? "}>" : "}";
      return out;
    }
    case Value::Kind::kFunction:
      return "<function " + value.function().name + ">";
  }
  return "";
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kList:
      return value.list().items;
    case Value::Kind::kDict:
      if (!value.is_namespace()) {
        std::vector<Value> keys;
        keys.reserve(value.dict().entries.size());
        for (const auto& entry : value.dict().entries) keys.push_back(entry.first);
        return keys;
      }
      break;
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (std::string_view ch : Utf8Chars(value.string()))
        chars.push_back(Value::String(std::string(ch)));
      return chars;
    }
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", value.TypeName(), "' object is not iterable"));
}

absl::StatusOr<int64_t> Length(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(Utf8Chars(value.string()).size());
    case Value::Kind::kList:
      return static_cast<int64_t>(value.list().items.size());
    case Value::Kind::kDict:
      if (!value.is_namespace()) return static_cast<int64_t>(value.dict().entries.size());
      break;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("object of type '", value.TypeName(), "' has no len()"));
}

Value FromJson(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::Bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::Int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t number = json.get<uint64_t>();
      if (number > static_cast<uint64_t>(INT64_MAX))
        return Value::Float(static_cast<double>(number));
      return Value::Int(static_cast<int64_t>(number));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::Float(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::String(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(FromJson(item));
      return Value::MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<Value, Value>> entries;
      entries.reserve(json.size());
      for (const auto& [key, item] : json.items()) {
        entries.emplace_back(Value::String(key), FromJson(item));
      }
      return Value::MakeDict(std::move(entries));
    }
    default:  // binary, discarded: not produced by parsing JSON text.
      return Value::None();
  }
}

size_t Utf8CharLength(std::string_view text, size_t pos) {
  const unsigned char lead = static_cast<unsigned char>(text[pos]);
  size_t length = 1;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
  }
  if (pos + length > text.size()) return 1;
  for (size_t i = 1; i < length; ++i) {
    if ((static_cast<unsigned char>(text[pos + i]) & 0xc0) != 0x80) return 1;
  }
  return length;
}

size_t Utf8PreviousCharStart(std::string_view text, size_t end) {
  // A lead byte at most three continuation bytes back starts the last character if its
  // sequence ends exactly at `end`; otherwise the last byte stands alone.
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80) {
    --start;
  }
  if (start + Utf8CharLength(text, start) == end) return start;
  return end - 1;
}

std::vector<std::string_view> Utf8Chars(std::string_view text) {
  std::vector<std::string_view> chars;
  chars.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = Utf8CharLength(text, pos);
    chars.push_back(text.substr(pos, length));
    pos += length;
  }
  return chars;
}

}  // namespace kvc::chat::internal
