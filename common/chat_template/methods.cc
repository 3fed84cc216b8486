// The Python str and dict methods that chat templates call (content.startswith(...),
// message.get(...)), argument binding, and the string helpers the filters share.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"

namespace kvc::chat::internal {
namespace {

uint32_t DecodeChar(std::string_view ch) {
  const unsigned char lead = static_cast<unsigned char>(ch[0]);
  if (ch.size() == 1) return lead;
  uint32_t code = lead & (ch.size() == 2 ? 0x1f : ch.size() == 3 ? 0x0f : 0x07);
  for (size_t i = 1; i < ch.size(); ++i) code = (code << 6) | (ch[i] & 0x3f);
  return code;
}

absl::Status NeedsString(std::string_view function, const Value& value) {
  return absl::InvalidArgumentError(
      absl::StrCat(AsAbsl(function), ": expected a str argument, got ", value.TypeName()));
}

// Python's str.split / str.rsplit. `from_right` splits from the end (rsplit).
absl::StatusOr<Value> Split(const std::string& text, const Value& separator,
                            const Value& max_split_value, bool from_right) {
  int64_t max_split = -1;
  if (max_split_value.is_integral()) max_split = max_split_value.integer();
  std::vector<std::string> parts;
  if (separator.is_none() || separator.is_undefined()) {
    // Runs of whitespace separate; leading and trailing whitespace gives no empty parts.
    std::vector<std::string_view> chars = Utf8Chars(text);
    if (from_right) std::reverse(chars.begin(), chars.end());
    std::vector<std::string_view> current;
    size_t i = 0;
    auto flush = [&]() {
      if (from_right) std::reverse(current.begin(), current.end());
      std::string part;
      for (std::string_view ch : current) part += ch;
      parts.push_back(std::move(part));
      current.clear();
    };
    while (i < chars.size()) {
      while (i < chars.size() && IsPySpace(chars[i])) ++i;
      if (i == chars.size()) break;
      if (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split) {
        // The rest, stripped of whitespace on the splitting side only.
        current.assign(chars.begin() + i, chars.end());
        flush();
        break;
      }
      while (i < chars.size() && !IsPySpace(chars[i])) current.push_back(chars[i++]);
      flush();
    }
    if (from_right) std::reverse(parts.begin(), parts.end());
  } else {
    if (!separator.is_string()) return NeedsString("str.split", separator);
    const std::string& sep = separator.string();
    if (sep.empty()) return absl::InvalidArgumentError("empty separator");
    if (!from_right) {
      size_t start = 0;
      while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
        const size_t found = text.find(sep, start);
        if (found == std::string::npos) break;
        parts.push_back(text.substr(start, found - start));
        start = found + sep.size();
      }
      parts.push_back(text.substr(start));
    } else {
      size_t end = text.size();
      std::vector<std::string> reversed;
      while (max_split < 0 || static_cast<int64_t>(reversed.size()) < max_split) {
        if (end < sep.size()) break;
        const size_t found = text.rfind(sep, end - sep.size());
        if (found == std::string::npos) break;
        reversed.push_back(text.substr(found + sep.size(), end - found - sep.size()));
        end = found;
      }
      reversed.push_back(text.substr(0, end));
      parts.assign(reversed.rbegin(), reversed.rend());
    }
  }
  std::vector<Value> values;
  values.reserve(parts.size());
  for (std::string& part : parts) values.push_back(Value::String(std::move(part)));
  return Value::MakeList(std::move(values));
}

absl::StatusOr<bool> AffixMatch(const std::string& text, const Value& affix, bool prefix) {
  auto matches = [&](const std::string& candidate) {
    if (candidate.size() > text.size()) return false;
    return prefix ? text.compare(0, candidate.size(), candidate) == 0
                  : text.compare(text.size() - candidate.size(), candidate.size(), candidate) == 0;
  };
  if (affix.is_string()) return matches(affix.string());
  if (affix.is_tuple()) {
    for (const Value& item : affix.list().items) {
      if (!item.is_string()) return NeedsString(prefix ? "str.startswith" : "str.endswith", item);
      if (matches(item.string())) return true;
    }
    return false;
  }
  return absl::InvalidArgumentError(absl::StrCat(prefix ? "startswith" : "endswith",
                                                 " first arg must be str or a tuple of str, not ",
                                                 affix.TypeName()));
}

std::string Replace(const std::string& text, const std::string& old_text,
                    const std::string& new_text, int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts the replacement between characters (and at both ends).
    int64_t done = 0;
    for (std::string_view ch : Utf8Chars(text)) {
      if (count < 0 || done < count) {
        out += new_text;
        ++done;
      }
      out += ch;
    }
    if (count < 0 || done < count) out += new_text;
    return out;
  }
  size_t start = 0;
  for (int64_t done = 0; count < 0 || done < count; ++done) {
    const size_t found = text.find(old_text, start);
    if (found == std::string::npos) break;
    out.append(text, start, found - start);
    out += new_text;
    start = found + old_text.size();
  }
  out.append(text, start, std::string::npos);
  return out;
}

