// Jinja's built-in filters on single values, with Hugging Face's tojson (Python's json.dumps, no
// HTML escaping), and the table of all filters.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/evaluator.h"
#include "common/chat_template/filter_functions.h"
#include "common/chat_template/json_dump.h"

namespace kvc::chat::internal {
namespace {

absl::StatusOr<Value> Abs(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("abs", args, {}); !bound.ok()) return bound.status();
  if (input.is_integral()) {
    if (input.integer() == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
    return Value::Int(std::llabs(input.integer()));
  }
  if (input.is_float()) return Value::Float(std::fabs(input.number()));
  return absl::InvalidArgumentError(
      absl::StrCat("bad operand type for abs(): '", input.TypeName(), "'"));
}

absl::StatusOr<Value> Attr(Evaluator&, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindFilterArgs("attr", args, {"name"}, 1);
  if (!bound.ok()) return bound.status();
  const std::string name = ToStr((*bound)[0]);
  if (input.is_undefined()) return absl::InvalidArgumentError(input.undefined_hint());
  // Attributes only, never items: a dict's keys are not its attributes.
  if (std::optional<Value> method = BoundMethod(input, name)) return *std::move(method);
  if (input.is_namespace()) {
    if (const Value* value = input.dict().Find(name)) return *value;
  }
  return Value::Undefined(
      absl::StrCat("'", input.TypeName(), " object' has no attribute '", name, "'"));
}

absl::StatusOr<Value> Capitalize(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("capitalize", args, {}); !bound.ok()) return bound.status();
  std::string text = AsciiLower(ToStr(input));
  if (!text.empty()) text[0] = AsciiUpper(text.substr(0, 1))[0];
  return Value::String(std::move(text));
}

absl::StatusOr<Value> Default(Evaluator&, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs("default", args, {"default_value", "boolean"});
  if (!bound.ok()) return bound.status();
  const bool use_default = input.is_undefined() || (FilterFlag((*bound)[1]) && !input.Truthy());
  if (!use_default) return input;
  return (*bound)[0].is_undefined() && args.positional.empty() ? Value::String("") : (*bound)[0];
}

absl::StatusOr<Value> Escape(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("escape", args, {}); !bound.ok()) return bound.status();
  std::string out;
  for (char c : ToStr(input)) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Float(Evaluator&, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindFilterArgs("float", args, {"default"});
  if (!bound.ok()) return bound.status();
  if (std::optional<double> number = ToFloat(input)) return Value::Float(*number);
  return (*bound)[0].is_undefined() ? Value::Float(0.0) : (*bound)[0];
}

absl::StatusOr<Value> Int(Evaluator&, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindFilterArgs("int", args, {"default", "base"});
  if (!bound.ok()) return bound.status();
  const int base = (*bound)[1].is_integral() ? static_cast<int>((*bound)[1].integer()) : 10;
  if (base != 0 && (base < 2 || base > 36)) {
    return absl::InvalidArgumentError("int() base must be >= 2 and <= 36, or 0");
  }
  if (std::optional<int64_t> number = ToInteger(input, base)) return Value::Int(*number);
  if (input.is_string()) {
    if (std::optional<double> number = ToFloat(input)) {
      if (std::optional<int64_t> truncated = ToInteger(Value::Float(*number))) {
        return Value::Int(*truncated);
      }
    }
  }
  return (*bound)[0].is_undefined() ? Value::Int(0) : (*bound)[0];
}

absl::StatusOr<Value> Format(Evaluator& evaluator, Value& input, CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    return absl::InvalidArgumentError(
        "filter 'format' takes positional or keyword arguments, not both");
  }
  Value arguments = Value::MakeList(args.positional, /*is_tuple=*/true);
  if (!args.keyword.empty()) {
    arguments = Value::MakeDict();
    for (const auto& [key, value] : args.keyword) {
      arguments.mutable_dict().Set(Value::String(key), value);
    }
  }
  absl::StatusOr<std::string> formatted = PercentFormat(evaluator, ToStr(input), arguments);
  if (!formatted.ok()) return formatted.status();
  return Value::String(*std::move(formatted));
}

