#include "common/tokenizer/unicode.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

#include <cstring>
#include <memory>

#include "common/check.h"

namespace kvc::tokenizer_internal {
namespace {

// What a lead byte promises: the sequence length (0: not a valid lead) and the range allowed
// for the second byte, which is where overlongs, surrogates and values past U+10FFFF are cut.
struct LeadByte {
  uint8_t length;
  uint8_t second_min;
  uint8_t second_max;
};

LeadByte ClassifyLead(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

enum class SequenceKind { kValid, kIllFormed, kTruncated };

struct Sequence {
  SequenceKind kind;
  // kValid: the sequence length; kIllFormed: the maximal ill-formed subpart's length;
  // kTruncated: how many bytes are there.
  int length;
};

Sequence CheckSequence(const unsigned char* p, const unsigned char* end) {
  const LeadByte lead = ClassifyLead(*p);
  if (lead.length == 0) return {SequenceKind::kIllFormed, 1};
  for (int i = 1; i < lead.length; ++i) {
    if (p + i >= end) return {SequenceKind::kTruncated, i};
    const uint8_t min = i == 1 ? lead.second_min : 0x80;
    const uint8_t max = i == 1 ? lead.second_max : 0xBF;
    if (p[i] < min || p[i] > max) return {SequenceKind::kIllFormed, i};
  }
  return {SequenceKind::kValid, lead.length};
}

uint8_t ClassifyWithIcu(UChar32 cp) {
  uint8_t classes = 0;
  switch (u_charType(cp)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      classes |= kLetter;
      break;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      classes |= kNumber;
      break;
    default:
      break;
  }
  if (u_isUWhiteSpace(cp)) classes |= kSpace;
  if (cp == '\r' || cp == '\n') classes |= kNewline;
  return classes;
}

// The BMP holds nearly every character real text uses; one byte each keeps ICU off the hot
// path. Built once, on first use, under the thread-safe initialisation of a function static.
const uint8_t* BmpClasses() {
  static const std::unique_ptr<uint8_t[]> table = [] {
    auto classes = std::make_unique<uint8_t[]>(0x10000);
    for (UChar32 cp = 0; cp < 0x10000; ++cp) classes[cp] = ClassifyWithIcu(cp);
    return classes;
  }();
  return table.get();
}

const icu::Normalizer2& NfcInstance() {
  static const icu::Normalizer2* nfc = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* instance = icu::Normalizer2::getNFCInstance(status);
    KVC_CHECK(U_SUCCESS(status) && instance != nullptr, "ICU has no NFC data");
    return instance;
  }();
  return *nfc;
}

// Appends NFC of a well-formed run.
void AppendNfcRun(std::string_view run, std::string* out) {
  UErrorCode status = U_ZERO_ERROR;
  icu::StringByteSink<std::string> sink(out);
  NfcInstance().normalizeUTF8(0, icu::StringPiece(run.data(), static_cast<int32_t>(run.size())),
                              sink, nullptr, status);
  KVC_CHECK(U_SUCCESS(status), "ICU failed to normalize well-formed UTF-8");
}

struct Alphabet {
  uint16_t byte_to_cp[256];
  int16_t cp_to_byte[324];
  char spelling[256][2];
  uint8_t spelling_length[256];
};

Alphabet MakeAlphabet() {
  Alphabet alphabet{};
  for (int16_t& b : alphabet.cp_to_byte) b = -1;
  int next_extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const uint16_t cp = printable ? b : 256 + next_extra++;
    alphabet.byte_to_cp[b] = cp;
    alphabet.cp_to_byte[cp] = static_cast<int16_t>(b);
    if (cp < 0x80) {
      alphabet.spelling[b][0] = static_cast<char>(cp);
      alphabet.spelling_length[b] = 1;
    } else {
      alphabet.spelling[b][0] = static_cast<char>(0xC0 | (cp >> 6));
      alphabet.spelling[b][1] = static_cast<char>(0x80 | (cp & 0x3F));
      alphabet.spelling_length[b] = 2;
    }
  }
  return alphabet;
}

const Alphabet& TheAlphabet() {
  static const Alphabet alphabet = MakeAlphabet();
  return alphabet;
}

}  // namespace

