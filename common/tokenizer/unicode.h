// UTF-8 and Unicode helpers for the byte-level BPE tokenizer: decoding with a defined answer for
// ill-formed bytes, the character classes the pre-tokenizer patterns use (\p{L}, \p{N}, \s),
// NFC normalization, lossy UTF-8 output, and GPT-2's byte <-> character alphabet.
//
// Unicode data comes from ICU (Debian libicu-dev) rather than tables generated here: ICU is the
// maintained source of the Unicode Character Database on every Debian machine, and NFC needs
// composition and canonical-ordering data that would be large and error-prone to regenerate.
// The hot path (ASCII) never calls into ICU. All functions are pure and thread-safe.
#ifndef KVCLUSTER_COMMON_TOKENIZER_UNICODE_H_
#define KVCLUSTER_COMMON_TOKENIZER_UNICODE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvc::tokenizer_internal {

// Character class bits, as the Split patterns of Llama-3, Qwen2/3 and GPT-2 see a character.
inline constexpr uint8_t kLetter = 1;   // \p{L}: general category Lu, Ll, Lt, Lm, Lo
inline constexpr uint8_t kNumber = 2;   // \p{N}: Nd, Nl, No
inline constexpr uint8_t kSpace = 4;    // \s: the Unicode White_Space property
inline constexpr uint8_t kNewline = 8;  // '\r' or '\n' (also carries kSpace)

// Length of the well-formed UTF-8 sequence starting at `p` (1..4), or 0 when the bytes there
// are ill-formed or cut off by `end`. REQUIRES: p < end. Stores the code point in *cp.
int DecodeUtf8(const unsigned char* p, const unsigned char* end, uint32_t* cp);

// Class bits of a non-ASCII code point (ICU lookup, cached for the BMP).
uint8_t ClassifyNonAscii(uint32_t cp);

namespace detail {
constexpr std::array<uint8_t, 128> MakeAsciiClasses() {
  std::array<uint8_t, 128> classes{};
  for (int c = 'a'; c <= 'z'; ++c) classes[c] = kLetter;
  for (int c = 'A'; c <= 'Z'; ++c) classes[c] = kLetter;
  for (int c = '0'; c <= '9'; ++c) classes[c] = kNumber;
  for (int c = 0x09; c <= 0x0D; ++c) classes[c] = kSpace;
  classes[' '] = kSpace;
  classes['\r'] = kSpace | kNewline;
  classes['\n'] = kSpace | kNewline;
  return classes;
}
inline constexpr std::array<uint8_t, 128> kAsciiClasses = MakeAsciiClasses();
}  // namespace detail

// One character of the input as the pre-tokenizer sees it: its class bits and byte length.
// An ill-formed byte is a character of its own with no class bits (it is "other"), so any byte
// string can be split and byte-level encoded.
struct CharInfo {
  uint8_t classes;
  uint8_t length;
};

// REQUIRES: p < end.
inline CharInfo CharAt(const unsigned char* p, const unsigned char* end) {
  if (*p < 0x80) return {detail::kAsciiClasses[*p], 1};
  uint32_t cp = 0;
  const int length = DecodeUtf8(p, end, &cp);
  if (length == 0) return {0, 1};
  return {ClassifyNonAscii(cp), static_cast<uint8_t>(length)};
}

// Appends `bytes` to *out as valid UTF-8, replacing each maximal ill-formed subpart with U+FFFD
// (the Unicode "best practice", as Rust's String::from_utf8_lossy does). When `final` is false,
// a trailing sequence that is incomplete but could still become valid is held back: the return
// value is how many bytes were consumed, so a streaming caller keeps the rest for later.
size_t AppendLossyUtf8(std::string_view bytes, bool final, std::string* out);

// True when every byte of `text` is ASCII.
bool IsAscii(std::string_view text);

// NFC of `text` into *out. Ill-formed bytes are kept as they are and split the text into runs
// that are normalized separately. Returns false (leaving *out alone) when `text` is already NFC.
bool NormalizeNfc(std::string_view text, std::string* out);

// GPT-2's reversible map between bytes and printable characters: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order. Byte-level vocabularies spell every
// token in these characters. Thread safety: stateless (static functions over constant tables).
class ByteLevelAlphabet {
 public:
  // The UTF-8 spelling of byte `b`'s character.
  static std::string_view Encode(uint8_t b);
  // The byte whose character is `cp`, or -1 when `cp` is not in the alphabet.
  static int Decode(uint32_t cp);
  // Maps a token spelled in the alphabet back to its bytes. Returns false when some character
  // is not in the alphabet (such tokens are decoded as their own UTF-8, as Hugging Face does).
  static bool DecodeToken(std::string_view token, std::string* bytes);
};

}  // namespace kvc::tokenizer_internal

#endif  // KVCLUSTER_COMMON_TOKENIZER_UNICODE_H_
