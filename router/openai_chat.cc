#include "router/openai_chat.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace kvc::router::openai {

// Holds the template's source until the Jinja engine (common/chat_template) is linked in.
class ChatPrompter::Impl {
 public:
  explicit Impl(std::string source) : source_(std::move(source)) {}
  absl::StatusOr<std::string> Render(std::span<const Message>) const {
    return absl::FailedPreconditionError(
        "chat templates are not available in this build of the router");
  }

 private:
  std::string source_;
};

absl::StatusOr<std::unique_ptr<ChatPrompter>> ChatPrompter::Load(
    const std::string& template_file, const std::string& tokenizer_config, const Tokenizer*) {
  const std::string& path = template_file.empty() ? tokenizer_config : template_file;
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (!template_file.empty()) {
    return std::unique_ptr<ChatPrompter>(new ChatPrompter(std::make_unique<Impl>(text.str())));
  }
  const nlohmann::json config = nlohmann::json::parse(text.str(), nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  }
  auto found = config.find("chat_template");
  if (found == config.end() || !found->is_string()) {
    return absl::NotFoundError(absl::StrCat(path, " has no chat_template"));
  }
  return std::unique_ptr<ChatPrompter>(
      new ChatPrompter(std::make_unique<Impl>(found->get<std::string>())));
}

ChatPrompter::ChatPrompter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChatPrompter::~ChatPrompter() = default;

absl::StatusOr<std::string> ChatPrompter::Render(std::span<const Message> messages) const {
  return impl_->Render(messages);
}

}  // namespace kvc::router::openai
