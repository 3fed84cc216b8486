#include "common/chat_template/json_dump.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvc::chat::internal {
namespace {

// Decodes one UTF-8 character (as split by Utf8Chars); a lone invalid byte decodes as U+FFFD.
uint32_t CodePoint(std::string_view ch) {
  const unsigned char lead = static_cast<unsigned char>(ch[0]);
  if (ch.size() == 1) return lead < 0x80 ? lead : 0xfffd;
  uint32_t code = lead & (ch.size() == 2 ? 0x1f : ch.size() == 3 ? 0x0f : 0x07);
  for (size_t i = 1; i < ch.size(); ++i) code = (code << 6) | (ch[i] & 0x3f);
  return code;
}

void AppendUnicodeEscape(uint32_t unit, std::string* out) {
  char escaped[16];
  std::snprintf(escaped, sizeof(escaped), "\\u%04x", unit);
  *out += escaped;
}

void AppendString(const std::string& text, bool ensure_ascii, std::string* out) {
  *out += '"';
  for (std::string_view ch : Utf8Chars(text)) {
    const unsigned char first = static_cast<unsigned char>(ch[0]);
    if (ch.size() == 1 && first < 0x80) {
      switch (first) {
        case '"':
          *out += "\\\"";
          continue;
        case '\\':
          *out += "\\\\";
          continue;
        case '\n':
          *out += "\\n";
          continue;
        case '\r':
          *out += "\\r";
          continue;
        case '\t':
          *out += "\\t";
          continue;
        case '\b':
          *out += "\\b";
          continue;
        case '\f':
          *out += "\\f";
          continue;
        default:
          break;
      }
      if (first < 0x20 || (ensure_ascii && first == 0x7f)) {
        AppendUnicodeEscape(first, out);
      } else {
        *out += ch;
      }
      continue;
    }
    if (!ensure_ascii) {
      *out += ch;
      continue;
    }
    const uint32_t code = CodePoint(ch);
    if (code >= 0x10000) {
      const uint32_t offset = code - 0x10000;
      AppendUnicodeEscape(0xd800 + (offset >> 10), out);
      AppendUnicodeEscape(0xdc00 + (offset & 0x3ff), out);
    } else {
      AppendUnicodeEscape(code, out);
    }
  }
  *out += '"';
}

absl::StatusOr<std::string> KeyText(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kString:
      return key.string();
    case Value::Kind::kBool:
      return std::string(key.boolean() ? "true" : "false");
    case Value::Kind::kNone:
      return std::string("null");
    case Value::Kind::kInt:
      return std::to_string(key.integer());
    case Value::Kind::kFloat:
      return FormatFloat(key.number());
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("keys must be str, int, float, bool or None, not ", key.TypeName()));
  }
}

class Writer {
 public:
  explicit Writer(const JsonDumpOptions& options)
      : options_(options),
        item_separator_(options.item_separator.value_or(options.indent ? "," : ", ")),
        key_separator_(options.key_separator.value_or(": ")) {}

  absl::Status Write(const Value& value, int depth, std::string* out) {
    // Deeper than any real document; a cycle is impossible (values are immutable trees, and
    // namespaces are refused below), so this only bounds the recursion.
    if (depth > 512) return absl::InvalidArgumentError("tojson: value nested too deeply");
    switch (value.kind()) {
      case Value::Kind::kNone:
        *out += "null";
        return absl::OkStatus();
      case Value::Kind::kBool:
        *out += value.boolean() ? "true" : "false";
        return absl::OkStatus();
      case Value::Kind::kInt:
        *out += std::to_string(value.integer());
        return absl::OkStatus();
      case Value::Kind::kFloat: {
        const double number = value.number();
        if (std::isnan(number)) {
          *out += "NaN";
        } else if (std::isinf(number)) {
          *out += number > 0 ? "Infinity" : "-Infinity";
        } else {
          *out += FormatFloat(number);
        }
        return absl::OkStatus();
      }
      case Value::Kind::kString:
        AppendString(value.string(), options_.ensure_ascii, out);
        return absl::OkStatus();
      case Value::Kind::kList:
        return WriteList(value.list().items, depth, out);
      case Value::Kind::kDict:
        if (!value.is_namespace()) return WriteDict(value.dict(), depth, out);
        break;
      default:
        break;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("Object of type ", value.TypeName(), " is not JSON serializable"));
  }

 private:
  void NewLine(int depth, std::string* out) const {
    *out += '\n';
    for (int i = 0; i < depth; ++i) *out += *options_.indent;
  }

  absl::Status WriteList(const std::vector<Value>& items, int depth, std::string* out) {
    if (items.empty()) {
      *out += "[]";
      return absl::OkStatus();
    }
    *out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) *out += item_separator_;
      if (options_.indent) NewLine(depth + 1, out);
      if (absl::Status status = Write(items[i], depth + 1, out); !status.ok()) return status;
    }
    if (options_.indent) NewLine(depth, out);
    *out += ']';
    return absl::OkStatus();
  }

  absl::Status WriteDict(const Dict& dict, int depth, std::string* out) {
    if (dict.entries.empty()) {
      *out += "{}";
      return absl::OkStatus();
    }
    std::vector<std::pair<std::string, const Value*>> entries;
    for (const auto& [key, item] : dict.entries) {
      absl::StatusOr<std::string> text = KeyText(key);
      if (!text.ok()) return text.status();
      entries.emplace_back(*std::move(text), &item);
    }
    if (options_.sort_keys) {
      // Python sorts the original keys; keys of one type (the only case it accepts) sort the
      // same way by their text, except numbers, which sort by value.
      const bool numeric = std::all_of(dict.entries.begin(), dict.entries.end(),
                                       [](const auto& entry) { return entry.first.is_number(); });
      const bool strings = std::all_of(dict.entries.begin(), dict.entries.end(),
                                       [](const auto& entry) { return entry.first.is_string(); });
      if (!numeric && !strings) {
        return absl::InvalidArgumentError("tojson: sort_keys needs keys of one type");
      }
      std::vector<size_t> order(entries.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (numeric) return dict.entries[a].first.number() < dict.entries[b].first.number();
        return entries[a].first < entries[b].first;
      });
      std::vector<std::pair<std::string, const Value*>> sorted;
      for (size_t index : order) sorted.push_back(entries[index]);
      entries = std::move(sorted);
    }
    *out += '{';
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i > 0) *out += item_separator_;
      if (options_.indent) NewLine(depth + 1, out);
      AppendString(entries[i].first, options_.ensure_ascii, out);
      *out += key_separator_;
      if (absl::Status status = Write(*entries[i].second, depth + 1, out); !status.ok()) {
        return status;
      }
    }
    if (options_.indent) NewLine(depth, out);
    *out += '}';
    return absl::OkStatus();
  }

  const JsonDumpOptions& options_;
  const std::string item_separator_;
  const std::string key_separator_;
};

}  // namespace

absl::StatusOr<std::string> JsonDump(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  Writer writer(options);
  if (absl::Status status = writer.Write(value, 0, &out); !status.ok()) return status;
  return out;
}

}  // namespace kvc::chat::internal