absl::StatusOr<Value> Indent(Evaluator& evaluator, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs("indent", args, {"width", "first", "blank"});
  if (!bound.ok()) return bound.status();
  std::string indentation(4, ' ');
  if ((*bound)[0].is_string()) {
    indentation = (*bound)[0].string();
  } else if ((*bound)[0].is_integral()) {
    const int64_t width = (*bound)[0].integer();
    if (absl::Status status = evaluator.CheckSize(width < 0 ? 0 : width); !status.ok()) {
      return status;
    }
    indentation.assign(width < 0 ? 0 : width, ' ');
  }
  std::vector<std::string> lines;
  const std::string text = ToStr(input);
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '\n' || text[i] == '\r') {
      if (i == text.size() && start == i) break;
      lines.push_back(text.substr(start, i - start));
      if (i < text.size() && text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (lines.empty()) lines.push_back("");
  std::string out = lines[0];
  for (size_t i = 1; i < lines.size(); ++i) {
    out += "\n";
    if (FilterFlag((*bound)[2]) || !lines[i].empty()) out += indentation;
    out += lines[i];
  }
  if (FilterFlag((*bound)[1])) out = indentation + out;
  if (absl::Status status = evaluator.CheckSize(out.size()); !status.ok()) return status;
  return Value::String(std::move(out));
}

absl::StatusOr<Value> LengthFilter(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("length", args, {}); !bound.ok()) return bound.status();
  absl::StatusOr<int64_t> length = Length(input);
  if (!length.ok()) return length.status();
  return Value::Int(*length);
}

absl::StatusOr<Value> Lower(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("lower", args, {}); !bound.ok()) return bound.status();
  return Value::String(AsciiLower(ToStr(input)));
}

absl::StatusOr<Value> Upper(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("upper", args, {}); !bound.ok()) return bound.status();
  return Value::String(AsciiUpper(ToStr(input)));
}

absl::StatusOr<Value> ReplaceFilter(Evaluator& evaluator, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs("replace", args, {"old", "new", "count"}, 2);
  if (!bound.ok()) return bound.status();
  CallArgs call{{Value::String(ToStr((*bound)[0])), Value::String(ToStr((*bound)[1]))}, {}};
  if ((*bound)[2].is_integral()) call.positional.push_back((*bound)[2]);
  std::optional<Value> method = BoundMethod(Value::String(ToStr(input)), "replace");
  absl::StatusOr<Value> result = evaluator.Call(*method, call);
  if (!result.ok()) return result;
  if (absl::Status status = evaluator.CheckSize(result->string().size()); !status.ok()) {
    return status;
  }
  return result;
}

absl::StatusOr<Value> Round(Evaluator&, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindFilterArgs("round", args, {"precision", "method"});
  if (!bound.ok()) return bound.status();
  const int64_t precision = (*bound)[0].is_integral() ? (*bound)[0].integer() : 0;
  const std::string method = (*bound)[1].is_string() ? (*bound)[1].string() : "common";
  if (method != "common" && method != "floor" && method != "ceil") {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (!input.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("round: expected a number, got ", input.TypeName()));
  }
  if (method == "common") {
    if (input.is_integral() && precision >= 0) return Value::Int(input.integer());
    // Python's round(): correctly rounded, ties to even, which printf's %.*f also does.
    if (precision < 0 || precision > 300 || !std::isfinite(input.number())) {
      const double scale = std::pow(10.0, static_cast<double>(precision));
      return Value::Float(std::nearbyint(input.number() * scale) / scale);
    }
    char text[512];
    std::snprintf(text, sizeof(text), "%.*f", static_cast<int>(precision), input.number());
    return Value::Float(std::strtod(text, nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double scaled = input.number() * scale;
  return Value::Float((method == "floor" ? std::floor(scaled) : std::ceil(scaled)) / scale);
}

absl::StatusOr<Value> Safe(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("safe", args, {}); !bound.ok()) return bound.status();
  return input;
}

absl::StatusOr<Value> StringFilter(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("string", args, {}); !bound.ok()) return bound.status();
  return Value::String(ToStr(input));
}

absl::StatusOr<Value> Pprint(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("pprint", args, {}); !bound.ok()) return bound.status();
  return Value::String(Repr(input));
}

