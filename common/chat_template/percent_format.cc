// Python's printf-style string formatting: `"%s: %d" % (a, b)` and Jinja's `format` filter.
// Conversions s r a d i u f F e E g G x X o c %, flags - + space 0 #, width and precision
// (both may be *), and %(key)s with a mapping.
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/evaluator.h"

namespace kvc::chat::internal {
namespace {

absl::Status FormatError(std::string_view message) {
  return absl::InvalidArgumentError(AsAbsl(message));
}

// Pads `text` to `width` characters (code points), on the left unless `left_align`.
std::string Pad(std::string text, int64_t width, bool left_align) {
  const int64_t length = static_cast<int64_t>(Utf8Chars(text).size());
  if (width <= length) return text;
  const size_t padding = static_cast<size_t>(width - length);
  if (left_align) {
    text.append(padding, ' ');
  } else {
    text.insert(0, padding, ' ');
  }
  return text;
}

struct Spec {
  std::string flags;
  int64_t width = -1;
  int64_t precision = -1;
  char conversion = 's';
};

// A number conversion through snprintf with the same flags, width and precision.
std::string FormatNumber(const Spec& spec, char conversion, double real, long long integer,
                         bool is_integer) {
  std::string format(1, '%');
  format.append(spec.flags);
  if (spec.width >= 0) format.append(std::to_string(spec.width));
  if (spec.precision >= 0) {
    format.push_back('.');
    format.append(std::to_string(spec.precision));
  }
  if (is_integer) format.append("ll");
  format.push_back(conversion);
  char buffer[512];
  const int written = is_integer ? std::snprintf(buffer, sizeof(buffer), format.c_str(), integer)
                                 : std::snprintf(buffer, sizeof(buffer), format.c_str(), real);
  if (written < 0) return "";
  if (static_cast<size_t>(written) < sizeof(buffer)) return std::string(buffer, written);
  std::string large(static_cast<size_t>(written) + 1, '\0');
  if (is_integer) {
    std::snprintf(large.data(), large.size(), format.c_str(), integer);
  } else {
    std::snprintf(large.data(), large.size(), format.c_str(), real);
  }
  large.resize(static_cast<size_t>(written));
  return large;
}

absl::StatusOr<std::string> Convert(const Spec& spec, const Value& value) {
  const bool left_align = spec.flags.find('-') != std::string::npos;
  switch (spec.conversion) {
    case 's':
    case 'r':
    case 'a': {
      std::string text = spec.conversion == 's' ? ToStr(value) : Repr(value);
      if (spec.precision >= 0) {
        const std::vector<std::string_view> chars = Utf8Chars(text);
        if (static_cast<size_t>(spec.precision) < chars.size()) {
          std::string cut;
          for (int64_t i = 0; i < spec.precision; ++i) cut += chars[i];
          text = std::move(cut);
        }
      }
      return Pad(std::move(text), spec.width, left_align);
    }
    case 'c': {
      std::string text;
      if (value.is_string() && Utf8Chars(value.string()).size() == 1) {
        text = value.string();
      } else if (value.is_integral() && value.integer() >= 0 && value.integer() < 0x110000) {
        const uint32_t code = static_cast<uint32_t>(value.integer());
        // UTF-8 of one code point.
        if (code < 0x80) {
          text = std::string(1, static_cast<char>(code));
        } else if (code < 0x800) {
          text = {static_cast<char>(0xc0 | (code >> 6)), static_cast<char>(0x80 | (code & 0x3f))};
        } else if (code < 0x10000) {
          text = {static_cast<char>(0xe0 | (code >> 12)),
                  static_cast<char>(0x80 | ((code >> 6) & 0x3f)),
                  static_cast<char>(0x80 | (code & 0x3f))};
        } else {
          text = {static_cast<char>(0xf0 | (code >> 18)),
                  static_cast<char>(0x80 | ((code >> 12) & 0x3f)),
                  static_cast<char>(0x80 | ((code >> 6) & 0x3f)),
                  static_cast<char>(0x80 | (code & 0x3f))};
        }
      } else {
        return FormatError("%c requires an int or a single character");
      }
      return Pad(std::move(text), spec.width, left_align);
    }
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'X':
    case 'o': {
      const bool decimal =
          spec.conversion == 'd' || spec.conversion == 'i' || spec.conversion == 'u';
      if (!value.is_integral() && !(decimal && value.is_float())) {
        return FormatError(absl::StrCat("%", std::string(1, spec.conversion),
                                        " format: ", decimal ? "a real number" : "an integer",
                                        " is required, not ", value.TypeName()));
      }
      long long integer = 0;
      if (value.is_integral()) {
        integer = value.integer();
      } else {
        const double truncated = std::trunc(value.number());
        if (!std::isfinite(truncated) || std::fabs(truncated) >= 9.2e18) {
          return FormatError("cannot convert float to integer");
        }
        integer = static_cast<long long>(truncated);
      }
      std::string text = FormatNumber(spec, decimal ? 'd' : spec.conversion, 0, integer, true);
      // Python's alternate form of octal is 0o, not C's leading 0.
      if (spec.conversion == 'o' && spec.flags.find('#') != std::string::npos) {
        const size_t zero = text.find('0');
        if (zero != std::string::npos) {
          std::string prefixed = text.substr(0, zero + 1);
          prefixed.push_back('o');
          prefixed.append(text, zero + 1, std::string::npos);
          text = std::move(prefixed);
        }
      }
      return text;
    }
    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G': {
      if (!value.is_number()) {
        return FormatError(absl::StrCat("must be real number, not ", value.TypeName()));
      }
      return FormatNumber(spec, spec.conversion, value.number(), 0, false);
    }
    default:
      return FormatError(
          absl::StrCat("unsupported format character '", std::string(1, spec.conversion), "'"));
  }
}

}  // namespace

