#include "common/chat_template/chat_template.h"

#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/ast.h"
#include "common/chat_template/evaluator.h"
#include "common/chat_template/lexer.h"
#include "common/chat_template/parser.h"
#include "common/chat_template/value.h"

namespace kvc::chat {

struct ChatTemplate::Program {
  std::string source;             // As given.
  std::string normalized_source;  // As lexed; error positions refer to it.
  internal::StmtList body;
  // Unset when the config has none: the template then sees the variable as undefined, as it
  // does under transformers.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::string bos_text;
  std::string eos_text;
  Options options;

  // `extra_variables` is null or a JSON object checked by the caller.
  absl::StatusOr<std::string> Render(internal::Value messages, bool add_generation_prompt,
                                     const nlohmann::ordered_json& extra_variables) const;
};

namespace {

using internal::Value;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return contents.str();
}

// A special token in tokenizer_config.json: a string, an AddedToken object {"content": ...},
// or null/absent.
absl::StatusOr<std::optional<std::string>> SpecialToken(const nlohmann::ordered_json& config,
                                                        const char* key, const std::string& path) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      return std::optional<std::string>(content->get<std::string>());
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": ", key, " must be a string or an object with a string \"content\""));
}

// The chat_template entry: a string, or [{"name": ..., "template": ...}, ...] of which
// "default" is the one that renders conversations.
absl::StatusOr<std::optional<std::string>> TemplateSource(const nlohmann::ordered_json& config,
                                                          const std::string& path) {
  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return std::optional<std::string>();
  if (it->is_string()) return std::optional<std::string>(it->get<std::string>());
  if (it->is_array()) {
    std::string names;
    for (const auto& entry : *it) {
      if (!entry.is_object()) continue;
      auto name = entry.find("name");
      auto source = entry.find("template");
      if (name == entry.end() || !name->is_string() || source == entry.end() ||
          !source->is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": each chat_template entry needs a string \"name\" and \"template\""));
      }
      if (name->get<std::string>() == "default") {
        return std::optional<std::string>(source->get<std::string>());
      }
      absl::StrAppend(&names, names.empty() ? "" : ", ", name->get<std::string>());
    }
    return absl::NotFoundError(absl::StrCat(path,
                                            ": chat_template has no template named "
                                            "\"default\" (it has: ",
                                            names, ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": chat_template must be a string or a list of named templates"));
}

struct ConfigParts {
  std::string source;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};

absl::StatusOr<ConfigParts> ReadConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  const nlohmann::ordered_json config =
      nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  absl::StatusOr<std::optional<std::string>> source = TemplateSource(config, path);
  if (!source.ok()) return source.status();
  ConfigParts parts;
  if (source->has_value()) {
    parts.source = **std::move(source);
  } else {
    const std::filesystem::path beside =
        std::filesystem::path(path).parent_path() / "chat_template.jinja";
    std::error_code error;
    if (!std::filesystem::exists(beside, error)) {
      return absl::NotFoundError(
          absl::StrCat(path, " has no chat_template (and there is no ", beside.string(), ")"));
    }
    absl::StatusOr<std::string> jinja = ReadFile(beside.string());
    if (!jinja.ok()) return jinja.status();
    parts.source = *std::move(jinja);
  }
  absl::StatusOr<std::optional<std::string>> bos = SpecialToken(config, "bos_token", path);
  if (!bos.ok()) return bos.status();
  absl::StatusOr<std::optional<std::string>> eos = SpecialToken(config, "eos_token", path);
  if (!eos.ok()) return eos.status();
  parts.bos_token = *std::move(bos);
  parts.eos_token = *std::move(eos);
  return parts;
}

}  // namespace

ChatTemplate::ChatTemplate(std::unique_ptr<const Program> program) : program_(std::move(program)) {}
ChatTemplate::~ChatTemplate() = default;

