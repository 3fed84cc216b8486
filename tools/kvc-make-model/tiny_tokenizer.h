// A small, self-contained byte-level BPE tokenizer in Hugging Face tokenizer.json format, for
// test models that have no real tokenizer: the 256 byte tokens (GPT-2 byte-to-unicode
// alphabet), merges learned from a built-in English paragraph (then filled up to the
// requested size), and <|begin_of_text|> / <|end_of_text|> as special added tokens with the
// two highest ids. Deterministic: same vocab size, same bytes. Pure functions: thread-safe.
#ifndef KVCLUSTER_TOOLS_KVC_MAKE_MODEL_TINY_TOKENIZER_H_
#define KVCLUSTER_TOOLS_KVC_MAKE_MODEL_TINY_TOKENIZER_H_

#include <string>

namespace kvc::make_model {

inline constexpr int kMinTinyVocab = 258;  // bytes + the two special tokens
inline constexpr char kTinyBosToken[] = "<|begin_of_text|>";
inline constexpr char kTinyEosToken[] = "<|end_of_text|>";

// REQUIRES: vocab_size >= kMinTinyVocab. Token ids are 0..vocab_size-1, bos = vocab_size - 2,
// eos = vocab_size - 1.
std::string TinyTokenizerJson(int vocab_size);
std::string TinyTokenizerConfigJson(int vocab_size, int model_max_length);

// The GPT-2 byte-to-unicode mapping: the printable character (UTF-8) that stands for `byte`.
std::string ByteToUnicode(unsigned char byte);

}  // namespace kvc::make_model

#endif  // KVCLUSTER_TOOLS_KVC_MAKE_MODEL_TINY_TOKENIZER_H_
