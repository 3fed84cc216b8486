// Chat templates: the Jinja template in a model's tokenizer_config.json ("chat_template") that
// turns a conversation into the prompt text the model was trained on. This is an interpreter
// of the Jinja subset that Hugging Face chat templates use, rendering as transformers'
// apply_chat_template does (trim_blocks and lstrip_blocks on, an immutable sandbox, json.dumps
// as tojson, raise_exception and strftime_now as globals).
//
// The rendered prompt usually starts with the BOS token already (Llama-3's does): tokenize it
// without adding special tokens again.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_CHAT_TEMPLATE_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_CHAT_TEMPLATE_H_

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvc::chat {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
};

// Thread-safety: immutable after creation; Apply may be called from many threads at once.
class ChatTemplate {
 public:
  struct Options {
    // The clock that strftime_now reads (local time of this point). Unset: the system clock.
    std::function<std::chrono::system_clock::time_point()> clock;
  };

  // Parses a template source; INVALID_ARGUMENT with line:column on a syntax error (including an
  // unknown filter or test, as Jinja reports them when compiling).
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(std::string_view source,
                                                             std::string bos_token,
                                                             std::string eos_token);
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(std::string_view source,
                                                             std::string bos_token,
                                                             std::string eos_token,
                                                             Options options);

  // Reads chat_template (a string, or the list-of-named-templates form: take "default"),
  // bos_token and eos_token (string or {"content": ...} form) from a tokenizer_config.json.
  // When the file has no chat_template, a chat_template.jinja beside it (where newer Hugging
  // Face checkpoints keep it) is used. NOT_FOUND when there is neither (or no file);
  // INVALID_ARGUMENT for malformed JSON or a template that does not parse.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> FromTokenizerConfig(const std::string& path);
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> FromTokenizerConfig(const std::string& path,
                                                                           Options options);

  // Renders the conversation; add_generation_prompt appends the assistant header.
  // INVALID_ARGUMENT for raise_exception in the template (the status message is the template's
  // own message, e.g. "Conversation roles must alternate user/assistant/...") or a runtime
  // error ("chat template error at line L, column C: ..."); RESOURCE_EXHAUSTED when rendering
  // runs past its bounds (64 MiB of output, 10 million evaluation steps, 64 nested macro calls).
  absl::StatusOr<std::string> Apply(std::span<const ChatMessage> messages,
                                    bool add_generation_prompt) const;

  // The general form, for OpenAI-style requests: `messages` is a JSON array of message
  // objects passed to the template as they are (content as a list of parts, tool_calls, name,
  // reasoning_content...), and `extra_variables` a JSON object of further template variables
  // (tools, documents, enable_thinking, ...: what vLLM calls chat_template_kwargs; they may
  // override bos_token and eos_token). INVALID_ARGUMENT when messages is not an array of
  // objects, extra_variables is neither null nor an object, or it names messages or
  // add_generation_prompt; otherwise as Apply.
  absl::StatusOr<std::string> ApplyJson(const nlohmann::ordered_json& messages,
                                        bool add_generation_prompt,
                                        const nlohmann::ordered_json& extra_variables) const;

  // The tokens as given or read ("" when the config has none, as Qwen3's has no BOS).
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  // The template text as given.
  const std::string& source() const;

  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&) = delete;
  ChatTemplate& operator=(const ChatTemplate&) = delete;

 private:
  struct Program;
  explicit ChatTemplate(std::unique_ptr<const Program> program);
  // An absent token leaves the template variable undefined, as transformers does.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(std::string_view source,
                                                              std::optional<std::string> bos,
                                                              std::optional<std::string> eos,
                                                              Options options);

  std::unique_ptr<const Program> program_;
};

}  // namespace kvc::chat

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_CHAT_TEMPLATE_H_
