#include "tools/kvc-make-model/tiny_tokenizer.h"

#include <map>
#include <set>
#include <utility>
#include <vector>

#include "common/check.h"
#include "nlohmann/json.hpp"

namespace kvc::make_model {
namespace {

using ordered_json = nlohmann::ordered_json;

// Text the merges are learned from; any English prose does.
constexpr char kCorpus[] =
    "The cluster keeps a prefix index of the cache blocks that every worker holds, and it "
    "sends each request to the worker that is most likely to hold the start of the prompt "
    "already. When the worker has the blocks in memory, the prompt does not need to be "
    "computed again, and the first token comes back sooner. The router learns about the "
    "blocks from the events that the workers send: a block is stored when it becomes full, "
    "and it is removed when the worker needs the memory for another request. This is the "
    "reason the index stays exact while the workers are running. A model is loaded from a "
    "directory with its configuration, its tokenizer and its weights; the weights are mapped "
    "into memory and shared between the threads of the worker. There are many ways to write "
    "the same thing, and the tokenizer should learn the most common of them: the, and, that, "
    "with, from, this, there, when, where, which, while, these, those, other, another, into, "
    "about, before, after, again, always, never, every, each, some, many, most, more, less. "
    "Numbers such as 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64, 128, 256, 512 and 1024 "
    "appear in text too, as do questions? Yes! Punctuation, (brackets) and \"quotes\".";

// The bytes GPT-2 maps to themselves, in its order: they come first, then the rest.
std::vector<int> ByteOrder() {
  std::vector<int> order;
  std::vector<bool> printable(256, false);
  for (int b = '!'; b <= '~'; ++b) printable[size_t(b)] = true;
  for (int b = 0xa1; b <= 0xac; ++b) printable[size_t(b)] = true;
  for (int b = 0xae; b <= 0xff; ++b) printable[size_t(b)] = true;
  for (int b = 0; b < 256; ++b) {
    if (printable[size_t(b)]) order.push_back(b);
  }
  for (int b = 0; b < 256; ++b) {
    if (!printable[size_t(b)]) order.push_back(b);
  }
  return order;
}

std::string CodePointToUtf8(uint32_t code_point) {
  std::string out;
  if (code_point < 0x80) {
    out += char(code_point);
  } else if (code_point < 0x800) {
    out += char(0xc0 | (code_point >> 6));
    out += char(0x80 | (code_point & 0x3f));
  } else {
    out += char(0xe0 | (code_point >> 12));
    out += char(0x80 | ((code_point >> 6) & 0x3f));
    out += char(0x80 | (code_point & 0x3f));
  }
  return out;
}

// Words as GPT-2's pre-tokenizer roughly cuts them: an optional leading space plus a run of
// letters, a run of digits, or one other character.
std::map<std::vector<std::string>, int> CorpusWords() {
  std::map<std::vector<std::string>, int> words;
  const std::string text = kCorpus;
  auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  size_t at = 0;
  while (at < text.size()) {
    size_t end = at;
    if (text[end] == ' ' && end + 1 < text.size() && text[end + 1] != ' ') ++end;
    if (is_letter(text[end])) {
      while (end < text.size() && is_letter(text[end])) ++end;
    } else if (is_digit(text[end])) {
      while (end < text.size() && is_digit(text[end])) ++end;
    } else {
      ++end;
    }
    std::vector<std::string> symbols;
    for (size_t i = at; i < end; ++i) symbols.push_back(ByteToUnicode((unsigned char)text[i]));
    ++words[symbols];
    at = end;
  }
  return words;
}

// BPE training: repeatedly merge the most frequent adjacent pair (ties: smallest pair).
std::vector<std::pair<std::string, std::string>> LearnMerges(size_t wanted) {
  std::map<std::vector<std::string>, int> words = CorpusWords();
  std::vector<std::pair<std::string, std::string>> merges;
  while (merges.size() < wanted) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const auto& [symbols, count] : words) {
      for (size_t i = 0; i + 1 < symbols.size(); ++i) counts[{symbols[i], symbols[i + 1]}] += count;
    }
    const std::pair<std::string, std::string>* best = nullptr;
    int best_count = 1;  // a pair seen once is not worth a token
    for (const auto& [pair, count] : counts) {
      if (count > best_count) {
        best = &pair;
        best_count = count;
      }
    }
    if (best == nullptr) break;
    const auto merge = *best;
    merges.push_back(merge);
    std::map<std::vector<std::string>, int> merged;
    for (const auto& [symbols, count] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == merge.first && symbols[i + 1] == merge.second) {
          out.push_back(merge.first + merge.second);
          ++i;
        } else {
          out.push_back(symbols[i]);
        }
      }
      merged[out] += count;
    }
    words = std::move(merged);
  }
  return merges;
}

}  // namespace

