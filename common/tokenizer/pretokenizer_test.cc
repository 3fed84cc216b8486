#include "common/tokenizer/pretokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc::tokenizer_internal {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Pieces(SplitPattern pattern, std::string_view text) {
  std::vector<std::string> pieces;
  SplitIntoPieces(pattern, text, [&](std::string_view piece) { pieces.emplace_back(piece); });
  return pieces;
}

TEST(PretokenizerTest, RecognizesOnlyKnownPatterns) {
  EXPECT_EQ(RecognizeSplitPattern(kLlama3Pattern).value(), SplitPattern::kLlama3);
  EXPECT_EQ(RecognizeSplitPattern(kQwen2Pattern).value(), SplitPattern::kQwen2);
  EXPECT_EQ(RecognizeSplitPattern(kGpt2Pattern).value(), SplitPattern::kGpt2);
  const absl::StatusOr<SplitPattern> unknown = RecognizeSplitPattern("\\w+|\\s+");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()), ::testing::HasSubstr("\\w+|\\s+"));
}

TEST(PretokenizerTest, Llama3WordsAndContractions) {
  const auto p = SplitPattern::kLlama3;
  EXPECT_THAT(Pieces(p, "Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Pieces(p, "I'm HE'LL they'RE"), ElementsAre("I", "'m", " HE", "'LL", " they", "'RE"));
  // A letter run may take one leading non-letter, non-digit, non-newline character.
  EXPECT_THAT(Pieces(p, "Hello,world\tfoo"), ElementsAre("Hello", ",world", "\tfoo"));
  EXPECT_THAT(Pieces(p, "'sup"), ElementsAre("'s", "up"));
}

TEST(PretokenizerTest, Llama3DigitsGroupByThreeQwenByOne) {
  EXPECT_THAT(Pieces(SplitPattern::kLlama3, "1234567"), ElementsAre("123", "456", "7"));
  EXPECT_THAT(Pieces(SplitPattern::kQwen2, "1234"), ElementsAre("1", "2", "3", "4"));
  // \p{N} is Unicode: Arabic-Indic digits and superscripts count.
  EXPECT_THAT(Pieces(SplitPattern::kLlama3, "\u0663\u0664\u0665\u0666"),
              ElementsAre("\u0663\u0664\u0665", "\u0666"));
}

TEST(PretokenizerTest, Llama3Whitespace) {
  const auto p = SplitPattern::kLlama3;
  // \s+(?!\S) gives back the last space to the word after it.
  EXPECT_THAT(Pieces(p, "   Hello"), ElementsAre("  ", " Hello"));
  EXPECT_THAT(Pieces(p, "x   "), ElementsAre("x", "   "));
  // \s*[\r\n]+ ends at the run's last newline.
  EXPECT_THAT(Pieces(p, "\n\n   x"), ElementsAre("\n\n", "  ", " x"));
  EXPECT_THAT(Pieces(p, "a  \n  b"), ElementsAre("a", "  \n", " ", " b"));
  EXPECT_THAT(Pieces(p, "\t."), ElementsAre("\t", "."));
  EXPECT_THAT(Pieces(p, " ."), ElementsAre(" ."));
  // Punctuation takes the newlines after it.
  EXPECT_THAT(Pieces(p, "hello!!\n\nworld"), ElementsAre("hello", "!!\n\n", "world"));
}

TEST(PretokenizerTest, UnicodeLetters) {
  const auto p = SplitPattern::kQwen2;
  EXPECT_THAT(Pieces(p, "F\u00fchrer \u65e5\u672c\u8a9e"),
              ElementsAre("F\u00fchrer", " \u65e5\u672c\u8a9e"));
  // U+3000 (ideographic space) is \s.
  EXPECT_THAT(Pieces(p, "a\u3000b"), ElementsAre("a", "\u3000b"));
}

// \s is what Hugging Face's regex engine (Oniguruma) takes it to be, the White_Space property:
// U+0085 (NEL) is a space, U+FEFF (zero-width no-break space) is not.
TEST(PretokenizerTest, WhitespaceIsTheWhiteSpaceProperty) {
  EXPECT_THAT(Pieces(SplitPattern::kLlama3, "\u0085't"), ElementsAre("\u0085", "'t"));
  EXPECT_THAT(Pieces(SplitPattern::kLlama3, "\ufeff'S"), ElementsAre("\ufeff'", "S"));
}

TEST(PretokenizerTest, Gpt2) {
  const auto p = SplitPattern::kGpt2;
  EXPECT_THAT(Pieces(p, "Hello world's 123 !!  x"),
              ElementsAre("Hello", " world", "'s", " 123", " !!", " ", " x"));
  // Contractions are case-sensitive here.
  EXPECT_THAT(Pieces(p, "I'M"), ElementsAre("I", "'", "M"));
}

TEST(PretokenizerTest, IllFormedBytesAreOtherCharacters) {
  EXPECT_THAT(Pieces(SplitPattern::kLlama3,
                     "\xff\xfe"
                     "abc \xc3"),
              ElementsAre("\xff\xfe", "abc", " \xc3"));
}

// Pieces always tile the input, whatever the bytes.
TEST(PretokenizerTest, PiecesTileRandomBytes) {
  std::mt19937 rng(7);
  const std::vector<std::string> atoms = {"a",
                                          "Z",
                                          "1",
                                          " ",
                                          "\n",
                                          "\r",
                                          "\t",
                                          "'",
                                          "s",
                                          "!",
                                          "\xc3\xa9",
                                          "\xe2\x80\x99",
                                          "\xf0\x9f\x98\x80",
                                          "\xff",
                                          "\x80",
                                          "\xe2\x82"};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const int length = rng() % 40;
    for (int i = 0; i < length; ++i) text += atoms[rng() % atoms.size()];
    for (SplitPattern p : {SplitPattern::kLlama3, SplitPattern::kQwen2, SplitPattern::kGpt2}) {
      std::string joined;
      for (const std::string& piece : Pieces(p, text)) {
        ASSERT_FALSE(piece.empty());
        joined += piece;
      }
      ASSERT_EQ(joined, text);
    }
  }
}

}  // namespace
}  // namespace kvc::tokenizer_internal
