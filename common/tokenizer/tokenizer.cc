#include "common/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tokenizer/pretokenizer.h"
#include "common/tokenizer/tokenizer_parts.h"
#include "common/tokenizer/unicode.h"

namespace kvc {
namespace {

using tokenizer_internal::TokenizerParts;

// The Hugging Face pipeline, for byte-level BPE: added tokens are cut out of the raw text; each
// stretch between them is normalized, split into pieces, given a prefix space if asked, and
// each piece is BPE-merged. Thread safety: immutable after construction (the BPE word cache
// guards itself), so every method may run concurrently.
class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  explicit ByteLevelBpeTokenizer(TokenizerParts parts) : parts_(std::move(parts)) {}

  std::vector<uint32_t> Encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<uint32_t> ids;
    // English averages about four bytes a token.
    ids.reserve(text.size() / 4 + parts_.prefix_ids.size() + parts_.suffix_ids.size() + 8);
    if (add_special_tokens) ids.assign(parts_.prefix_ids.begin(), parts_.prefix_ids.end());
    size_t pos = 0;
    tokenizer_internal::AddedVocabulary::Match match;
    while (pos < text.size() && parts_.added.FindNext(text, pos, &match)) {
      EncodeStretch(text.substr(pos, match.begin - pos), &ids);
      ids.push_back(match.id);
      pos = match.end;
    }
    if (pos < text.size()) EncodeStretch(text.substr(pos), &ids);
    if (add_special_tokens) {
      ids.insert(ids.end(), parts_.suffix_ids.begin(), parts_.suffix_ids.end());
    }
    return ids;
  }

  absl::StatusOr<std::string> Decode(std::span<const uint32_t> ids,
                                     bool skip_special_tokens) const override {
    std::string bytes;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!Known(ids[i])) return UnknownId(ids[i], i);
      const TokenizerParts::IdInfo& info = parts_.ids[ids[i]];
      if (!(skip_special_tokens && info.special)) bytes += info.bytes;
    }
    if (tokenizer_internal::IsAscii(bytes)) return bytes;
    std::string text;
    text.reserve(bytes.size());
    tokenizer_internal::AppendLossyUtf8(bytes, /*final=*/true, &text);
    return text;
  }

  absl::Status AppendTokenBytes(uint32_t id, bool skip_special_tokens,
                                std::string* bytes) const override {
    if (!Known(id)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " is not in the vocabulary (size ", parts_.ids.size(), ")"));
    }
    const TokenizerParts::IdInfo& info = parts_.ids[id];
    if (!(skip_special_tokens && info.special)) bytes->append(info.bytes);
    return absl::OkStatus();
  }

  uint32_t vocab_size() const override { return static_cast<uint32_t>(parts_.ids.size()); }
  std::optional<uint32_t> bos_id() const override { return parts_.bos_id; }
  std::optional<uint32_t> eos_id() const override { return parts_.eos_id; }

  std::optional<uint32_t> TokenToId(std::string_view token) const override {
    const auto it = parts_.spelling_to_id.find(absl::string_view(token.data(), token.size()));
    if (it == parts_.spelling_to_id.end()) return std::nullopt;
    return it->second;
  }

  std::optional<std::string> IdToToken(uint32_t id) const override {
    if (!Known(id)) return std::nullopt;
    return parts_.ids[id].spelling;
  }

  bool IsSpecial(uint32_t id) const override { return Known(id) && parts_.ids[id].special; }

 private:
  bool Known(uint32_t id) const { return id < parts_.ids.size() && parts_.ids[id].known; }

  absl::Status UnknownId(uint32_t id, size_t position) const {
    return absl::InvalidArgumentError(absl::StrCat("token id ", id, " at position ", position,
                                                   " is not in the vocabulary (size ",
                                                   parts_.ids.size(), ")"));
  }

  // Text between added tokens.
  void EncodeStretch(std::string_view text, std::vector<uint32_t>* ids) const {
    if (text.empty()) return;
    std::string normalized;
    if (parts_.nfc && tokenizer_internal::NormalizeNfc(text, &normalized)) text = normalized;
    if (parts_.split.has_value()) {
      tokenizer_internal::SplitIntoPieces(
          *parts_.split, text, [&](std::string_view piece) { EncodeByteLevel(piece, ids); });
    } else {
      EncodeByteLevel(text, ids);
    }
  }

  // The ByteLevel pre-tokenizer's part: a prefix space for each piece that lacks one (as
  // Hugging Face applies it, per piece), its own GPT-2 split when use_regex, then BPE.
  void EncodeByteLevel(std::string_view piece, std::vector<uint32_t>* ids) const {
    std::string prefixed;
    if (parts_.byte_level_add_prefix_space && piece.front() != ' ') {
      prefixed.reserve(piece.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(piece);
      piece = prefixed;
    }
    if (parts_.byte_level_use_regex) {
      tokenizer_internal::SplitIntoPieces(
          tokenizer_internal::SplitPattern::kGpt2, piece,
          [&](std::string_view word) { parts_.model->EncodeWord(word, ids); });
    } else {
      parts_.model->EncodeWord(piece, ids);
    }
  }

  const TokenizerParts parts_;
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    if (std::filesystem::exists(path, error)) {
      return absl::InvalidArgumentError(path + ": not a regular file");
    }
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (!in.good() && !in.eof()) {
    return absl::UnavailableError(absl::StrCat(path, ": read failed"));
  }
  return std::move(contents).str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  absl::StatusOr<std::string> json = ReadFile(path);
  if (!json.ok()) return json.status();
  const std::string config_path =
      (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  std::string config;
  std::error_code error;
  if (std::filesystem::exists(config_path, error)) {
    absl::StatusOr<std::string> contents = ReadFile(config_path);
    if (!contents.ok()) return contents.status();
    config = *std::move(contents);
  }
  absl::StatusOr<TokenizerParts> parts =
      tokenizer_internal::ParseTokenizerParts(*json, path, config, config_path);
  if (!parts.ok()) return parts.status();
  return std::make_unique<ByteLevelBpeTokenizer>(*std::move(parts));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view tokenizer_json,
                                                               std::string_view config_json,
                                                               std::string_view origin) {
  absl::StatusOr<TokenizerParts> parts = tokenizer_internal::ParseTokenizerParts(
      tokenizer_json, origin, config_json, std::string(origin) + " (tokenizer_config)");
  if (!parts.ok()) return parts.status();
  return std::make_unique<ByteLevelBpeTokenizer>(*std::move(parts));
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

absl::StatusOr<std::string> StreamDecoder::Add(uint32_t id) {
  std::string bytes = pending_;
  if (absl::Status status = tokenizer_.AppendTokenBytes(id, skip_special_tokens_, &bytes);
      !status.ok()) {
    return status;
  }
  std::string text;
  const size_t consumed = tokenizer_internal::AppendLossyUtf8(bytes, /*final=*/false, &text);
  pending_ = bytes.substr(consumed);
  return text;
}

std::string StreamDecoder::Finish() {
  std::string text;
  tokenizer_internal::AppendLossyUtf8(pending_, /*final=*/true, &text);
  pending_.clear();
  return text;
}

}  // namespace kvc
