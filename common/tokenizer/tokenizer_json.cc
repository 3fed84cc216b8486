// Reads tokenizer.json and tokenizer_config.json into TokenizerParts. Every unsupported or
// malformed field is an InvalidArgument naming the file and the JSON path, so a tokenizer we
// cannot reproduce exactly is refused at load time instead of encoding differently.
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/tokenizer/tokenizer_parts.h"
#include "common/tokenizer/unicode.h"

namespace kvc::tokenizer_internal {
namespace {

using Json = nlohmann::json;

// Ids above this are refused: they would make the id tables absurdly large.
constexpr uint64_t kMaxTokenId = uint64_t{1} << 24;

// Typed access to JSON fields with errors that name the file and the field. Thread safety:
// immutable; used by one parse at a time anyway.
class Reader {
 public:
  explicit Reader(std::string_view file) : file_(file) {}

  absl::Status Error(std::string_view path, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ": ", std::string(path), ": ", std::string(what)));
  }

  // The member `key` of `object`, or nullptr when absent or null.
  static const Json* Find(const Json& object, const char* key) {
    if (!object.is_object()) return nullptr;
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<bool> Bool(const Json& object, const char* key, std::string_view path,
                            bool fallback) const {
    const Json* value = Find(object, key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) return Error(std::string(path) + "." + key, "expected true/false");
    return value->get<bool>();
  }

  absl::StatusOr<std::string> String(const Json& object, const char* key,
                                     std::string_view path) const {
    const Json* value = Find(object, key);
    if (value == nullptr || !value->is_string()) {
      return Error(std::string(path) + "." + key, "expected a string");
    }
    return value->get<std::string>();
  }

  absl::StatusOr<uint32_t> Id(const Json& value, std::string_view path) const {
    if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0)) {
      return Error(path, "expected a non-negative integer id");
    }
    const uint64_t id = value.get<uint64_t>();
    if (id >= kMaxTokenId) return Error(path, absl::StrCat("id ", id, " is too large"));
    return static_cast<uint32_t>(id);
  }

  // The "type" of a component object.
  absl::StatusOr<std::string> Type(const Json& component, std::string_view path) const {
    if (!component.is_object()) return Error(path, "expected an object");
    return String(component, "type", path);
  }

 private:
  std::string file_;
};

absl::StatusOr<Json> ParseJson(std::string_view text, std::string_view file) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(std::string(file) + ": not valid JSON: " + e.what());
  }
}

// Registers `spelling` as token `id`, replacing what the id was before.
void AddToken(uint32_t id, const std::string& spelling, bool special, TokenizerParts* parts) {
  if (id >= parts->ids.size()) parts->ids.resize(id + 1);
  TokenizerParts::IdInfo& info = parts->ids[id];
  info.known = true;
  info.special = special;
  info.spelling = spelling;
  // Decoding maps each character back through the byte-level alphabet; a spelling with a
  // character outside it decodes as its own UTF-8, as Hugging Face's ByteLevel decoder does.
  if (!ByteLevelAlphabet::DecodeToken(spelling, &info.bytes)) info.bytes = spelling;
  parts->spelling_to_id[spelling] = id;
}

