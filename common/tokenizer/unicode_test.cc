#include "common/tokenizer/unicode.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvc::tokenizer_internal {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

std::string Lossy(std::string_view bytes) {
  std::string out;
  EXPECT_EQ(AppendLossyUtf8(bytes, /*final=*/true, &out), bytes.size());
  return out;
}

TEST(UnicodeTest, LossyUtf8ReplacesMaximalSubparts) {
  EXPECT_EQ(Lossy("plain \xc3\xa9"), "plain \xc3\xa9");
  EXPECT_EQ(Lossy("a\xff"
                  "b"),
            absl::StrCat("a", kReplacement, "b"));
  // A truncated sequence is one replacement; a surrogate is three (ED is refused before A0).
  EXPECT_EQ(Lossy("\xe2\x82"), kReplacement);
  EXPECT_EQ(Lossy("\xed\xa0\x80"), absl::StrCat(kReplacement, kReplacement, kReplacement));
  // Overlong encodings are refused.
  EXPECT_EQ(Lossy("\xc0\xaf"), absl::StrCat(kReplacement, kReplacement));
}

TEST(UnicodeTest, LossyUtf8HoldsBackAnIncompleteTail) {
  std::string out;
  EXPECT_EQ(AppendLossyUtf8("ab\xe2\x82", /*final=*/false, &out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  // Bytes that can no longer become valid are not held back.
  EXPECT_EQ(AppendLossyUtf8("ab\xe2x", /*final=*/false, &out), 4u);
  EXPECT_EQ(out, absl::StrCat("ab", kReplacement, "x"));
}

TEST(UnicodeTest, Classes) {
  const auto classes = [](std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    return CharAt(p, p + s.size()).classes;
  };
  EXPECT_EQ(classes("a"), kLetter);
  EXPECT_EQ(classes("\xc3\x9f"), kLetter);      // U+00DF sharp s
  EXPECT_EQ(classes("\xe6\x97\xa5"), kLetter);  // U+65E5 CJK
  EXPECT_EQ(classes("\xd9\xa3"), kNumber);      // U+0663 Arabic-Indic three
  EXPECT_EQ(classes("\xc2\xb2"), kNumber);      // U+00B2 superscript two (No)
  EXPECT_EQ(classes("\xc2\xa0"), kSpace);       // U+00A0 no-break space
  EXPECT_EQ(classes("\xe3\x80\x80"), kSpace);   // U+3000 ideographic space
  EXPECT_EQ(classes("\n"), kSpace | kNewline);
  EXPECT_EQ(classes("\xf0\x9f\x98\x80"), 0);  // emoji: other
  EXPECT_EQ(classes("\xff"), 0);              // ill-formed: other
}

TEST(UnicodeTest, Nfc) {
  std::string out;
  EXPECT_FALSE(NormalizeNfc("ascii only", &out));
  EXPECT_FALSE(NormalizeNfc("caf\xc3\xa9", &out));  // already composed
  ASSERT_TRUE(NormalizeNfc("cafe\xcc\x81", &out));  // e + combining acute
  EXPECT_EQ(out, "caf\xc3\xa9");
  // Ill-formed bytes survive and split the text into separately normalized runs.
  ASSERT_TRUE(
      NormalizeNfc("e\xcc\x81\xff"
                   "e\xcc\x81",
                   &out));
  EXPECT_EQ(out, "\xc3\xa9\xff\xc3\xa9");
}

TEST(UnicodeTest, ByteLevelAlphabetIsABijection) {
  EXPECT_EQ(ByteLevelAlphabet::Encode(' '), "\xc4\xa0");   // U+0120 'Ġ'
  EXPECT_EQ(ByteLevelAlphabet::Encode('\n'), "\xc4\x8a");  // U+010A 'Ċ'
  EXPECT_EQ(ByteLevelAlphabet::Encode('A'), "A");
  std::string all;
  for (int b = 0; b < 256; ++b) all += ByteLevelAlphabet::Encode(static_cast<uint8_t>(b));
  std::string bytes;
  ASSERT_TRUE(ByteLevelAlphabet::DecodeToken(all, &bytes));
  ASSERT_EQ(bytes.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(static_cast<uint8_t>(bytes[b]), b);
  EXPECT_FALSE(ByteLevelAlphabet::DecodeToken(" ", &bytes));  // space is not in the alphabet
}

}  // namespace
}  // namespace kvc::tokenizer_internal
