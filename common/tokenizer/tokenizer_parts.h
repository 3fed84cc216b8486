// TokenizerParts: everything a byte-level BPE tokenizer is built from, as read from
// tokenizer.json and tokenizer_config.json by ParseTokenizerParts (tokenizer_json.cc) and used
// by the Tokenizer implementation (tokenizer.cc). Internal to common/tokenizer.
//
// Thread safety: a plain value; the BpeModel inside is safe for concurrent use.
#ifndef KVCLUSTER_COMMON_TOKENIZER_TOKENIZER_PARTS_H_
#define KVCLUSTER_COMMON_TOKENIZER_TOKENIZER_PARTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/tokenizer/added_vocabulary.h"
#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/pretokenizer.h"

namespace kvc::tokenizer_internal {

struct TokenizerParts {
  // Indexed by id, sized vocab_size. An id that neither the vocabulary nor the added tokens
  // use has known == false.
  struct IdInfo {
    std::string spelling;  // as tokenizer.json spells it
    std::string bytes;     // what it decodes to
    bool known = false;
    bool special = false;
  };
  std::vector<IdInfo> ids;
  absl::flat_hash_map<std::string, uint32_t> spelling_to_id;

  std::unique_ptr<BpeModel> model;
  AddedVocabulary added;

  bool nfc = false;
  std::optional<SplitPattern> split;  // the Split pre-tokenizer before ByteLevel, if any
  bool byte_level_add_prefix_space = false;
  bool byte_level_use_regex = false;

  // What add_special_tokens puts around the text.
  std::vector<uint32_t> prefix_ids;
  std::vector<uint32_t> suffix_ids;
  std::optional<uint32_t> bos_id;
  std::optional<uint32_t> eos_id;
};

// `config_json` may be empty (no tokenizer_config.json). The names appear in error messages.
absl::StatusOr<TokenizerParts> ParseTokenizerParts(std::string_view tokenizer_json,
                                                   std::string_view tokenizer_name,
                                                   std::string_view config_json,
                                                   std::string_view config_name);

}  // namespace kvc::tokenizer_internal

#endif  // KVCLUSTER_COMMON_TOKENIZER_TOKENIZER_PARTS_H_