int DecodeUtf8(const unsigned char* p, const unsigned char* end, uint32_t* cp) {
  const Sequence sequence = CheckSequence(p, end);
  if (sequence.kind != SequenceKind::kValid) return 0;
  switch (sequence.length) {
    case 1:
      *cp = p[0];
      break;
    case 2:
      *cp = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
      break;
    case 3:
      *cp = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
      break;
    default:
      *cp =
          ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
      break;
  }
  return sequence.length;
}

uint8_t ClassifyNonAscii(uint32_t cp) {
  if (cp < 0x10000) return BmpClasses()[cp];
  return ClassifyWithIcu(static_cast<UChar32>(cp));
}

size_t AppendLossyUtf8(std::string_view bytes, bool final, std::string* out) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  const auto* begin = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto* end = begin + bytes.size();
  const auto* p = begin;
  while (p < end) {
    // Copy the ASCII and well-formed stretch in one append.
    const auto* run = p;
    while (p < end) {
      if (*p < 0x80) {
        ++p;
        continue;
      }
      const Sequence sequence = CheckSequence(p, end);
      if (sequence.kind != SequenceKind::kValid) break;
      p += sequence.length;
    }
    out->append(reinterpret_cast<const char*>(run), p - run);
    if (p == end) break;
    const Sequence sequence = CheckSequence(p, end);
    if (sequence.kind == SequenceKind::kTruncated && !final) break;
    out->append(kReplacement);
    p += sequence.length;
  }
  return p - begin;
}

bool IsAscii(std::string_view text) {
  const char* p = text.data();
  const char* end = p + text.size();
  for (; end - p >= 8; p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    if (word & 0x8080808080808080ull) return false;
  }
  for (; p < end; ++p) {
    if (static_cast<unsigned char>(*p) >= 0x80) return false;
  }
  return true;
}

bool NormalizeNfc(std::string_view text, std::string* out) {
  if (IsAscii(text)) return false;
  const auto* begin = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = begin + text.size();
  bool well_formed = true;
  for (const auto* p = begin; p < end;) {
    const Sequence sequence = CheckSequence(p, end);
    if (sequence.kind != SequenceKind::kValid) {
      well_formed = false;
      break;
    }
    p += sequence.length;
  }
  if (well_formed) {
    UErrorCode status = U_ZERO_ERROR;
    const bool normalized = NfcInstance().isNormalizedUTF8(
        icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), status);
    KVC_CHECK(U_SUCCESS(status), "ICU failed to check well-formed UTF-8");
    if (normalized) return false;
    out->clear();
    AppendNfcRun(text, out);
    return true;
  }
  out->clear();
  const auto* run = begin;
  for (const auto* p = begin; p < end;) {
    const Sequence sequence = CheckSequence(p, end);
    if (sequence.kind == SequenceKind::kValid) {
      p += sequence.length;
      continue;
    }
    AppendNfcRun(std::string_view(reinterpret_cast<const char*>(run), p - run), out);
    out->append(reinterpret_cast<const char*>(p), sequence.length);
    p += sequence.length;
    run = p;
  }
  AppendNfcRun(std::string_view(reinterpret_cast<const char*>(run), end - run), out);
  return true;
}

std::string_view ByteLevelAlphabet::Encode(uint8_t b) {
  const Alphabet& alphabet = TheAlphabet();
  return std::string_view(alphabet.spelling[b], alphabet.spelling_length[b]);
}

int ByteLevelAlphabet::Decode(uint32_t cp) {
  if (cp >= 324) return -1;
  return TheAlphabet().cp_to_byte[cp];
}

bool ByteLevelAlphabet::DecodeToken(std::string_view token, std::string* bytes) {
  bytes->clear();
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  const auto* end = p + token.size();
  while (p < end) {
    uint32_t cp = 0;
    const int length = DecodeUtf8(p, end, &cp);
    if (length == 0) return false;
    const int b = Decode(cp);
    if (b < 0) return false;
    bytes->push_back(static_cast<char>(b));
    p += length;
  }
  return true;
}

}  // namespace kvc::tokenizer_internal
