// AddedVocabulary: the tokenizer.json "added_tokens" (special like <|begin_of_text|> and plain
// like <tool_call>), which are found in the raw text before normalization and BPE, and become
// their own id. Matching is leftmost-longest, as Hugging Face's Aho-Corasick matcher does:
// the earliest position where some token starts wins, and the longest token there.
// Hugging Face matches tokens marked "normalized": true in the normalized text instead; here
// every token is matched in the raw text, which differs only if normalization (NFC) changes the
// token's own text or creates one across its boundary: never for ASCII tokens like <|...|>.
//
// Thread safety: immutable after construction; all const methods may run concurrently.
#ifndef KVCLUSTER_COMMON_TOKENIZER_ADDED_VOCABULARY_H_
#define KVCLUSTER_COMMON_TOKENIZER_ADDED_VOCABULARY_H_

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace kvc::tokenizer_internal {

struct AddedToken {
  std::string content;
  uint32_t id = 0;
  bool special = false;
  // Hugging Face's options: the match also takes the whitespace on its left (lstrip) or right
  // (rstrip); single_word refuses a match glued to a letter, digit or '_' on either side.
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // Tokens with empty content are ignored (they can never match).
  explicit AddedVocabulary(std::vector<AddedToken> tokens);

  struct Match {
    size_t begin;  // the span of text the token replaces, whitespace from lstrip/rstrip
    size_t end;    // included
    uint32_t id;
  };

  // The first match in text[from, text.size()), or false when there is none.
  bool FindNext(std::string_view text, size_t from, Match* match) const;

  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  // Bytes that start some token: the scan skips everything else at one test per byte.
  std::bitset<256> first_bytes_;
  // First two bytes -> indices of the tokens that start with them, longest first. Tokens one
  // byte long are keyed by that byte alone, with the second byte 256.
  absl::flat_hash_map<uint32_t, std::vector<uint32_t>> by_prefix_;
};

}  // namespace kvc::tokenizer_internal

#endif  // KVCLUSTER_COMMON_TOKENIZER_ADDED_VOCABULARY_H_
