// The tokenizer against reference vectors from llama.cpp's test suite (../shared/data), which
// hold Hugging Face's own output for 46 tricky strings, with the real Llama-3 and Qwen3
// tokenizer.json files (scripts/fetch-tokenizers). Skips, saying why, when either is absent.
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/unicode.h"
#include "gtest/gtest.h"

namespace kvc {
namespace {

constexpr char kVectorsDir[] = "../shared/data/tokenizer-vectors";

struct Case {
  std::string text;
  std::vector<uint32_t> ids;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// NAME.inp is every string followed by "\n__ggml_vocab_test__\n"; NAME.out one line of ids per
// string.
std::vector<Case> ReadCases(const std::string& name) {
  const std::string inputs = ReadAll(std::string(kVectorsDir) + "/" + name + ".inp");
  const std::string outputs = ReadAll(std::string(kVectorsDir) + "/" + name + ".out");
  constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (size_t pos = 0; pos < inputs.size();) {
    const size_t next = inputs.find(kSeparator, pos);
    if (next == std::string::npos) break;
    cases.push_back({inputs.substr(pos, next - pos), {}});
    pos = next + kSeparator.size();
  }
  std::istringstream lines(outputs);
  std::string line;
  for (size_t i = 0; std::getline(lines, line); ++i) {
    if (i >= cases.size()) {
      cases.push_back({"<missing input>", {}});
    }
    std::istringstream ids(line);
    for (uint32_t id; ids >> id;) cases[i].ids.push_back(id);
  }
  return cases;
}

std::string Printable(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out;
}

void CheckVectors(const std::string& vectors, const std::string& tokenizer_name) {
  const std::string tokenizer_path = ".cache/tokenizers/" + tokenizer_name + "/tokenizer.json";
  if (!std::filesystem::exists(std::string(kVectorsDir) + "/" + vectors + ".inp")) {
    GTEST_SKIP() << "no test vectors at " << kVectorsDir << "/" << vectors << ".inp";
  }
  if (!std::filesystem::exists(tokenizer_path)) {
    GTEST_SKIP() << "no " << tokenizer_path << " (run scripts/fetch-tokenizers)";
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromFile(tokenizer_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  const std::vector<Case> cases = ReadCases(vectors);
  ASSERT_EQ(cases.size(), 46u);
  int passed = 0;
  for (const Case& c : cases) {
    const std::vector<uint32_t> ids = (*tokenizer)->Encode(c.text, /*add_special_tokens=*/false);
    EXPECT_EQ(ids, c.ids) << "text: \"" << Printable(c.text) << "\"";
    if (ids == c.ids) ++passed;
    absl::StatusOr<std::string> decoded = (*tokenizer)->Decode(ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c.text) << "round trip of \"" << Printable(c.text) << "\"";
  }
  std::printf("%s with %s: %d/%zu vectors match\n", vectors.c_str(), tokenizer_name.c_str(), passed,
              cases.size());
}

// Random bytes, valid or not, through the real tokenizers: the ids spell exactly the input
// (after NFC where the tokenizer normalizes), decoding gives its lossy UTF-8 form, and the
// streaming decoder agrees.
void CheckRandomBytes(const std::string& tokenizer_name, bool nfc) {
  const std::string tokenizer_path = ".cache/tokenizers/" + tokenizer_name + "/tokenizer.json";
  if (!std::filesystem::exists(tokenizer_path)) {
    GTEST_SKIP() << "no " << tokenizer_path << " (run scripts/fetch-tokenizers)";
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromFile(tokenizer_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::mt19937 rng(17);
  const std::vector<std::string> atoms = {"the",
                                          " cat",
                                          "'S",
                                          " ",
                                          "  ",
                                          "\n",
                                          "\r\n",
                                          "\t",
                                          "123456",
                                          "!?",
                                          "\xc3\xa9",
                                          "e\xcc\x81",
                                          "\xe6\x97\xa5\xe6\x9c\xac",
                                          "\xf0\x9f\x98\x80",
                                          "\xc2\xa0",
                                          "\xe3\x80\x80",
                                          "\xff",
                                          "\x80",
                                          "\xe2\x82",
                                          "\xed\xa0\x80",
                                          "<|endoftext|>",
                                          "<|begin_of_text|>",
                                          "<|im_end|>",
                                          "<|",
                                          "\x00"};
  for (int round = 0; round < 500; ++round) {
    std::string text;
    const int length = rng() % 40;
    for (int i = 0; i < length; ++i) text += atoms[rng() % atoms.size()];
    if (rng() % 8 == 0) {
      for (int i = 0; i < 20; ++i) text += static_cast<char>(rng());
    }
    const std::vector<uint32_t> ids = (*tokenizer)->Encode(text, false);
    std::string bytes;
    for (uint32_t id : ids) ASSERT_TRUE((*tokenizer)->AppendTokenBytes(id, false, &bytes).ok());
    std::string expected = text;
    std::string normalized;
    if (nfc && tokenizer_internal::NormalizeNfc(text, &normalized)) expected = normalized;
    ASSERT_EQ(bytes, expected);
    std::string lossy;
    tokenizer_internal::AppendLossyUtf8(expected, /*final=*/true, &lossy);
    const std::string decoded = (*tokenizer)->Decode(ids).value();
    ASSERT_EQ(decoded, lossy);
    StreamDecoder stream(**tokenizer);
    std::string streamed;
    for (uint32_t id : ids) streamed += stream.Add(id).value();
    streamed += stream.Finish();
    ASSERT_EQ(streamed, decoded);
  }
}

TEST(TokenizerVectorsTest, Llama3) { CheckVectors("llama-bpe", "llama3"); }

TEST(TokenizerVectorsTest, Qwen3) { CheckVectors("qwen2", "qwen3"); }

TEST(TokenizerVectorsTest, Llama3RandomBytes) { CheckRandomBytes("llama3", /*nfc=*/false); }

TEST(TokenizerVectorsTest, Qwen3RandomBytes) { CheckRandomBytes("qwen3", /*nfc=*/true); }

// The real tokenizers' special tokens and ids, as the worker and router rely on them.
TEST(TokenizerVectorsTest, SpecialTokens) {
  const std::string llama3 = ".cache/tokenizers/llama3/tokenizer.json";
  const std::string qwen3 = ".cache/tokenizers/qwen3/tokenizer.json";
  if (!std::filesystem::exists(llama3) || !std::filesystem::exists(qwen3)) {
    GTEST_SKIP() << "no tokenizers in .cache/tokenizers (run scripts/fetch-tokenizers)";
  }
  auto llama = Tokenizer::FromFile(llama3);
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ((*llama)->vocab_size(), 128256u);
  EXPECT_EQ((*llama)->bos_id(), 128000u);
  EXPECT_EQ((*llama)->eos_id(), 128001u);
  EXPECT_EQ((*llama)->TokenToId("<|eot_id|>"), 128009u);
  const std::vector<uint32_t> with_special = (*llama)->Encode("<|start_header_id|>user", true);
  EXPECT_EQ(with_special, (std::vector<uint32_t>{128006, 882}));
  auto qwen = Tokenizer::FromFile(qwen3);
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_EQ((*qwen)->vocab_size(), 151669u);
  EXPECT_EQ((*qwen)->bos_id(), std::nullopt);
  EXPECT_EQ((*qwen)->eos_id(), 151645u);  // <|im_end|>
  EXPECT_EQ((*qwen)->Encode("<|im_start|>user", true), (std::vector<uint32_t>{151644, 872}));
  EXPECT_FALSE((*qwen)->IsSpecial(151657));  // <tool_call> is added but not special
  EXPECT_EQ((*qwen)->Decode(std::vector<uint32_t>{151644, 872, 151645}, true).value(), "user");
}

}  // namespace
}  // namespace kvc
