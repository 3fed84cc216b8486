#include "common/chat_template/lexer.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/absl_view.h"

namespace kvc::chat::internal {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(uint32_t code, std::string* out) {
  if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;  // A lone surrogate cannot be encoded.
  if (code < 0x80) {
    *out += static_cast<char>(code);
  } else if (code < 0x800) {
    *out += static_cast<char>(0xc0 | (code >> 6));
    *out += static_cast<char>(0x80 | (code & 0x3f));
  } else if (code < 0x10000) {
    *out += static_cast<char>(0xe0 | (code >> 12));
    *out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (code & 0x3f));
  } else {
    *out += static_cast<char>(0xf0 | (code >> 18));
    *out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
    *out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
    *out += static_cast<char>(0x80 | (code & 0x3f));
  }
}

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& options)
      : source_(source), options_(options) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < source_.size()) {
      if (absl::Status status = LexDataAndTag(); !status.ok()) return status;
    }
    tokens_.push_back(Token{TokenKind::kEnd, "", 0, 0, source_.size()});
    return std::move(tokens_);
  }

 private:
  absl::Status Error(size_t offset, std::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "template syntax error at ", DescribeOffset(source_, offset), ": ", AsAbsl(message)));
  }

  bool At(size_t pos, std::string_view text) const {
    return source_.substr(pos, text.size()) == text;
  }

  size_t FindTagStart(size_t from) const {
    for (size_t pos = source_.find('{', from); pos != std::string_view::npos;
         pos = source_.find('{', pos + 1)) {
      if (pos + 1 < source_.size()) {
        const char next = source_[pos + 1];
        if (next == '{' || next == '%' || next == '#') return pos;
      }
    }
    return source_.size();
  }

  // Applies the opening tag's whitespace control to the text before it. `marker` is the
  // character after the tag's opening ('-', '+' or anything else).
  void StripBeforeTag(std::string* text, char tag_type, char marker) const {
    if (marker == '-') {
      size_t end = text->size();
      while (end > 0 && IsSpace((*text)[end - 1])) --end;
      text->resize(end);
      return;
    }
    if (marker == '+' || !options_.lstrip_blocks || tag_type == '{') return;
    // Only spaces between the start of the line and a block or comment tag go.
    const size_t line_start = text->rfind('\n') == std::string::npos ? 0 : text->rfind('\n') + 1;
    if (line_start == 0 && !line_starting_) return;
    if (line_start == text->size()) return;
    for (size_t i = line_start; i < text->size(); ++i) {
      if (!IsSpace((*text)[i])) return;
    }
    text->resize(line_start);
  }

  void EmitData(std::string text, size_t offset) {
    if (!text.empty()) tokens_.push_back(Token{TokenKind::kData, std::move(text), 0, 0, offset});
  }

  // After a closing delimiter at `pos` (just past it): '-' eats all following whitespace, a
  // block or comment end without '+' eats one newline when trim_blocks is on.
  void SkipAfterTag(char marker, bool is_block_or_comment) {
    if (marker == '-') {
      while (pos_ < source_.size() && IsSpace(source_[pos_])) ++pos_;
    } else if (marker != '+' && is_block_or_comment && options_.trim_blocks &&
               pos_ < source_.size() && source_[pos_] == '\n') {
      ++pos_;
    }
    line_starting_ = pos_ > 0 && source_[pos_ - 1] == '\n';
  }

  absl::Status LexDataAndTag() {
    const size_t tag = FindTagStart(pos_);
    std::string text(source_.substr(pos_, tag - pos_));
    if (tag == source_.size()) {
      EmitData(std::move(text), pos_);
      pos_ = tag;
      return absl::OkStatus();
    }
    const char tag_type = source_[tag + 1];
    const char marker = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
    StripBeforeTag(&text, tag_type, marker);
    EmitData(std::move(text), pos_);
    pos_ = tag + 2 + (marker == '-' || marker == '+' ? 1 : 0);
    if (tag_type == '#') return LexComment(tag);
    if (tag_type == '%' && LexRaw(tag)) return raw_status_;
    return LexTag(tag, tag_type);
  }

  absl::Status LexComment(size_t tag) {
    const size_t close = source_.find("#}", pos_);
    if (close == std::string_view::npos) return Error(tag, "missing end of comment tag");
    const char marker = close > pos_ ? source_[close - 1] : '\0';
    pos_ = close + 2;
    SkipAfterTag(marker, /*is_block_or_comment=*/true);
    return absl::OkStatus();
  }

  // Reads `{% raw %}...{% endraw %}` at `tag` if that is what is there; returns false (and
  // consumes nothing) otherwise. Errors land in raw_status_.
  bool LexRaw(size_t tag) {
    size_t pos = pos_;
    while (pos < source_.size() && IsSpace(source_[pos])) ++pos;
    if (!At(pos, "raw") || (pos + 3 < source_.size() && IsNameChar(source_[pos + 3]))) {
      return false;
    }
    pos += 3;
    while (pos < source_.size() && IsSpace(source_[pos])) ++pos;
    if (At(pos, "-%}")) {
      pos += 3;
      while (pos < source_.size() && IsSpace(source_[pos])) ++pos;
    } else if (At(pos, "%}")) {
      pos += 2;  // Jinja applies no trim_blocks after the opening raw tag.
    } else {
      return false;  // Not a raw tag after all: "raw" followed by more; LexTag reports it.
    }
    // Find `{%[-+]? \s* endraw \s* [-+]?%}`.
    for (size_t open = source_.find("{%", pos); open != std::string_view::npos;
         open = source_.find("{%", open + 1)) {
      size_t cursor = open + 2;
      const char marker = cursor < source_.size() ? source_[cursor] : '\0';
      if (marker == '-' || marker == '+') ++cursor;
      while (cursor < source_.size() && IsSpace(source_[cursor])) ++cursor;
      if (!At(cursor, "endraw")) continue;
      cursor += 6;
      while (cursor < source_.size() && IsSpace(source_[cursor])) ++cursor;
      char end_marker = '\0';
      if (cursor < source_.size() && (source_[cursor] == '-' || source_[cursor] == '+')) {
        end_marker = source_[cursor++];
      }
      if (!At(cursor, "%}")) continue;
      std::string text(source_.substr(pos, open - pos));
      line_starting_ = pos > 0 && source_[pos - 1] == '\n';
      StripBeforeTag(&text, '%', marker);
      EmitData(std::move(text), pos);
      pos_ = cursor + 2;
      SkipAfterTag(end_marker, /*is_block_or_comment=*/true);
      raw_status_ = absl::OkStatus();
      return true;
    }
    raw_status_ = Error(tag, "missing end of raw directive");
    return true;
  }

  absl::Status LexTag(size_t tag, char tag_type) {
    const bool is_block = tag_type == '%';
    tokens_.push_back(Token{is_block ? TokenKind::kBlockBegin : TokenKind::kVariableBegin,
                            is_block ? "{%" : "{{", 0, 0, tag});
    const std::string_view close = is_block ? "%}" : "}}";
    std::vector<char> brackets;  // Closing brackets expected, innermost last.
    while (true) {
      if (brackets.empty()) {
        char marker = '\0';
        size_t close_at = pos_;
        if (pos_ < source_.size() && (source_[pos_] == '-' || (is_block && source_[pos_] == '+'))) {
          marker = source_[pos_];
          close_at = pos_ + 1;
        }
        if (At(close_at, close)) {
          tokens_.push_back(Token{is_block ? TokenKind::kBlockEnd : TokenKind::kVariableEnd,
                                  std::string(close), 0, 0, pos_});
          pos_ = close_at + 2;
          SkipAfterTag(marker, is_block);
          return absl::OkStatus();
        }
      }
      if (pos_ >= source_.size()) {
        return Error(tag,
                     absl::StrCat("unexpected end of template, expected '", AsAbsl(close), "'"));
      }
      const char c = source_[pos_];
      if (IsSpace(c)) {
        ++pos_;
      } else if (IsDigit(c)) {
        if (absl::Status status = LexNumber(); !status.ok()) return status;
      } else if (IsNameStart(c)) {
        const size_t start = pos_;
        while (pos_ < source_.size() && IsNameChar(source_[pos_])) ++pos_;
        tokens_.push_back(
            Token{TokenKind::kName, std::string(source_.substr(start, pos_ - start)), 0, 0, start});
      } else if (c == '\'' || c == '"') {
        if (absl::Status status = LexString(); !status.ok()) return status;
      } else {
        if (absl::Status status = LexOperator(&brackets); !status.ok()) return status;
      }
    }
  }

  absl::Status LexOperator(std::vector<char>* brackets) {
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
    static constexpr std::string_view kOneChar = "+-/*%~[](){}><=.:|,;";
    const size_t start = pos_;
    std::string op;
    for (std::string_view candidate : kTwoChar) {
      if (At(pos_, candidate)) op = candidate;
    }
    if (op.empty()) {
      if (kOneChar.find(source_[pos_]) == std::string_view::npos) {
        return Error(pos_, absl::StrCat("unexpected char '", AsAbsl(source_.substr(pos_, 1)), "'"));
      }
      op.assign(1, source_[pos_]);
    }
    pos_ += op.size();
    if (op == "(" || op == "[" || op == "{") {
      brackets->push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
    } else if (op == ")" || op == "]" || op == "}") {
      if (brackets->empty()) return Error(start, absl::StrCat("unexpected '", op, "'"));
      if (brackets->back() != op[0]) {
        return Error(start, absl::StrCat("unexpected '", op, "', expected '",
                                         std::string(1, brackets->back()), "'"));
      }
      brackets->pop_back();
    }
    tokens_.push_back(Token{TokenKind::kOperator, std::move(op), 0, 0, start});
    return absl::OkStatus();
  }

  // Digits with optional '_' separators; returns them without the separators.
  std::string ScanDigits(bool (*is_digit)(char)) {
    std::string digits;
    while (pos_ < source_.size()) {
      if (is_digit(source_[pos_])) {
        digits += source_[pos_++];
      } else if (source_[pos_] == '_' && !digits.empty() && pos_ + 1 < source_.size() &&
                 is_digit(source_[pos_ + 1])) {
        ++pos_;
      } else {
        break;
      }
    }
    return digits;
  }

  absl::Status LexNumber() {
    const size_t start = pos_;
    const bool after_dot = !tokens_.empty() && tokens_.back().kind == TokenKind::kOperator &&
                           tokens_.back().text == ".";
    if (source_[pos_] == '0' && pos_ + 1 < source_.size()) {
      const char prefix = static_cast<char>(source_[pos_ + 1] | 0x20);
      const int base = prefix == 'x' ? 16 : prefix == 'o' ? 8 : prefix == 'b' ? 2 : 0;
      if (base != 0) {
        pos_ += 2;
        std::string digits;
        while (pos_ < source_.size() &&
               (source_[pos_] == '_' ||
                (HexValue(source_[pos_]) >= 0 && HexValue(source_[pos_]) < base))) {
          if (source_[pos_] != '_') digits += source_[pos_];
          ++pos_;
        }
        return PushInteger(digits, base, start);
      }
    }
    std::string text = ScanDigits(IsDigit);
    bool is_float = false;
    if (!after_dot && pos_ + 1 < source_.size() && source_[pos_] == '.' &&
        IsDigit(source_[pos_ + 1])) {
      ++pos_;
      text.push_back('.');
      text.append(ScanDigits(IsDigit));
      is_float = true;
    }
    if (!after_dot && pos_ < source_.size() && (source_[pos_] | 0x20) == 'e') {
      size_t exponent = pos_ + 1;
      if (exponent < source_.size() && (source_[exponent] == '+' || source_[exponent] == '-')) {
        ++exponent;
      }
      if (exponent < source_.size() && IsDigit(source_[exponent])) {
        text.push_back('e');
        text.append(source_.substr(pos_ + 1, exponent - pos_ - 1));
        pos_ = exponent;
        text += ScanDigits(IsDigit);
        is_float = true;
      }
    }
    if (!is_float) return PushInteger(text, 10, start);
    tokens_.push_back(Token{TokenKind::kFloat, text, 0, std::strtod(text.c_str(), nullptr), start});
    return absl::OkStatus();
  }

  absl::Status PushInteger(const std::string& digits, int base, size_t start) {
    if (digits.empty()) return Error(start, "invalid number");
    errno = 0;
    char* end = nullptr;
    const long long value = std::strtoll(digits.c_str(), &end, base);
    if (errno == ERANGE) return Error(start, "integer literal too large");
    tokens_.push_back(Token{TokenKind::kInteger, digits, value, 0, start});
    return absl::OkStatus();
  }

  absl::Status LexString() {
    const size_t start = pos_;
    const char quote = source_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= source_.size()) return Error(start, "unterminated string literal");
      const char c = source_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        value += c;
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= source_.size()) return Error(start, "unterminated string literal");
      if (absl::Status status = DecodeEscape(&value); !status.ok()) return status;
    }
    tokens_.push_back(Token{TokenKind::kString, std::move(value), 0, 0, start});
    return absl::OkStatus();
  }

  // Python's escapes, as Jinja decodes string literals ("unicode-escape"). At pos_ = backslash.
  absl::Status DecodeEscape(std::string* value) {
    const size_t start = pos_;
    const char c = source_[pos_ + 1];
    pos_ += 2;
    switch (c) {
      case '\n':
        return absl::OkStatus();  // Line continuation.
      case '\\':
      case '\'':
      case '"':
        *value += c;
        return absl::OkStatus();
      case 'a':
        *value += '\a';
        return absl::OkStatus();
      case 'b':
        *value += '\b';
        return absl::OkStatus();
      case 'f':
        *value += '\f';
        return absl::OkStatus();
      case 'n':
        *value += '\n';
        return absl::OkStatus();
      case 'r':
        *value += '\r';
        return absl::OkStatus();
      case 't':
        *value += '\t';
        return absl::OkStatus();
      case 'v':
        *value += '\v';
        return absl::OkStatus();
      case 'x':
      case 'u':
      case 'U': {
        const size_t width = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        uint32_t code = 0;
        for (size_t i = 0; i < width; ++i) {
          const int digit = pos_ + i < source_.size() ? HexValue(source_[pos_ + i]) : -1;
          if (digit < 0)
            return Error(start, absl::StrCat("truncated \\", std::string(1, c), " escape"));
          code = code * 16 + static_cast<uint32_t>(digit);
        }
        if (code > 0x10ffff) return Error(start, "illegal Unicode character in escape");
        pos_ += width;
        AppendUtf8(code, value);
        return absl::OkStatus();
      }
      case 'N':
        return Error(start, "\\N{...} escapes are not supported");
      default:
        break;
    }
    if (c >= '0' && c <= '7') {
      uint32_t code = static_cast<uint32_t>(c - '0');
      for (int i = 0;
           i < 2 && pos_ < source_.size() && source_[pos_] >= '0' && source_[pos_] <= '7'; ++i) {
        code = code * 8 + static_cast<uint32_t>(source_[pos_++] - '0');
      }
      AppendUtf8(code, value);
      return absl::OkStatus();
    }
    *value += '\\';
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte < 0x80) {
      *value += c;
      return absl::OkStatus();
    }
    // Jinja first turns non-ASCII text into \x.., \u.... escapes, so a backslash before such a
    // character leaves that escape's spelling (backslash-x-e-9 for "\é").
    --pos_;
    size_t length = 1;
    if (byte >= 0xc2 && byte <= 0xdf) length = 2;
    if (byte >= 0xe0 && byte <= 0xef) length = 3;
    if (byte >= 0xf0 && byte <= 0xf4) length = 4;
    uint32_t code = byte;
    if (length > 1 && pos_ + length <= source_.size()) {
      code = byte & (length == 2 ? 0x1f : length == 3 ? 0x0f : 0x07);
      for (size_t i = 1; i < length; ++i) code = (code << 6) | (source_[pos_ + i] & 0x3f);
    } else {
      length = 1;
    }
    pos_ += length;
    char spelled[16];
    if (code < 0x100) {
      std::snprintf(spelled, sizeof(spelled), "x%02x", code);
    } else if (code < 0x10000) {
      std::snprintf(spelled, sizeof(spelled), "u%04x", code);
    } else {
      std::snprintf(spelled, sizeof(spelled), "U%08x", code);
    }
    *value += spelled;
    return absl::OkStatus();
  }

  std::string_view source_;
  const LexerOptions& options_;
  size_t pos_ = 0;
  // Whether pos_ is at the start of a line as far as lstrip_blocks is concerned: the previous
  // tag's end swallowed a newline (or this is the start of the template).
  bool line_starting_ = true;
  absl::Status raw_status_;
  std::vector<Token> tokens_;
};

}  // namespace

std::string NormalizeSource(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view normalized_source,
                                            const LexerOptions& options) {
  return Lexer(normalized_source, options).Run();
}

std::string DescribeOffset(std::string_view source, size_t offset) {
  size_t line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return absl::StrCat("line ", line, ", column ", offset - line_start + 1);
}

}  // namespace kvc::chat::internal