std::string Title(std::string_view text) {
  std::string out(text);
  bool previous_cased = false;
  for (char& c : out) {
    const bool upper = c >= 'A' && c <= 'Z';
    const bool lower = c >= 'a' && c <= 'z';
    if (upper || lower) {
      c = previous_cased ? AsciiLower(std::string_view(&c, 1))[0]
                         : AsciiUpper(std::string_view(&c, 1))[0];
      previous_cased = true;
    } else {
      previous_cased = false;
    }
  }
  return out;
}

int64_t CharIndex(const std::string& text, size_t byte_offset) {
  return static_cast<int64_t>(Utf8Chars(std::string_view(text).substr(0, byte_offset)).size());
}

// The method `name` of a str, or an error for an unknown one.
absl::StatusOr<Value> StringMethod(const std::string& text, std::string_view name,
                                   const CallArgs& args) {
  const std::string function = absl::StrCat("str.", AsAbsl(name));
  if (name == "startswith" || name == "endswith") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {"prefix"}, 1);
    if (!bound.ok()) return bound.status();
    absl::StatusOr<bool> result = AffixMatch(text, (*bound)[0], name == "startswith");
    if (!result.ok()) return result.status();
    return Value::Bool(*result);
  }
  if (name == "split" || name == "rsplit") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {"sep", "maxsplit"});
    if (!bound.ok()) return bound.status();
    return Split(text, (*bound)[0], (*bound)[1], name == "rsplit");
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {"chars"});
    if (!bound.ok()) return bound.status();
    std::optional<std::string> chars;
    if ((*bound)[0].is_string()) {
      chars = (*bound)[0].string();
    } else if (!(*bound)[0].is_none() && !(*bound)[0].is_undefined()) {
      return NeedsString(function, (*bound)[0]);
    }
    return Value::String(PyStrip(text, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "replace") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {"old", "new", "count"}, 2);
    if (!bound.ok()) return bound.status();
    if (!(*bound)[0].is_string()) return NeedsString(function, (*bound)[0]);
    if (!(*bound)[1].is_string()) return NeedsString(function, (*bound)[1]);
    const int64_t count = (*bound)[2].is_integral() ? (*bound)[2].integer() : -1;
    return Value::String(Replace(text, (*bound)[0].string(), (*bound)[1].string(), count));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {});
    if (!bound.ok()) return bound.status();
    if (name == "upper") return Value::String(AsciiUpper(text));
    if (name == "lower") return Value::String(AsciiLower(text));
    if (name == "title") return Value::String(Title(text));
    std::string out = AsciiLower(text);
    if (!out.empty()) out[0] = AsciiUpper(out.substr(0, 1))[0];
    return Value::String(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "count") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {"sub"}, 1);
    if (!bound.ok()) return bound.status();
    if (!(*bound)[0].is_string()) return NeedsString(function, (*bound)[0]);
    const std::string& sub = (*bound)[0].string();
    if (name == "count") {
      if (sub.empty()) return Value::Int(static_cast<int64_t>(Utf8Chars(text).size()) + 1);
      int64_t count = 0;
      for (size_t at = text.find(sub); at != std::string::npos;
           at = text.find(sub, at + sub.size())) {
        ++count;
      }
      return Value::Int(count);
    }
    const size_t found = name == "find" ? text.find(sub) : text.rfind(sub);
    return Value::Int(found == std::string::npos ? -1 : CharIndex(text, found));
  }
  if (name == "join") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {"iterable"}, 1);
    if (!bound.ok()) return bound.status();
    absl::StatusOr<std::vector<Value>> items = Iterate((*bound)[0]);
    if (!items.ok()) return items.status();
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) {
      if (!(*items)[i].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "sequence item ", i, ": expected str instance, ", (*items)[i].TypeName(), " found"));
      }
      if (i > 0) out += text;
      out += (*items)[i].string();
    }
    return Value::String(std::move(out));
  }
  if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
      name == "isupper" || name == "islower") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {});
    if (!bound.ok()) return bound.status();
    if (name == "isspace") {
      const auto chars = Utf8Chars(text);
      return Value::Bool(!chars.empty() && std::all_of(chars.begin(), chars.end(),
                                                       [](auto ch) { return IsPySpace(ch); }));
    }
    bool any_cased = false;
    for (char c : text) {
      const bool digit = c >= '0' && c <= '9';
      const bool upper = c >= 'A' && c <= 'Z';
      const bool lower = c >= 'a' && c <= 'z';
      any_cased = any_cased || upper || lower;
      if (name == "isdigit" && !digit) return Value::Bool(false);
      if (name == "isalpha" && !upper && !lower) return Value::Bool(false);
      if (name == "isalnum" && !digit && !upper && !lower) return Value::Bool(false);
      if (name == "isupper" && lower) return Value::Bool(false);
      if (name == "islower" && upper) return Value::Bool(false);
    }
    if (name == "isupper" || name == "islower") return Value::Bool(any_cased);
    return Value::Bool(!text.empty());
  }
  return absl::InternalError(absl::StrCat("no str method ", AsAbsl(name)));
}

