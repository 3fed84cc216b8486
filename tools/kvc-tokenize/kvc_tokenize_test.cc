// Runs the kvc-tokenize binary for real, through a shell, on a small tokenizer.json written
// here (every byte, three merges, BOS/EOS special tokens and a template that adds BOS).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;

// GPT-2's byte-level alphabet: printable Latin-1 bytes are themselves, the rest U+0100.. .
std::string Spell(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) {
    int cp = b;
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
      int n = 0;
      for (int c = 0; c < b; ++c) {
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) ++n;
      }
      cp = 256 + n;
    }
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

class KvcTokenizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvc_tokenize_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[Spell(std::string(1, static_cast<char>(b)))] = b;
    vocab[Spell("hi")] = 256;
    vocab[Spell(" t")] = 257;
    vocab[Spell(" th")] = 258;
    const nlohmann::json merges = {Spell("h") + " " + Spell("i"), Spell(" ") + " " + Spell("t"),
                                   Spell(" t") + " " + Spell("h")};
    const auto special = [](int id, const char* content) {
      return nlohmann::json{{"id", id}, {"content", content}, {"special", true}};
    };
    const nlohmann::json json = {
        {"added_tokens", {special(259, "<s>"), special(260, "</s>")}},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
          {"special_tokens", {{"<s>", {{"ids", {259}}}}}}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
    tokenizer_ = (dir_ / "tokenizer.json").string();
    std::ofstream(tokenizer_) << json.dump();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  struct Result {
    int exit_code;
    std::string out;
    std::string err;
  };

  // Runs kvc-tokenize with `args`, feeding `input` on stdin.
  Result Run(const std::string& args, const std::string& input) {
    const std::filesystem::path in = dir_ / "stdin", out = dir_ / "stdout", err = dir_ / "stderr";
    std::ofstream(in, std::ios::binary) << input;
    const std::string command = std::string(KVC_TOKENIZE_BIN) + " " + args + " < " + in.string() +
                                " > " + out.string() + " 2> " + err.string();
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, Slurp(out), Slurp(err)};
  }

  static std::string Slurp(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    std::ostringstream contents;
    contents << file.rdbuf();
    return contents.str();
  }

  std::filesystem::path dir_;
  std::string tokenizer_;
};

TEST_F(KvcTokenizeTest, EncodesAndDecodes) {
  Result encoded = Run("--tokenizer " + tokenizer_, "hi thx");
  ASSERT_EQ(encoded.exit_code, 0) << encoded.err;
  EXPECT_EQ(encoded.out, "256 258 120\n");

  encoded = Run("--tokenizer=" + tokenizer_ + " --add-special-tokens", "hi</s>");
  ASSERT_EQ(encoded.exit_code, 0) << encoded.err;
  EXPECT_EQ(encoded.out, "259 256 260\n");

  Result decoded = Run("--tokenizer " + tokenizer_ + " --decode", "259 256 258 120\n");
  ASSERT_EQ(decoded.exit_code, 0) << decoded.err;
  EXPECT_EQ(decoded.out, "<s>hi thx");
  decoded = Run("--tokenizer " + tokenizer_ + " --decode --skip-special-tokens", "259,256");
  ASSERT_EQ(decoded.exit_code, 0) << decoded.err;
  EXPECT_EQ(decoded.out, "hi");
}

TEST_F(KvcTokenizeTest, EmptyInputAndAnyBytes) {
  Result encoded = Run("--tokenizer " + tokenizer_, "");
  ASSERT_EQ(encoded.exit_code, 0) << encoded.err;
  EXPECT_EQ(encoded.out, "\n");
  encoded = Run("--tokenizer " + tokenizer_, "\xff\n");
  ASSERT_EQ(encoded.exit_code, 0) << encoded.err;
  EXPECT_EQ(encoded.out, "255 10\n");
}

TEST_F(KvcTokenizeTest, ClearErrors) {
  Result missing = Run("--tokenizer /nonexistent/tokenizer.json", "hi");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("/nonexistent/tokenizer.json"));

  Result bad_id = Run("--tokenizer " + tokenizer_ + " --decode", "256 12x");
  EXPECT_EQ(bad_id.exit_code, 1);
  EXPECT_THAT(bad_id.err, HasSubstr("bad token id '12x'"));

  Result unknown = Run("--tokenizer " + tokenizer_ + " --decode", "256 99999");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("99999"));

  Result usage = Run("--frobnicate", "");
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("--frobnicate"));
  EXPECT_EQ(Run("", "").exit_code, 2);
}

TEST_F(KvcTokenizeTest, HelpDocumentsEveryFlag) {
  const Result help = Run("--help", "");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--tokenizer", "--decode", "--add-special-tokens", "--skip-special-tokens", "--help"}) {
    EXPECT_THAT(help.out, HasSubstr(flag));
  }
}

}  // namespace
