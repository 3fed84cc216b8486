// The Split pre-tokenizer patterns of the byte-level BPE tokenizers we support, each matched by
// hand-written code instead of a general regex engine: the patterns are fixed, so a direct
// matcher is several times faster and has no backtracking blow-up on long runs.
//
// A pattern is recognised by its exact string in tokenizer.json; any other pattern is refused
// (RecognizeSplitPattern), so a tokenizer is never silently split the wrong way.
//
// Semantics follow the leftmost-first alternation of the regex engines that Hugging Face uses,
// including backtracking into greedy quantifiers (`\s+(?!\S)` gives back its last character
// when a non-space follows). Ill-formed UTF-8 bytes count as characters of their own that are
// neither letters, numbers nor spaces. All functions are pure and thread-safe.
#ifndef KVCLUSTER_COMMON_TOKENIZER_PRETOKENIZER_H_
#define KVCLUSTER_COMMON_TOKENIZER_PRETOKENIZER_H_

#include <cstddef>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvc::tokenizer_internal {

enum class SplitPattern {
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // The same with \p{N} instead of \p{N}{1,3}: one digit per piece.
  kQwen2,
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ (the ByteLevel
  // pre-tokenizer's own pattern, used when its use_regex is true).
  kGpt2,
};

inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The pattern whose regex source is `regex`, or InvalidArgument naming the supported ones.
absl::StatusOr<SplitPattern> RecognizeSplitPattern(std::string_view regex);

// Length in bytes of the piece that starts at the beginning of `text`: the match of `pattern`
// there. Every one of these patterns matches any first character, so pieces tile the text.
// REQUIRES: !text.empty(). Returns a value in [1, text.size()].
size_t MatchPiece(SplitPattern pattern, std::string_view text);

// Calls on_piece(std::string_view) for each consecutive piece of `text`.
template <typename OnPiece>
void SplitIntoPieces(SplitPattern pattern, std::string_view text, OnPiece&& on_piece) {
  while (!text.empty()) {
    const size_t length = MatchPiece(pattern, text);
    on_piece(text.substr(0, length));
    text.remove_prefix(length);
  }
}

}  // namespace kvc::tokenizer_internal

#endif  // KVCLUSTER_COMMON_TOKENIZER_PRETOKENIZER_H_