absl::StatusOr<Value> DictMethod(const Value& dict, std::string_view name, const CallArgs& args) {
  const std::string function = absl::StrCat("dict.", AsAbsl(name));
  if (name == "get") {
    absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {"key", "default"}, 1);
    if (!bound.ok()) return bound.status();
    if (const Value* value = dict.dict().Find((*bound)[0])) return *value;
    return (*bound)[1].is_undefined() ? Value::None() : (*bound)[1];
  }
  absl::StatusOr<std::vector<Value>> bound = BindArgs(function, args, {});
  if (!bound.ok()) return bound.status();
  std::vector<Value> items;
  for (const auto& [key, value] : dict.dict().entries) {
    if (name == "items") {
      items.push_back(Value::MakeList({key, value}, /*is_tuple=*/true));
    } else {
      items.push_back(name == "keys" ? key : value);
    }
  }
  return Value::MakeList(std::move(items));
}

constexpr std::string_view kStringMethods[] = {
    "startswith", "endswith", "split",   "rsplit",     "strip",   "lstrip", "rstrip", "replace",
    "upper",      "lower",    "title",   "capitalize", "find",    "rfind",  "count",  "join",
    "isdigit",    "isalpha",  "isalnum", "isspace",    "isupper", "islower"};
constexpr std::string_view kDictMethods[] = {"items", "keys", "values", "get"};

}  // namespace

