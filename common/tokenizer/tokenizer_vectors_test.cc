// The tokenizer against reference vectors from llama.cpp's test suite (../shared/data), which
// hold Hugging Face's own output for 46 tricky strings, with the real Llama-3 and Qwen3
// tokenizer.json files (scripts/fetch-tokenizers). Skips, saying why, when either is absent.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
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

TEST(TokenizerVectorsTest, Llama3) { CheckVectors("llama-bpe", "llama3"); }

TEST(TokenizerVectorsTest, Qwen3) { CheckVectors("qwen2", "qwen3"); }

}  // namespace
}  // namespace kvc
