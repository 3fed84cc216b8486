// The tokenizer on a small self-contained byte-level BPE tokenizer.json written by the test
// (the shape kvc-make-model writes for test models): every byte, a few merges, special and
// plain added tokens, the Llama-3 split and a TemplateProcessing that adds BOS.
#include "common/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/pretokenizer.h"
#include "common/tokenizer/unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using tokenizer_internal::ByteLevelAlphabet;

constexpr uint32_t kHello = 259, kSpaceWor = 262, kBos = 263, kEos = 264, kTool = 265;

std::string Spell(std::string_view bytes) {
  std::string spelling;
  for (char c : bytes) spelling += ByteLevelAlphabet::Encode(static_cast<uint8_t>(c));
  return spelling;
}

// Byte b has id b; merges 256.. as listed; then the added tokens.
nlohmann::json TinyTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[Spell(std::string(1, static_cast<char>(b)))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}, {" w", "or"}};
  nlohmann::json merge_list = nlohmann::json::array();
  int next_id = 256;
  for (const auto& [left, right] : merges) {
    vocab[Spell(left + right)] = next_id++;
    // Both spellings Hugging Face writes: "a b" and ["a", "b"].
    if (next_id % 2 == 0) {
      merge_list.push_back(Spell(left) + " " + Spell(right));
    } else {
      merge_list.push_back({Spell(left), Spell(right)});
    }
  }
  auto added = [](int id, const std::string& content, bool special) {
    return nlohmann::json{{"id", id},          {"content", content}, {"single_word", false},
                          {"lstrip", false},   {"rstrip", false},    {"normalized", false},
                          {"special", special}};
  };
  return {
      {"version", "1.0"},
      {"added_tokens",
       {added(kBos, "<|begin_of_text|>", true), added(kEos, "<|end_of_text|>", true),
        added(kTool, "<tool>", false)}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", std::string(tokenizer_internal::kLlama3Pattern)}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"},
           {"add_prefix_space", false},
           {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", nlohmann::json::array()},
        {"special_tokens",
         {{"<|begin_of_text|>",
           {{"id", "<|begin_of_text|>"}, {"ids", {kBos}}, {"tokens", {"<|begin_of_text|>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merge_list}}}};
}

std::unique_ptr<Tokenizer> TinyTokenizer() {
  auto tokenizer = Tokenizer::FromJson(TinyTokenizerJson().dump(), "", "tiny");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("kvc_tokenizer_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& contents) const {
    const std::string file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << contents;
    return file;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

TEST(TokenizerTest, EncodesWithMergesByRank) {
  auto tokenizer = TinyTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(tokenizer->Encode("hello world", false), ElementsAre(kHello, kSpaceWor, 'l', 'd'));
  EXPECT_THAT(tokenizer->Encode("hello world", true),
              ElementsAre(kBos, kHello, kSpaceWor, 'l', 'd'));
  EXPECT_TRUE(tokenizer->Encode("", false).empty());
  EXPECT_THAT(tokenizer->Encode("", true), ElementsAre(kBos));
}

TEST(TokenizerTest, AddedTokensAreMatchedBeforeBpe) {
  auto tokenizer = TinyTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(tokenizer->Encode("hello<|end_of_text|><tool>hello", false),
              ElementsAre(kHello, kEos, kTool, kHello));
  // A prefix of a special token is plain text.
  EXPECT_EQ(tokenizer->Encode("<|end_of", false).size(), 8u);
  const std::vector<uint32_t> ids = {kBos, kHello, kEos, kTool};
  EXPECT_EQ(tokenizer->Decode(ids).value(), "<|begin_of_text|>hello<|end_of_text|><tool>");
  EXPECT_EQ(tokenizer->Decode(ids, /*skip_special_tokens=*/true).value(), "hello<tool>");
}

TEST(TokenizerTest, VocabularyQueries) {
  auto tokenizer = TinyTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 266u);
  EXPECT_EQ(tokenizer->bos_id(), kBos);  // from the template: there is no config
  EXPECT_EQ(tokenizer->eos_id(), std::nullopt);
  EXPECT_EQ(tokenizer->TokenToId("\xc4\xa0w"), 260u);  // "Ġw"
  EXPECT_EQ(tokenizer->TokenToId("<|end_of_text|>"), kEos);
  EXPECT_EQ(tokenizer->TokenToId("nope"), std::nullopt);
  EXPECT_EQ(tokenizer->IdToToken(kHello), "hello");
  EXPECT_EQ(tokenizer->IdToToken(9999), std::nullopt);
  EXPECT_TRUE(tokenizer->IsSpecial(kEos));
  EXPECT_FALSE(tokenizer->IsSpecial(kTool));
}

TEST(TokenizerTest, UnknownIdIsAnError) {
  auto tokenizer = TinyTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<uint32_t> ids = {kHello, 4000};
  const absl::StatusOr<std::string> text = tokenizer->Decode(ids);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()), HasSubstr("4000 at position 1"));
}

TEST(TokenizerTest, FromFileReadsConfigBesideIt) {
  TempDir dir;
  const std::string path = dir.Write("tokenizer.json", TinyTokenizerJson().dump());
  dir.Write("tokenizer_config.json",
            R"({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>"}})");
  auto tokenizer = Tokenizer::FromFile(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->bos_id(), kBos);
  EXPECT_EQ((*tokenizer)->eos_id(), kEos);
}

TEST(TokenizerTest, ConfigAddsBosWhenThereIsNoTemplate) {
  nlohmann::json json = TinyTokenizerJson();
  json["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
  auto tokenizer = Tokenizer::FromJson(json.dump(), "", "tiny");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT((*tokenizer)->Encode("hello", true), ElementsAre(kHello));
  tokenizer = Tokenizer::FromJson(
      json.dump(), R"({"bos_token": "<|begin_of_text|>", "add_bos_token": true})", "tiny");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT((*tokenizer)->Encode("hello", true), ElementsAre(kBos, kHello));
}

TEST(TokenizerTest, ErrorsNameTheFileAndTheProblem) {
  TempDir dir;
  auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/tokenizer.json"));

  const std::string bad = dir.Write("tokenizer.json", "{\"model\": ");
  auto parse_error = Tokenizer::FromFile(bad);
  EXPECT_EQ(parse_error.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parse_error.status().message()), HasSubstr(bad));

  const auto error_of = [](const nlohmann::json& json) {
    return std::string(Tokenizer::FromJson(json.dump(), "", "tiny.json").status().message());
  };
  nlohmann::json json = TinyTokenizerJson();
  json["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  EXPECT_THAT(error_of(json), HasSubstr("unsupported Split pre-tokenizer regex"));
  json = TinyTokenizerJson();
  json["model"]["merges"].push_back("x zz");
  EXPECT_THAT(error_of(json), HasSubstr("model.merges[7]: 'zz' is not in the vocabulary"));
  json = TinyTokenizerJson();
  json["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_THAT(error_of(json), HasSubstr("unsupported normalizer 'Lowercase'"));
  json = TinyTokenizerJson();
  json["model"]["vocab"].erase(Spell("A"));
  EXPECT_THAT(error_of(json), HasSubstr("no token for byte 65"));
  EXPECT_THAT(error_of(json), HasSubstr("tiny.json"));
}

// Any bytes encode; the ids spell exactly those bytes; Decode gives them back when they are
// valid UTF-8 and the lossy (U+FFFD) form otherwise; streaming gives the same text.
TEST(TokenizerTest, RandomBytesRoundTripAndStream) {
  auto tokenizer = TinyTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  std::mt19937 rng(11);
  const std::vector<std::string> atoms = {"hello",
                                          " world",
                                          "a",
                                          " ",
                                          "\n",
                                          "\t",
                                          "'s",
                                          "1234",
                                          "!",
                                          "\xc3\xa9",
                                          "\xe2\x80\x99",
                                          "\xf0\x9f\x98\x80",
                                          "\xff",
                                          "\x80",
                                          "\xe2\x82",
                                          "<tool>",
                                          "<|end_of_text|>",
                                          "<|"};
  for (int round = 0; round < 1000; ++round) {
    std::string text;
    const int length = rng() % 30;
    for (int i = 0; i < length; ++i) text += atoms[rng() % atoms.size()];
    const std::vector<uint32_t> ids = tokenizer->Encode(text, false);
    std::string bytes;
    for (uint32_t id : ids) ASSERT_TRUE(tokenizer->AppendTokenBytes(id, false, &bytes).ok());
    ASSERT_EQ(bytes, text);
    std::string lossy;
    tokenizer_internal::AppendLossyUtf8(text, true, &lossy);
    const std::string decoded = tokenizer->Decode(ids).value();
    ASSERT_EQ(decoded, lossy);
    StreamDecoder stream(*tokenizer);
    std::string streamed;
    for (uint32_t id : ids) {
      const std::string delta = stream.Add(id).value();
      std::string checked;
      tokenizer_internal::AppendLossyUtf8(delta, true, &checked);
      ASSERT_EQ(checked, delta) << "a delta is not whole UTF-8 characters";
      streamed += delta;
    }
    streamed += stream.Finish();
    ASSERT_EQ(streamed, decoded);
  }
}

TEST(TokenizerTest, StreamDecoderHoldsPartialCharacters) {
  auto tokenizer = TinyTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  StreamDecoder stream(*tokenizer);
  // U+20AC (euro sign) is three byte tokens here.
  EXPECT_EQ(stream.Add(0xE2).value(), "");
  EXPECT_EQ(stream.Add(0x82).value(), "");
  EXPECT_FALSE(stream.Add(5000).ok());  // an unknown id leaves the decoder as it was
  EXPECT_EQ(stream.Add(0xAC).value(), "\xe2\x82\xac");
  EXPECT_EQ(stream.Add(0xE2).value(), "");
  EXPECT_EQ(stream.Finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.Add(kHello).value(), "hello");
}

TEST(TokenizerTest, ConcurrentEncodeMatchesSerial) {
  auto tokenizer = TinyTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("hello world " + std::to_string(i * 7919) + " <tool> hellohello  \n" +
                    std::string(i % 90, 'l'));
  }
  std::vector<std::vector<uint32_t>> expected;
  for (const std::string& text : texts) expected.push_back(tokenizer->Encode(text, true));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches = 0;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = t; i < texts.size(); i += 1 + t) {
          if (tokenizer->Encode(texts[i], true) != expected[i]) ++mismatches;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(mismatches, 0);
}

// The model's merge loop (flat arrays up to 64 bytes, a heap beyond) against the plain
// definition: repeatedly merge the lowest-ranked adjacent pair, leftmost first.
std::vector<uint32_t> ReferenceMerge(const std::string& word,
                                     const std::vector<tokenizer_internal::Merge>& merges) {
  std::vector<uint32_t> symbols(word.begin(), word.end());
  for (uint32_t& s : symbols) s &= 0xFF;
  while (true) {
    size_t best_pos = 0, best_rank = SIZE_MAX;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      for (size_t rank = 0; rank < merges.size() && rank < best_rank; ++rank) {
        if (merges[rank].left == symbols[i] && merges[rank].right == symbols[i + 1]) {
          best_rank = rank;
          best_pos = i;
          break;
        }
      }
    }
    if (best_rank == SIZE_MAX) return symbols;
    symbols[best_pos] = merges[best_rank].merged;
    symbols.erase(symbols.begin() + best_pos + 1);
  }
}

TEST(BpeModelTest, MergeMatchesReferenceOnShortAndLongWords) {
  std::mt19937 rng(5);
  // Random merges over a 4-letter alphabet, so that merges chain and compete.
  std::vector<tokenizer_internal::Merge> merges;
  std::vector<uint32_t> symbols = {'a', 'b', 'c', 'd'};
  uint32_t next_id = 256;
  for (int i = 0; i < 60; ++i) {
    const uint32_t left = symbols[rng() % symbols.size()];
    const uint32_t right = symbols[rng() % symbols.size()];
    merges.push_back({left, right, next_id});
    symbols.push_back(next_id++);
  }
  std::array<uint32_t, 256> byte_ids;
  for (uint32_t b = 0; b < 256; ++b) byte_ids[b] = b;
  tokenizer_internal::BpeModel model(byte_ids, merges, {}, /*ignore_merges=*/false);
  for (int round = 0; round < 300; ++round) {
    std::string word;
    const int length = 1 + rng() % 200;
    for (int i = 0; i < length; ++i) word += static_cast<char>('a' + rng() % 4);
    std::vector<uint32_t> ids;
    model.MergeWord(word, &ids);
    ASSERT_EQ(ids, ReferenceMerge(word, merges)) << word;
    std::vector<uint32_t> cached;
    model.EncodeWord(word, &cached);
    model.EncodeWord(word, &cached);
    ASSERT_EQ(cached.size(), 2 * ids.size());
  }
}

}  // namespace
}  // namespace kvc