absl::Status ReadModel(const Reader& reader, const Json& root, TokenizerParts* parts) {
  const Json* model = Reader::Find(root, "model");
  if (model == nullptr || !model->is_object()) return reader.Error("model", "missing");
  if (const Json* type = Reader::Find(*model, "type"); type != nullptr && *type != "BPE") {
    return reader.Error("model.type", absl::StrCat("unsupported model ", type->dump(),
                                                   ": only BPE (byte-level) is supported"));
  }
  if (const Json* dropout = Reader::Find(*model, "dropout");
      dropout != nullptr && (!dropout->is_number() || dropout->get<double>() != 0.0)) {
    return reader.Error("model.dropout", "BPE dropout is not supported (it is for training)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const Json* value = Reader::Find(*model, key);
    if (value != nullptr && (!value->is_string() || !value->get<std::string>().empty())) {
      return reader.Error(absl::StrCat("model.", key), "only an empty value is supported");
    }
  }
  const Json* vocab = Reader::Find(*model, "vocab");
  if (vocab == nullptr || !vocab->is_object() || vocab->empty()) {
    return reader.Error("model.vocab", "expected a non-empty object of token -> id");
  }
  parts->ids.reserve(vocab->size());
  for (const auto& [spelling, value] : vocab->items()) {
    const std::string path = absl::StrCat("model.vocab[\"", spelling, "\"]");
    absl::StatusOr<uint32_t> id = reader.Id(value, path);
    if (!id.ok()) return id.status();
    if (id.value() < parts->ids.size() && parts->ids[*id].known) {
      return reader.Error(path,
                          absl::StrCat("id ", *id, " is also '", parts->ids[*id].spelling, "'"));
    }
    AddToken(*id, spelling, /*special=*/false, parts);
  }

  std::array<uint32_t, 256> byte_ids{};
  for (int b = 0; b < 256; ++b) {
    const std::string_view spelling = ByteLevelAlphabet::Encode(static_cast<uint8_t>(b));
    const auto it = parts->spelling_to_id.find(absl::string_view(spelling.data(), spelling.size()));
    if (it == parts->spelling_to_id.end()) {
      return reader.Error(
          "model.vocab", absl::StrCat("no token for byte ", b, " (spelled '", std::string(spelling),
                                      "'): not a byte-level BPE vocabulary"));
    }
    byte_ids[b] = it->second;
  }

  const Json* merges = Reader::Find(*model, "merges");
  if (merges == nullptr || !merges->is_array()) {
    return reader.Error("model.merges", "expected an array");
  }
  std::vector<Merge> merge_list;
  merge_list.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& entry = (*merges)[i];
    const std::string path = absl::StrCat("model.merges[", i, "]");
    std::string left, right;
    if (entry.is_string()) {
      const std::string text = entry.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return reader.Error(path, absl::StrCat("expected \"left right\", got \"", text, "\""));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return reader.Error(path, "expected \"left right\" or [\"left\", \"right\"]");
    }
    Merge merge{};
    for (auto [spelling, id] : {std::pair{&left, &merge.left}, std::pair{&right, &merge.right}}) {
      const auto it = parts->spelling_to_id.find(*spelling);
      if (it == parts->spelling_to_id.end()) {
        return reader.Error(path, absl::StrCat("'", *spelling, "' is not in the vocabulary"));
      }
      *id = it->second;
    }
    const auto merged = parts->spelling_to_id.find(left + right);
    if (merged == parts->spelling_to_id.end()) {
      return reader.Error(
          path, absl::StrCat("merged token '", left, right, "' is not in the vocabulary"));
    }
    merge.merged = merged->second;
    merge_list.push_back(merge);
  }

  absl::StatusOr<bool> ignore_merges = reader.Bool(*model, "ignore_merges", "model", false);
  if (!ignore_merges.ok()) return ignore_merges.status();
  absl::flat_hash_map<std::string, uint32_t> words;
  words.reserve(parts->ids.size());
  for (uint32_t id = 0; id < parts->ids.size(); ++id) {
    const TokenizerParts::IdInfo& info = parts->ids[id];
    std::string bytes;
    if (info.known && ByteLevelAlphabet::DecodeToken(info.spelling, &bytes)) {
      words.try_emplace(std::move(bytes), id);
    }
  }
  parts->model = std::make_unique<BpeModel>(byte_ids, merge_list, std::move(words), *ignore_merges);
  return absl::OkStatus();
}

absl::Status ReadAddedTokens(const Reader& reader, const Json& root, TokenizerParts* parts) {
  const Json* added = Reader::Find(root, "added_tokens");
  if (added == nullptr) return absl::OkStatus();
  if (!added->is_array()) return reader.Error("added_tokens", "expected an array");
  std::vector<AddedToken> tokens;
  for (size_t i = 0; i < added->size(); ++i) {
    const Json& entry = (*added)[i];
    const std::string path = absl::StrCat("added_tokens[", i, "]");
    if (!entry.is_object()) return reader.Error(path, "expected an object");
    AddedToken token;
    const Json* id = Reader::Find(entry, "id");
    if (id == nullptr) return reader.Error(path, "missing id");
    absl::StatusOr<uint32_t> parsed_id = reader.Id(*id, path + ".id");
    absl::StatusOr<std::string> content = reader.String(entry, "content", path);
    absl::StatusOr<bool> special = reader.Bool(entry, "special", path, false);
    absl::StatusOr<bool> lstrip = reader.Bool(entry, "lstrip", path, false);
    absl::StatusOr<bool> rstrip = reader.Bool(entry, "rstrip", path, false);
    absl::StatusOr<bool> single_word = reader.Bool(entry, "single_word", path, false);
    for (const absl::Status& status : {parsed_id.status(), content.status(), special.status(),
                                       lstrip.status(), rstrip.status(), single_word.status()}) {
      if (!status.ok()) return status;
    }
    if (content->empty()) return reader.Error(path + ".content", "empty");
    token.id = *parsed_id;
    token.content = *content;
    token.special = *special;
    token.lstrip = *lstrip;
    token.rstrip = *rstrip;
    token.single_word = *single_word;
    // An added token may reuse a vocabulary id with the same or another spelling; its own
    // spelling wins, as in Hugging Face, where added tokens are looked up first.
    AddToken(token.id, token.content, token.special, parts);
    tokens.push_back(std::move(token));
  }
  parts->added = AddedVocabulary(std::move(tokens));
  return absl::OkStatus();
}

