#include "router/openai_chat.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/chat_template/chat_template.h"

namespace kvc::router::openai {

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A special token as tokenizer_config.json spells it: a string or {"content": ...}.
std::string TokenText(const nlohmann::json& config, const char* key) {
  auto found = config.find(key);
  if (found == config.end()) return "";
  if (found->is_string()) return found->get<std::string>();
  if (found->is_object() && found->contains("content") && (*found)["content"].is_string()) {
    return (*found)["content"].get<std::string>();
  }
  return "";
}

}  // namespace

class ChatPrompter::Impl {
 public:
  explicit Impl(std::unique_ptr<chat::ChatTemplate> chat_template)
      : template_(std::move(chat_template)) {}

  absl::StatusOr<std::string> Render(std::span<const Message> messages) const {
    std::vector<chat::ChatMessage> chat_messages;
    chat_messages.reserve(messages.size());
    for (const Message& m : messages) chat_messages.push_back({m.role, m.content});
    return template_->Apply(chat_messages, /*add_generation_prompt=*/true);
  }

 private:
  const std::unique_ptr<chat::ChatTemplate> template_;
};

absl::StatusOr<std::unique_ptr<ChatPrompter>> ChatPrompter::Load(
    const std::string& template_file, const std::string& tokenizer_config,
    const Tokenizer* tokenizer) {
  absl::StatusOr<std::unique_ptr<chat::ChatTemplate>> loaded;
  if (template_file.empty()) {
    loaded = chat::ChatTemplate::FromTokenizerConfig(tokenizer_config);
  } else {
    absl::StatusOr<std::string> source = ReadFile(template_file);
    if (!source.ok()) return source.status();
    // BOS and EOS as the model's tokenizer_config.json names them, else as the tokenizer does.
    std::string bos, eos;
    if (absl::StatusOr<std::string> config_text = ReadFile(tokenizer_config); config_text.ok()) {
      const nlohmann::json config = nlohmann::json::parse(*config_text, nullptr, false);
      if (config.is_object()) {
        bos = TokenText(config, "bos_token");
        eos = TokenText(config, "eos_token");
      }
    }
    if (tokenizer != nullptr && bos.empty() && tokenizer->bos_id()) {
      bos = tokenizer->IdToToken(*tokenizer->bos_id()).value_or("");
    }
    if (tokenizer != nullptr && eos.empty() && tokenizer->eos_id()) {
      eos = tokenizer->IdToToken(*tokenizer->eos_id()).value_or("");
    }
    loaded = chat::ChatTemplate::Parse(*source, bos, eos);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat(template_file, ": ", loaded.status().message()));
    }
  }
  if (!loaded.ok()) return loaded.status();
  return std::unique_ptr<ChatPrompter>(
      new ChatPrompter(std::make_unique<Impl>(*std::move(loaded))));
}

ChatPrompter::ChatPrompter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatPrompter::~ChatPrompter() = default;

absl::StatusOr<std::string> ChatPrompter::Render(std::span<const Message> messages) const {
  return impl_->Render(messages);
}

}  // namespace kvc::router::openai