absl::StatusOr<std::string> PercentFormat(Evaluator& evaluator, const std::string& format,
                                          const Value& arguments) {
  // A tuple spreads over the conversions; anything else is one argument (or the mapping).
  std::vector<Value> positional;
  if (arguments.is_tuple()) {
    positional = arguments.list().items;
  } else {
    positional.push_back(arguments);
  }
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  for (size_t pos = 0; pos < format.size(); ++pos) {
    if (format[pos] != '%') {
      out += format[pos];
      continue;
    }
    if (++pos >= format.size()) return FormatError("incomplete format");
    if (format[pos] == '%') {
      out += '%';
      continue;
    }
    std::optional<Value> keyed;
    if (format[pos] == '(') {
      const size_t close = format.find(')', pos);
      if (close == std::string::npos) return FormatError("incomplete format key");
      if (!arguments.is_mapping()) return FormatError("format requires a mapping");
      const Value* found = arguments.dict().Find(format.substr(pos + 1, close - pos - 1));
      if (found == nullptr) {
        return FormatError(
            absl::StrCat("format key not found: ", format.substr(pos + 1, close - pos - 1)));
      }
      keyed = *found;
      used_mapping = true;
      pos = close + 1;
    }
    Spec spec;
    auto take_argument = [&]() -> absl::StatusOr<Value> {
      if (next >= positional.size()) return FormatError("not enough arguments for format string");
      return positional[next++];
    };
    auto read_number = [&](int64_t* number) -> absl::Status {
      if (pos < format.size() && format[pos] == '*') {
        absl::StatusOr<Value> star = take_argument();
        if (!star.ok()) return star.status();
        if (!star->is_integral()) return FormatError("* wants int");
        *number = star->integer();
        ++pos;
        return absl::OkStatus();
      }
      if (pos >= format.size() || format[pos] < '0' || format[pos] > '9') return absl::OkStatus();
      *number = 0;
      while (pos < format.size() && format[pos] >= '0' && format[pos] <= '9') {
        *number = *number * 10 + (format[pos++] - '0');
        if (*number > 100000) return FormatError("width or precision too big");
      }
      return absl::OkStatus();
    };
    while (pos < format.size() &&
           std::string_view("-+ 0#").find(format[pos]) != std::string_view::npos) {
      spec.flags += format[pos++];
    }
    if (absl::Status status = read_number(&spec.width); !status.ok()) return status;
    if (pos < format.size() && format[pos] == '.') {
      ++pos;
      spec.precision = 0;
      if (absl::Status status = read_number(&spec.precision); !status.ok()) return status;
    }
    while (pos < format.size() &&
           (format[pos] == 'l' || format[pos] == 'h' || format[pos] == 'L')) {
      ++pos;  // Length modifiers are accepted and ignored, as Python does.
    }
    if (pos >= format.size()) return FormatError("incomplete format");
    spec.conversion = format[pos];
    Value argument;
    if (keyed) {
      argument = *keyed;
    } else {
      absl::StatusOr<Value> taken = take_argument();
      if (!taken.ok()) return taken.status();
      argument = *std::move(taken);
    }
    absl::StatusOr<std::string> converted = Convert(spec, argument);
    if (!converted.ok()) return converted.status();
    out += *converted;
    if (absl::Status status = evaluator.CheckSize(out.size()); !status.ok()) return status;
  }
  if (!used_mapping && next < positional.size() && !arguments.is_mapping()) {
    return FormatError("not all arguments converted during string formatting");
  }
  return out;
}

}  // namespace kvc::chat::internal