const std::string& ChatTemplate::bos_token() const { return program_->bos_text; }
const std::string& ChatTemplate::eos_token() const { return program_->eos_text; }
const std::string& ChatTemplate::source() const { return program_->source; }

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(std::string_view source,
                                                                  std::string bos_token,
                                                                  std::string eos_token) {
  return Parse(source, std::move(bos_token), std::move(eos_token), Options{});
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(std::string_view source,
                                                                  std::string bos_token,
                                                                  std::string eos_token,
                                                                  Options options) {
  return Create(source, std::move(bos_token), std::move(eos_token), std::move(options));
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(std::string_view source,
                                                                   std::optional<std::string> bos,
                                                                   std::optional<std::string> eos,
                                                                   Options options) {
  try {
    auto program = std::make_unique<Program>();
    program->source = std::string(source);
    program->normalized_source = internal::NormalizeSource(source);
    absl::StatusOr<std::vector<internal::Token>> tokens =
        internal::Tokenize(program->normalized_source);
    if (!tokens.ok()) return tokens.status();
    absl::StatusOr<internal::StmtList> body =
        internal::ParseTemplate(*tokens, program->normalized_source);
    if (!body.ok()) return body.status();
    program->body = *std::move(body);
    program->bos_text = bos.value_or("");
    program->eos_text = eos.value_or("");
    program->bos_token = std::move(bos);
    program->eos_token = std::move(eos);
    if (!options.clock) options.clock = [] { return std::chrono::system_clock::now(); };
    program->options = std::move(options);
    return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(program)));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory parsing the chat template");
  }
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromTokenizerConfig(
    const std::string& path) {
  return FromTokenizerConfig(path, Options{});
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::FromTokenizerConfig(
    const std::string& path, Options options) {
  absl::StatusOr<ConfigParts> parts = ReadConfig(path);
  if (!parts.ok()) return parts.status();
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed = Create(
      parts->source, std::move(parts->bos_token), std::move(parts->eos_token), std::move(options));
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(path, ": chat_template: ", parsed.status().message()));
  }
  return parsed;
}

absl::StatusOr<std::string> ChatTemplate::Apply(std::span<const ChatMessage> messages,
                                                bool add_generation_prompt) const {
  std::vector<Value> list;
  list.reserve(messages.size());
  for (const ChatMessage& message : messages) {
    list.push_back(Value::MakeDict({{Value::String("role"), Value::String(message.role)},
                                    {Value::String("content"), Value::String(message.content)}}));
  }
  return program_->Render(Value::MakeList(std::move(list)), add_generation_prompt, nullptr);
}

absl::StatusOr<std::string> ChatTemplate::ApplyJson(
    const nlohmann::ordered_json& messages, bool add_generation_prompt,
    const nlohmann::ordered_json& extra_variables) const {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  for (const auto& message : messages) {
    if (!message.is_object()) {
      return absl::InvalidArgumentError("each message must be a JSON object");
    }
  }
  if (!extra_variables.is_null() && !extra_variables.is_object()) {
    return absl::InvalidArgumentError("extra template variables must be a JSON object");
  }
  return program_->Render(internal::FromJson(messages), add_generation_prompt, extra_variables);
}

absl::StatusOr<std::string> ChatTemplate::Program::Render(
    Value messages, bool add_generation_prompt,
    const nlohmann::ordered_json& extra_variables) const {
  try {
    internal::Scope root(nullptr);
    if (bos_token) root.Set("bos_token", Value::String(*bos_token));
    if (eos_token) root.Set("eos_token", Value::String(*eos_token));
    if (extra_variables.is_object()) {
      for (const auto& [name, value] : extra_variables.items()) {
        if (name == "messages" || name == "add_generation_prompt") {
          return absl::InvalidArgumentError(
              absl::StrCat("extra template variable '", name, "' is reserved"));
        }
        root.Set(name, internal::FromJson(value));
      }
    }
    root.Set("messages", std::move(messages));
    root.Set("add_generation_prompt", Value::Bool(add_generation_prompt));
    internal::Evaluator evaluator(normalized_source, options.clock);
    return evaluator.Render(body, &root);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory rendering the chat template");
  } catch (const std::exception& error) {
    return absl::InternalError(absl::StrCat("chat template: ", error.what()));
  }
}

}  // namespace kvc::chat
