#include "common/tokenizer/pretokenizer.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/tokenizer/unicode.h"

namespace kvc::tokenizer_internal {
namespace {

using Byte = unsigned char;

inline bool IsOther(uint8_t classes) { return (classes & (kLetter | kNumber | kSpace)) == 0; }

inline Byte AsciiLower(Byte b) { return (b >= 'A' && b <= 'Z') ? b + ('a' - 'A') : b; }

// Length of the contraction ('s 't 're 've 'm 'll 'd) at p, or 0. REQUIRES: *p == '\''.
// Case-insensitive matching follows Unicode simple case folding, under which U+017F (long s)
// also matches 's'.
size_t MatchContraction(const Byte* p, const Byte* end, bool ignore_case) {
  if (end - p < 2) return 0;
  const Byte first = ignore_case ? AsciiLower(p[1]) : p[1];
  switch (first) {
    case 's':
    case 't':
    case 'm':
    case 'd':
      return 2;
    case 'r':
    case 'v':
      if (end - p >= 3 && (ignore_case ? AsciiLower(p[2]) : p[2]) == 'e') return 3;
      return 0;
    case 'l':
      if (end - p >= 3 && (ignore_case ? AsciiLower(p[2]) : p[2]) == 'l') return 3;
      return 0;
    case 0xC5:
      if (ignore_case && end - p >= 3 && p[2] == 0xBF) return 3;
      return 0;
    default:
      return 0;
  }
}

// Advances p over characters that have any of `classes`; returns the new position.
inline const Byte* SkipClass(const Byte* p, const Byte* end, uint8_t classes) {
  while (p < end) {
    const CharInfo c = CharAt(p, end);
    if ((c.classes & classes) == 0) break;
    p += c.length;
  }
  return p;
}

inline const Byte* SkipOther(const Byte* p, const Byte* end) {
  while (p < end) {
    const CharInfo c = CharAt(p, end);
    if (!IsOther(c.classes)) break;
    p += c.length;
  }
  return p;
}

// The whitespace alternatives shared by all patterns, tried in order at a space character:
//   \s*[\r\n]+  (only when with_newline_rule): up to the end of the run's last newline,
//   \s+(?!\S)   the run, less its last character when a non-space follows it,
//   \s+         the run.
size_t MatchWhitespace(const Byte* p, const Byte* end, bool with_newline_rule) {
  const Byte* last_newline_end = nullptr;
  const Byte* last_char = p;
  const Byte* q = p;
  int count = 0;
  while (q < end) {
    const CharInfo c = CharAt(q, end);
    if ((c.classes & kSpace) == 0) break;
    if (c.classes & kNewline) last_newline_end = q + c.length;
    last_char = q;
    q += c.length;
    ++count;
  }
  if (with_newline_rule && last_newline_end != nullptr) return last_newline_end - p;
  if (q == end || count == 1) return q - p;
  return last_char - p;
}

template <int kMaxDigits>
size_t MatchLlama3Style(const Byte* p, const Byte* end) {
  const CharInfo c0 = CharAt(p, end);
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (*p == '\'') {
    if (const size_t length = MatchContraction(p, end, /*ignore_case=*/true)) return length;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c0.classes & kLetter) return SkipClass(p + c0.length, end, kLetter) - p;
  if ((c0.classes & (kNewline | kNumber)) == 0 && p + c0.length < end) {
    const Byte* q = p + c0.length;
    const CharInfo c1 = CharAt(q, end);
    if (c1.classes & kLetter) return SkipClass(q + c1.length, end, kLetter) - p;
  }
  // \p{N}{1,kMaxDigits}
  if (c0.classes & kNumber) {
    const Byte* q = p + c0.length;
    for (int digits = 1; digits < kMaxDigits && q < end; ++digits) {
      const CharInfo c = CharAt(q, end);
      if ((c.classes & kNumber) == 0) break;
      q += c.length;
    }
    return q - p;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const Byte* others = *p == ' ' ? p + 1 : p;
  if (others < end && IsOther(CharAt(others, end).classes)) {
    const Byte* q = SkipOther(others, end);
    while (q < end && (*q == '\r' || *q == '\n')) ++q;
    return q - p;
  }
  // Here c0 is a space: an "other" character would have matched above.
  return MatchWhitespace(p, end, /*with_newline_rule=*/true);
}

size_t MatchGpt2(const Byte* p, const Byte* end) {
  if (*p == '\'') {
    if (const size_t length = MatchContraction(p, end, /*ignore_case=*/false)) return length;
  }
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' share the optional space.
  const Byte* q = *p == ' ' && p + 1 < end ? p + 1 : p;
  const CharInfo c = CharAt(q, end);
  if (c.classes & kLetter) return SkipClass(q + c.length, end, kLetter) - p;
  if (c.classes & kNumber) return SkipClass(q + c.length, end, kNumber) - p;
  if (IsOther(c.classes)) return SkipOther(q + c.length, end) - p;
  return MatchWhitespace(p, end, /*with_newline_rule=*/false);
}

}  // namespace

absl::StatusOr<SplitPattern> RecognizeSplitPattern(std::string_view regex) {
  if (regex == kLlama3Pattern) return SplitPattern::kLlama3;
  if (regex == kQwen2Pattern) return SplitPattern::kQwen2;
  if (regex == kGpt2Pattern) return SplitPattern::kGpt2;
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported Split pre-tokenizer regex '", std::string(regex),
      "': the supported patterns are those of Llama-3, Qwen2/Qwen3 and GPT-2 byte-level BPE"));
}

size_t MatchPiece(SplitPattern pattern, std::string_view text) {
  const auto* p = reinterpret_cast<const Byte*>(text.data());
  const auto* end = p + text.size();
  switch (pattern) {
    case SplitPattern::kLlama3:
      return MatchLlama3Style<3>(p, end);
    case SplitPattern::kQwen2:
      return MatchLlama3Style<1>(p, end);
    case SplitPattern::kGpt2:
      return MatchGpt2(p, end);
  }
  return text.size();
}

}  // namespace kvc::tokenizer_internal
