// The chat step of /v1/chat/completions: renders a request's messages into the prompt text
// with the model's chat template (Jinja, from tokenizer_config.json's "chat_template" or a
// file given with --chat-template), ending with the assistant's generation prompt. The router
// then tokenizes that text with special tokens parsed, as the workers would.
//
// Thread-safety: immutable after Load; Render may be called from any thread.
#ifndef KVCLUSTER_ROUTER_OPENAI_CHAT_H_
#define KVCLUSTER_ROUTER_OPENAI_CHAT_H_

#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "router/openai_request.h"

namespace kvc::router::openai {

class ChatPrompter {
 public:
  // From `template_file` when it is not empty (its bos/eos tokens are the tokenizer's, which
  // may be null), else from the chat_template in `tokenizer_config` (a tokenizer_config.json).
  // NOT_FOUND when the config has no chat_template; INVALID_ARGUMENT naming the file for a
  // template that does not parse.
  static absl::StatusOr<std::unique_ptr<ChatPrompter>> Load(const std::string& template_file,
                                                            const std::string& tokenizer_config,
                                                            const Tokenizer* tokenizer);
  ~ChatPrompter();

  // The prompt for `messages`, generation prompt included. INVALID_ARGUMENT when the template
  // refuses them (e.g. raise_exception for roles out of order).
  absl::StatusOr<std::string> Render(std::span<const Message> messages) const;

 private:
  class Impl;
  explicit ChatPrompter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvc::router::openai

#endif  // KVCLUSTER_ROUTER_OPENAI_CHAT_H_
