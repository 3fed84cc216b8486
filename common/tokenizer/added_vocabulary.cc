#include "common/tokenizer/added_vocabulary.h"

#include <algorithm>
#include <utility>

#include "common/tokenizer/unicode.h"

namespace kvc::tokenizer_internal {
namespace {

uint32_t PrefixKey(unsigned char first, unsigned int second) { return first << 9 | second; }

// Whitespace and word characters for lstrip/rstrip/single_word, judged on the character that
// ends at (before) or starts at (after) a position.
uint8_t ClassesAfter(std::string_view text, size_t pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  return CharAt(p + pos, p + text.size()).classes;
}

size_t CharStartBefore(std::string_view text, size_t pos) {
  size_t start = pos - 1;
  // Step back over continuation bytes, at most three, to the lead byte.
  for (int i = 0; i < 3 && start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80;
       ++i) {
    --start;
  }
  return start;
}

bool IsWordChar(std::string_view text, size_t pos) {
  if (text[pos] == '_') return true;
  return (ClassesAfter(text, pos) & (kLetter | kNumber)) != 0;
}

}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens) {
  for (AddedToken& token : tokens) {
    if (!token.content.empty()) tokens_.push_back(std::move(token));
  }
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    const std::string& content = tokens_[i].content;
    const auto first = static_cast<unsigned char>(content[0]);
    first_bytes_.set(first);
    const unsigned int second = content.size() > 1 ? static_cast<unsigned char>(content[1]) : 256;
    by_prefix_[PrefixKey(first, second)].push_back(i);
  }
  for (auto& [key, indices] : by_prefix_) {
    std::stable_sort(indices.begin(), indices.end(), [this](uint32_t a, uint32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

bool AddedVocabulary::FindNext(std::string_view text, size_t from, Match* match) const {
  if (tokens_.empty()) return false;
  for (size_t pos = from; pos < text.size(); ++pos) {
    const auto first = static_cast<unsigned char>(text[pos]);
    if (!first_bytes_.test(first)) continue;
    const AddedToken* found = nullptr;
    // Longest first: a two-byte-prefix bucket, then the one-byte tokens.
    const unsigned int seconds[2] = {
        pos + 1 < text.size() ? static_cast<unsigned char>(text[pos + 1]) : 256u, 256u};
    for (int k = 0; k < 2 && found == nullptr; ++k) {
      if (k == 1 && seconds[0] == 256) break;
      const auto bucket = by_prefix_.find(PrefixKey(first, seconds[k]));
      if (bucket == by_prefix_.end()) continue;
      for (uint32_t index : bucket->second) {
        const AddedToken& token = tokens_[index];
        if (text.compare(pos, token.content.size(), token.content) != 0) continue;
        const size_t end = pos + token.content.size();
        if (token.single_word && ((pos > 0 && IsWordChar(text, CharStartBefore(text, pos))) ||
                                  (end < text.size() && IsWordChar(text, end)))) {
          continue;
        }
        found = &token;
        break;
      }
    }
    if (found == nullptr) continue;
    size_t begin = pos;
    size_t end = pos + found->content.size();
    if (found->lstrip) {
      while (begin > from) {
        const size_t previous = CharStartBefore(text, begin);
        if ((ClassesAfter(text, previous) & kSpace) == 0) break;
        begin = previous;
      }
    }
    if (found->rstrip) {
      while (end < text.size()) {
        const auto* p = reinterpret_cast<const unsigned char*>(text.data());
        const CharInfo c = CharAt(p + end, p + text.size());
        if ((c.classes & kSpace) == 0) break;
        end += c.length;
      }
    }
    *match = {begin, end, found->id};
    return true;
  }
  return false;
}

}  // namespace kvc::tokenizer_internal