absl::Status ReadNormalizer(const Reader& reader, const Json& root, TokenizerParts* parts) {
  const Json* normalizer = Reader::Find(root, "normalizer");
  if (normalizer == nullptr) return absl::OkStatus();
  std::vector<const Json*> steps = {normalizer};
  absl::StatusOr<std::string> type = reader.Type(*normalizer, "normalizer");
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    const Json* list = Reader::Find(*normalizer, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return reader.Error("normalizer.normalizers", "expected an array");
    }
    steps.clear();
    for (const Json& step : *list) steps.push_back(&step);
  }
  for (const Json* step : steps) {
    absl::StatusOr<std::string> step_type = reader.Type(*step, "normalizer");
    if (!step_type.ok()) return step_type.status();
    if (*step_type != "NFC") {
      return reader.Error("normalizer", absl::StrCat("unsupported normalizer '", *step_type,
                                                     "': only NFC (or none) is supported"));
    }
    parts->nfc = true;
  }
  return absl::OkStatus();
}

absl::Status ReadPreTokenizer(const Reader& reader, const Json& root, TokenizerParts* parts) {
  const Json* pre = Reader::Find(root, "pre_tokenizer");
  if (pre == nullptr) {
    return reader.Error("pre_tokenizer", "missing: a byte-level BPE needs a ByteLevel step");
  }
  absl::StatusOr<std::string> type = reader.Type(*pre, "pre_tokenizer");
  if (!type.ok()) return type.status();
  std::vector<const Json*> steps = {pre};
  if (*type == "Sequence") {
    const Json* list = Reader::Find(*pre, "pretokenizers");
    if (list == nullptr || !list->is_array()) {
      return reader.Error("pre_tokenizer.pretokenizers", "expected an array");
    }
    steps.clear();
    for (const Json& step : *list) steps.push_back(&step);
  }
  bool byte_level_seen = false;
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string path = absl::StrCat("pre_tokenizer step ", i);
    absl::StatusOr<std::string> step_type = reader.Type(*steps[i], path);
    if (!step_type.ok()) return step_type.status();
    if (*step_type == "Split" && !byte_level_seen && !parts->split.has_value()) {
      const Json* pattern = Reader::Find(*steps[i], "pattern");
      const Json* regex = pattern == nullptr ? nullptr : Reader::Find(*pattern, "Regex");
      if (regex == nullptr || !regex->is_string()) {
        return reader.Error(path + ".pattern", "expected {\"Regex\": ...}");
      }
      absl::StatusOr<SplitPattern> split = RecognizeSplitPattern(regex->get<std::string>());
      if (!split.ok())
        return reader.Error(path + ".pattern", std::string(split.status().message()));
      absl::StatusOr<std::string> behavior = reader.String(*steps[i], "behavior", path);
      if (!behavior.ok()) return behavior.status();
      if (*behavior != "Isolated") {
        return reader.Error(path + ".behavior", "only Isolated is supported");
      }
      absl::StatusOr<bool> invert = reader.Bool(*steps[i], "invert", path, false);
      if (!invert.ok()) return invert.status();
      if (*invert) return reader.Error(path + ".invert", "only false is supported");
      parts->split = *split;
    } else if (*step_type == "ByteLevel" && !byte_level_seen) {
      // Hugging Face's defaults when the fields are absent: both true.
      absl::StatusOr<bool> prefix = reader.Bool(*steps[i], "add_prefix_space", path, true);
      absl::StatusOr<bool> use_regex = reader.Bool(*steps[i], "use_regex", path, true);
      if (!prefix.ok()) return prefix.status();
      if (!use_regex.ok()) return use_regex.status();
      parts->byte_level_add_prefix_space = *prefix;
      parts->byte_level_use_regex = *use_regex;
      byte_level_seen = true;
    } else {
      return reader.Error(path, absl::StrCat("unsupported pre-tokenizer '", *step_type,
                                             "' here: expected [Split,] ByteLevel"));
    }
  }
  if (!byte_level_seen) {
    return reader.Error("pre_tokenizer", "no ByteLevel step: not a byte-level BPE tokenizer");
  }
  return absl::OkStatus();
}

