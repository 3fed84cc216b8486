// Tokenizer: Hugging Face byte-level BPE tokenizers (Llama-3, Qwen2/Qwen3, GPT-2 style) loaded
// from tokenizer.json, for the worker (prompts in, text out) and the router (prompts to token
// ids to block hashes, which must equal the worker's exactly).
//
// Supported tokenizer.json: model BPE (vocab; merges as "a b" strings or [a, b] pairs;
// ignore_merges), added_tokens (special or not; matched in the raw text before everything
// else, also when add_special_tokens is false, as Hugging Face does), normalizer NFC or none,
// pre_tokenizer ByteLevel alone or a Sequence of one Split (the Llama-3, Qwen2 or GPT-2 regex,
// behavior Isolated) then ByteLevel, decoder ByteLevel, post_processor ByteLevel and/or
// TemplateProcessing. Anything else is refused with an error naming the file and the field,
// never approximated.
//
// Special tokens added by Encode(text, add_special_tokens=true): the TemplateProcessing
// "single" template when there is one; otherwise BOS and/or EOS when tokenizer_config.json
// (read from beside tokenizer.json) sets add_bos_token / add_eos_token; otherwise none. Note
// that the Llama-3 tokenizer.json that scripts/fetch-tokenizers gets has only a ByteLevel
// post-processor, so it adds no BOS (Meta's original file has a template that does); a caller
// that needs BOS whatever the file says can prepend bos_id() itself.
//
// Decoding: unknown ids are an error (InvalidArgument naming the id and its position), never
// silently dropped. Bytes that do not form valid UTF-8 decode to U+FFFD, so decoded text is
// always valid UTF-8 (what protobuf string fields require); a piece of a character split
// across tokens is joined correctly, in Decode and in StreamDecoder alike. Decoding is the
// tokenizers library's (exact: decode(encode(s)) == s for valid UTF-8 NFC text), without
// transformers' optional clean_up_tokenization_spaces rewrite.
//
// Thread safety: a Tokenizer is immutable after FromFile/FromJson returns (its internal word
// cache has its own locks); every method may be called concurrently from any threads.
#ifndef KVCLUSTER_COMMON_TOKENIZER_TOKENIZER_H_
#define KVCLUSTER_COMMON_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvc {

class Tokenizer {
 public:
  // Loads `path` (a tokenizer.json) and, when it exists, tokenizer_config.json in the same
  // folder (for bos/eos tokens and add_bos_token/add_eos_token). Errors name the file and what
  // is wrong in it: NotFound for a missing file, InvalidArgument for bad or unsupported content.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);

  // The same from file contents; `config_json` may be empty. `origin` names the source in
  // error messages.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view config_json,
                                                             std::string_view origin);

  virtual ~Tokenizer() = default;

  // Token ids of `text`. Any bytes are accepted: ill-formed UTF-8 is byte-level encoded like
  // any other byte (it cannot round-trip through Decode, which yields valid UTF-8).
  virtual std::vector<uint32_t> Encode(std::string_view text, bool add_special_tokens) const = 0;

  // Text of `ids`; skip_special_tokens leaves out added tokens marked special.
  virtual absl::StatusOr<std::string> Decode(std::span<const uint32_t> ids,
                                             bool skip_special_tokens = false) const = 0;

  // Appends the raw bytes that `id` stands for (possibly part of a UTF-8 character) to *bytes;
  // nothing for a special token when skip_special_tokens. InvalidArgument for an unknown id.
  virtual absl::Status AppendTokenBytes(uint32_t id, bool skip_special_tokens,
                                        std::string* bytes) const = 0;

  // One past the largest id (vocabulary and added tokens), the size an embedding needs at least.
  virtual uint32_t vocab_size() const = 0;
  virtual std::optional<uint32_t> bos_id() const = 0;
  virtual std::optional<uint32_t> eos_id() const = 0;

  // The id of a token as tokenizer.json spells it: a vocabulary key in the byte-level alphabet
  // ("Ġhello") or an added token's content ("<|end_of_text|>").
  virtual std::optional<uint32_t> TokenToId(std::string_view token) const = 0;
  // The inverse: the token's spelling in tokenizer.json, or nullopt for an unknown id.
  virtual std::optional<std::string> IdToToken(uint32_t id) const = 0;
  // Whether `id` is an added token marked special.
  virtual bool IsSpecial(uint32_t id) const = 0;
};

// StreamDecoder: turns ids generated one at a time into text deltas. A delta never ends inside
// a UTF-8 character: bytes of an incomplete character are held until the token that completes
// it arrives. The concatenation of all deltas and Finish() equals Decode() of all the ids.
//
// Thread safety: not thread-safe; use one per sequence, from one thread at a time. The
// tokenizer must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  // The text that `id` completes (often empty while a character is incomplete).
  // InvalidArgument for an unknown id, leaving the decoder as it was.
  absl::StatusOr<std::string> Add(uint32_t id);

  // The text still held: an incomplete character at the end becomes U+FFFD. The decoder is
  // empty afterwards and may be reused.
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes of an incomplete character, at most 3
};

}  // namespace kvc

#endif  // KVCLUSTER_COMMON_TOKENIZER_TOKENIZER_H_