std::string ByteToUnicode(unsigned char byte) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> out(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      out[size_t(b)] = CodePointToUtf8(printable ? uint32_t(b) : uint32_t(256 + extra++));
    }
    return out;
  }();
  return table[byte];
}

std::string TinyTokenizerJson(int vocab_size) {
  KVC_CHECK(vocab_size >= kMinTinyVocab, "tiny tokenizer vocabulary too small");
  const size_t wanted_merges = size_t(vocab_size) - kMinTinyVocab;
  ordered_json vocab = ordered_json::object();
  std::set<std::string> known;
  std::vector<std::string> tokens;
  for (int byte : ByteOrder()) {
    tokens.push_back(ByteToUnicode((unsigned char)byte));
  }
  known.insert(tokens.begin(), tokens.end());
  const size_t wanted_tokens = size_t(vocab_size) - 2;
  auto merges = LearnMerges(wanted_merges);
  // Two merges can spell the same token ("ab"+"c", "a"+"bc"): it gets one id.
  for (const auto& [left, right] : merges) {
    if (known.insert(left + right).second) tokens.push_back(left + right);
  }
  // The paragraph runs out of repeated pairs long before a large vocabulary is full: fill up
  // with token + letter merges, each of which makes a new token from two existing ones.
  for (size_t base = 0; tokens.size() < wanted_tokens; ++base) {
    for (char letter = 'a'; letter <= 'z' && tokens.size() < wanted_tokens; ++letter) {
      const std::string left = tokens[base];
      const std::string right(1, letter);
      if (known.insert(left + right).second) {
        merges.emplace_back(left, right);
        tokens.push_back(left + right);
      }
    }
  }
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;
  ordered_json merge_list = ordered_json::array();
  for (const auto& [left, right] : merges) merge_list.push_back(left + " " + right);

  ordered_json added = ordered_json::array();
  for (auto [id, content] : {std::pair<int, const char*>{vocab_size - 2, kTinyBosToken},
                             std::pair<int, const char*>{vocab_size - 1, kTinyEosToken}}) {
    added.push_back({{"id", id},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  ordered_json byte_level = {{"type", "ByteLevel"},
                             {"add_prefix_space", false},
                             {"trim_offsets", true},
                             {"use_regex", true}};
  ordered_json tokenizer = {{"version", "1.0"},
                            {"truncation", nullptr},
                            {"padding", nullptr},
                            {"added_tokens", added},
                            {"normalizer", nullptr},
                            {"pre_tokenizer", byte_level},
                            {"post_processor", nullptr},
                            {"decoder", byte_level},
                            {"model",
                             {{"type", "BPE"},
                              {"dropout", nullptr},
                              {"unk_token", nullptr},
                              {"continuing_subword_prefix", nullptr},
                              {"end_of_word_suffix", nullptr},
                              {"fuse_unk", false},
                              {"byte_fallback", false},
                              {"ignore_merges", false},
                              {"vocab", vocab},
                              {"merges", merge_list}}}};
  return tokenizer.dump(2) + "\n";
}

std::string TinyTokenizerConfigJson(int vocab_size, int model_max_length) {
  ordered_json decoder = ordered_json::object();
  for (auto [id, content] : {std::pair<int, const char*>{vocab_size - 2, kTinyBosToken},
                             std::pair<int, const char*>{vocab_size - 1, kTinyEosToken}}) {
    decoder[std::to_string(id)] = {{"content", content},   {"lstrip", false},
                                   {"normalized", false},  {"rstrip", false},
                                   {"single_word", false}, {"special", true}};
  }
  ordered_json config = {
      {"added_tokens_decoder", decoder},      {"bos_token", kTinyBosToken},
      {"eos_token", kTinyEosToken},           {"clean_up_tokenization_spaces", false},
      {"model_max_length", model_max_length}, {"tokenizer_class", "PreTrainedTokenizerFast"}};
  return config.dump(2) + "\n";
}

}  // namespace kvc::make_model