absl::Status ReadDecoder(const Reader& reader, const Json& root) {
  const Json* decoder = Reader::Find(root, "decoder");
  if (decoder == nullptr) return reader.Error("decoder", "missing: expected ByteLevel");
  absl::StatusOr<std::string> type = reader.Type(*decoder, "decoder");
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return absl::OkStatus();
  if (*type == "Sequence") {
    const Json* list = Reader::Find(*decoder, "decoders");
    if (list != nullptr && list->is_array() && list->size() == 1) {
      absl::StatusOr<std::string> inner = reader.Type((*list)[0], "decoder.decoders[0]");
      if (inner.ok() && *inner == "ByteLevel") return absl::OkStatus();
    }
  }
  return reader.Error(
      "decoder", absl::StrCat("unsupported decoder '", *type, "': only ByteLevel is supported"));
}

absl::Status ReadTemplate(const Reader& reader, const Json& processor, std::string_view path,
                          TokenizerParts* parts) {
  const Json* single = Reader::Find(processor, "single");
  if (single == nullptr || !single->is_array()) {
    return reader.Error(std::string(path) + ".single", "expected an array");
  }
  const Json* specials = Reader::Find(processor, "special_tokens");
  bool sequence_seen = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& item = (*single)[i];
    const std::string item_path = absl::StrCat(std::string(path), ".single[", i, "]");
    if (Reader::Find(item, "Sequence") != nullptr) {
      sequence_seen = true;
      continue;
    }
    const Json* special = Reader::Find(item, "SpecialToken");
    if (special == nullptr) return reader.Error(item_path, "expected SpecialToken or Sequence");
    absl::StatusOr<std::string> name = reader.String(*special, "id", item_path);
    if (!name.ok()) return name.status();
    const Json* entry = specials == nullptr ? nullptr : Reader::Find(*specials, name->c_str());
    const Json* ids = entry == nullptr ? nullptr : Reader::Find(*entry, "ids");
    if (ids == nullptr || !ids->is_array()) {
      return reader.Error(item_path,
                          absl::StrCat("special token '", *name, "' has no ids in special_tokens"));
    }
    for (const Json& id : *ids) {
      absl::StatusOr<uint32_t> parsed = reader.Id(id, item_path);
      if (!parsed.ok()) return parsed.status();
      (sequence_seen ? parts->suffix_ids : parts->prefix_ids).push_back(*parsed);
    }
  }
  return absl::OkStatus();
}

// Returns whether a TemplateProcessing was found (it then decides the special tokens).
absl::StatusOr<bool> ReadPostProcessor(const Reader& reader, const Json& root,
                                       TokenizerParts* parts) {
  const Json* post = Reader::Find(root, "post_processor");
  if (post == nullptr) return false;
  absl::StatusOr<std::string> type = reader.Type(*post, "post_processor");
  if (!type.ok()) return type.status();
  std::vector<const Json*> steps = {post};
  if (*type == "Sequence") {
    const Json* list = Reader::Find(*post, "processors");
    if (list == nullptr || !list->is_array()) {
      return reader.Error("post_processor.processors", "expected an array");
    }
    steps.clear();
    for (const Json& step : *list) steps.push_back(&step);
  }
  bool found_template = false;
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string path = absl::StrCat("post_processor step ", i);
    absl::StatusOr<std::string> step_type = reader.Type(*steps[i], path);
    if (!step_type.ok()) return step_type.status();
    // ByteLevel post-processing only adjusts offsets, which we do not produce.
    if (*step_type == "ByteLevel") continue;
    if (*step_type == "TemplateProcessing" && !found_template) {
      if (absl::Status status = ReadTemplate(reader, *steps[i], path, parts); !status.ok()) {
        return status;
      }
      found_template = true;
      continue;
    }
    return reader.Error(path, absl::StrCat("unsupported post-processor '", *step_type, "'"));
  }
  return found_template;
}