absl::StatusOr<Value> TitleFilter(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("title", args, {}); !bound.ok()) return bound.status();
  // Jinja capitalizes each word that follows a run of whitespace, '-', or an opening bracket.
  std::string out;
  bool word_start = true;
  for (char c : ToStr(input)) {
    const bool separator = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
                           c == '\v' || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (separator) {
      out += c;
      word_start = true;
      continue;
    }
    out += word_start ? AsciiUpper(std::string_view(&c, 1)) : AsciiLower(std::string_view(&c, 1));
    word_start = false;
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> ToJson(Evaluator& evaluator, Value& input, CallArgs& args) {
  // Hugging Face's signature: tojson(x, ensure_ascii=False, indent=None, separators=None,
  // sort_keys=False).
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  if (!bound.ok()) return bound.status();
  JsonDumpOptions options;
  options.ensure_ascii = FilterFlag((*bound)[0]);
  const Value& indent = (*bound)[1];
  if (indent.is_integral()) {
    const int64_t width = std::max<int64_t>(indent.integer(), 0);
    if (absl::Status status = evaluator.CheckSize(width); !status.ok()) return status;
    options.indent = std::string(width, ' ');
  } else if (indent.is_string()) {
    options.indent = indent.string();
  } else if (!indent.is_none() && !indent.is_undefined()) {
    return absl::InvalidArgumentError("tojson: indent must be an integer or a string");
  }
  const Value& separators = (*bound)[2];
  if (separators.is_list()) {
    if (separators.list().items.size() != 2 || !separators.list().items[0].is_string() ||
        !separators.list().items[1].is_string()) {
      return absl::InvalidArgumentError("tojson: separators must be a pair of strings");
    }
    options.item_separator = separators.list().items[0].string();
    options.key_separator = separators.list().items[1].string();
  }
  options.sort_keys = FilterFlag((*bound)[3]);
  absl::StatusOr<std::string> text = JsonDump(input, options);
  if (!text.ok()) return text.status();
  if (absl::Status status = evaluator.CheckSize(text->size()); !status.ok()) return status;
  return Value::String(*std::move(text));
}

absl::StatusOr<Value> Trim(Evaluator&, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindFilterArgs("trim", args, {"chars"});
  if (!bound.ok()) return bound.status();
  std::optional<std::string> chars;
  if ((*bound)[0].is_string()) chars = (*bound)[0].string();
  return Value::String(PyStrip(ToStr(input), chars, true, true));
}

absl::StatusOr<Value> WordCount(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("wordcount", args, {}); !bound.ok()) return bound.status();
  int64_t words = 0;
  bool in_word = false;
  for (char c : ToStr(input)) {
    const bool word_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '_' ||
                           static_cast<unsigned char>(c) >= 0x80;
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words);
}

constexpr std::pair<std::string_view, FilterFunction> kFilters[] = {
    {"abs", Abs},
    {"attr", Attr},
    {"capitalize", Capitalize},
    {"count", LengthFilter},
    {"d", Default},
    {"default", Default},
    {"dictsort", DictSort},
    {"e", Escape},
    {"escape", Escape},
    {"first", First},
    {"float", Float},
    {"forceescape", Escape},
    {"format", Format},
    {"indent", Indent},
    {"int", Int},
    {"items", ItemsFilter},
    {"join", Join},
    {"last", Last},
    {"length", LengthFilter},
    {"list", ListFilter},
    {"lower", Lower},
    {"map", Map},
    {"max", Max},
    {"min", Min},
    {"pprint", Pprint},
    {"reject", RejectFilter},
    {"rejectattr", RejectAttr},
    {"replace", ReplaceFilter},
    {"reverse", Reverse},
    {"round", Round},
    {"safe", Safe},
    {"select", SelectFilter},
    {"selectattr", SelectAttr},
    {"sort", Sort},
    {"string", StringFilter},
    {"sum", Sum},
    {"title", TitleFilter},
    {"tojson", ToJson},
    {"trim", Trim},
    {"unique", Unique},
    {"upper", Upper},
    {"wordcount", WordCount},
};

FilterFunction FindFilter(std::string_view name) {
  for (const auto& [filter_name, function] : kFilters) {
    if (filter_name == name) return function;
  }
  return nullptr;
}

}  // namespace

bool IsKnownFilter(std::string_view name) { return FindFilter(name) != nullptr; }

absl::StatusOr<Value> CallFilter(Evaluator& evaluator, std::string_view name, Value input,
                                 CallArgs& args) {
  FilterFunction function = FindFilter(name);
  if (function == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("no filter named '", AsAbsl(name), "'"));
  return function(evaluator, input, args);
}

}  // namespace kvc::chat::internal