std::optional<Value> BoundMethod(const Value& object, std::string_view name) {
  if (object.is_string()) {
    for (std::string_view method : kStringMethods) {
      if (method != name) continue;
      return Value::MakeFunction(absl::StrCat("str.", AsAbsl(name)),
                                 [text = object.string(), method](Evaluator&, CallArgs& args) {
                                   return StringMethod(text, method, args);
                                 });
    }
  } else if (object.is_mapping()) {
    for (std::string_view method : kDictMethods) {
      if (method != name) continue;
      return Value::MakeFunction(absl::StrCat("dict.", AsAbsl(name)),
                                 [object, method](Evaluator&, CallArgs& args) {
                                   return DictMethod(object, method, args);
                                 });
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<Value>> BindArgs(std::string_view function, const CallArgs& args,
                                            std::initializer_list<std::string_view> params,
                                            size_t required) {
  std::vector<Value> bound(params.size());
  std::vector<bool> given(params.size(), false);
  if (args.positional.size() > params.size()) {
    return absl::InvalidArgumentError(absl::StrCat(AsAbsl(function), " takes at most ",
                                                   params.size(), " argument(s) (",
                                                   args.positional.size(), " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) {
    bound[i] = args.positional[i];
    given[i] = true;
  }
  for (const auto& [key, value] : args.keyword) {
    size_t index = 0;
    for (std::string_view param : params) {
      if (param == key) break;
      ++index;
    }
    if (index == params.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(function), " got an unexpected keyword argument '", key, "'"));
    }
    if (given[index]) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(function), " got multiple values for argument '", key, "'"));
    }
    bound[index] = value;
    given[index] = true;
  }
  for (size_t i = 0; i < required; ++i) {
    if (!given[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          AsAbsl(function), " missing required argument '", AsAbsl(*(params.begin() + i)), "'"));
    }
  }
  return bound;
}

bool IsPySpace(std::string_view utf8_char) {
  const uint32_t code = DecodeChar(utf8_char);
  if (utf8_char.size() == 1 && code >= 0x80) return false;  // A lone invalid byte.
  return (code >= 0x09 && code <= 0x0d) || (code >= 0x1c && code <= 0x20) || code == 0x85 ||
         code == 0xa0 || code == 0x1680 || (code >= 0x2000 && code <= 0x200a) || code == 0x2028 ||
         code == 0x2029 || code == 0x202f || code == 0x205f || code == 0x3000;
}

std::string PyStrip(std::string_view text, const std::optional<std::string>& chars, bool left,
                    bool right) {
  // Walks in from the ends, so that stripping a long message costs what it strips.
  std::vector<std::string_view> strip_set;
  if (chars) strip_set = Utf8Chars(*chars);
  auto strips = [&](std::string_view ch) {
    if (!chars) return IsPySpace(ch);
    return std::find(strip_set.begin(), strip_set.end(), ch) != strip_set.end();
  };
  size_t begin = 0;
  size_t end = text.size();
  while (left && begin < end) {
    const size_t length = Utf8CharLength(text, begin);
    if (!strips(text.substr(begin, length))) break;
    begin += length;
  }
  while (right && end > begin) {
    const size_t start = std::max(Utf8PreviousCharStart(text, end), begin);
    if (!strips(text.substr(start, end - start))) break;
    end = start;
  }
  return std::string(text.substr(begin, end - begin));
}

std::string AsciiUpper(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::optional<int64_t> ToInteger(const Value& value, int base) {
  if (value.is_integral()) return value.integer();
  if (value.is_float()) {
    const double number = value.number();
    if (!std::isfinite(number) || std::fabs(number) >= 9.2e18) return std::nullopt;
    return static_cast<int64_t>(number);
  }
  if (!value.is_string()) return std::nullopt;
  std::string text = PyStrip(value.string(), std::nullopt, true, true);
  std::erase(text, '_');
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long parsed = std::strtoll(text.c_str(), &end, base);
  if (errno == 0 && end == text.c_str() + text.size()) return parsed;
  return std::nullopt;
}

std::optional<double> ToFloat(const Value& value) {
  if (value.is_number()) return value.number();
  if (!value.is_string()) return std::nullopt;
  std::string text = PyStrip(value.string(), std::nullopt, true, true);
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double parsed = std::strtod(text.c_str(), &end);
  if (end == text.c_str() + text.size()) return parsed;
  return std::nullopt;
}

}  // namespace kvc::chat::internal