// bos_token / eos_token: a string, {"content": string}, or null.
absl::StatusOr<std::optional<uint32_t>> ReadConfigToken(const Reader& reader, const Json& config,
                                                        const char* key,
                                                        const TokenizerParts& parts) {
  const Json* value = Reader::Find(config, key);
  if (value == nullptr) return std::nullopt;
  const Json* content = value->is_object() ? Reader::Find(*value, "content") : value;
  if (content == nullptr || !content->is_string()) {
    return reader.Error(key, "expected a string or {\"content\": string}");
  }
  const auto it = parts.spelling_to_id.find(content->get<std::string>());
  if (it == parts.spelling_to_id.end()) {
    return reader.Error(
        key, absl::StrCat("token '", content->get<std::string>(), "' is not in the tokenizer"));
  }
  return it->second;
}

absl::Status ReadConfig(std::string_view config_json, std::string_view config_name,
                        bool has_template, TokenizerParts* parts) {
  if (config_json.empty()) return absl::OkStatus();
  const Reader reader(config_name);
  absl::StatusOr<Json> config = ParseJson(config_json, config_name);
  if (!config.ok()) return config.status();
  if (!config->is_object()) return reader.Error("(root)", "expected an object");
  absl::StatusOr<std::optional<uint32_t>> bos =
      ReadConfigToken(reader, *config, "bos_token", *parts);
  absl::StatusOr<std::optional<uint32_t>> eos =
      ReadConfigToken(reader, *config, "eos_token", *parts);
  if (!bos.ok()) return bos.status();
  if (!eos.ok()) return eos.status();
  if (bos->has_value()) parts->bos_id = **bos;
  if (eos->has_value()) parts->eos_id = **eos;
  absl::StatusOr<bool> add_bos = reader.Bool(*config, "add_bos_token", "(root)", false);
  absl::StatusOr<bool> add_eos = reader.Bool(*config, "add_eos_token", "(root)", false);
  if (!add_bos.ok()) return add_bos.status();
  if (!add_eos.ok()) return add_eos.status();
  if (has_template) return absl::OkStatus();
  if (*add_bos) {
    if (!parts->bos_id) return reader.Error("add_bos_token", "true but there is no bos_token");
    parts->prefix_ids = {*parts->bos_id};
  }
  if (*add_eos) {
    if (!parts->eos_id) return reader.Error("add_eos_token", "true but there is no eos_token");
    parts->suffix_ids = {*parts->eos_id};
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerParts> ParseTokenizerParts(std::string_view tokenizer_json,
                                                   std::string_view tokenizer_name,
                                                   std::string_view config_json,
                                                   std::string_view config_name) {
  absl::StatusOr<Json> root = ParseJson(tokenizer_json, tokenizer_name);
  if (!root.ok()) return root.status();
  const Reader reader(tokenizer_name);
  if (!root->is_object()) return reader.Error("(root)", "expected an object");
  TokenizerParts parts;
  for (auto step : {ReadModel, ReadAddedTokens, ReadNormalizer, ReadPreTokenizer}) {
    if (absl::Status status = step(reader, *root, &parts); !status.ok()) return status;
  }
  if (absl::Status status = ReadDecoder(reader, *root); !status.ok()) return status;
  absl::StatusOr<bool> has_template = ReadPostProcessor(reader, *root, &parts);
  if (!has_template.ok()) return has_template.status();
  for (const std::vector<uint32_t>* list : {&parts.prefix_ids, &parts.suffix_ids}) {
    for (uint32_t id : *list) {
      if (id >= parts.ids.size() || !parts.ids[id].known) {
        return reader.Error("post_processor", absl::StrCat("template id ", id, " is unknown"));
      }
    }
  }
  if (absl::Status status = ReadConfig(config_json, config_name, *has_template, &parts);
      !status.ok()) {
    return status;
  }
  // Without a config naming it, the template's leading token is the BOS.
  if (!parts.bos_id && parts.prefix_ids.size() == 1) parts.bos_id = parts.prefix_ids[0];
  return parts;
}

}  // namespace kvc::tokenizer_internal
