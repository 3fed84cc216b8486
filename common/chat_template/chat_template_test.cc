// ChatTemplate through its public interface: the real Llama-3 and Qwen3 templates from
// tokenizer_config.json (scripts/fetch-tokenizers; skipped, saying why, when absent) against
// prompts written out by hand from each template's source, reading tokenizer_config.json in its
// several shapes, the clock seam of strftime_now, and concurrent rendering.
#include "common/chat_template/chat_template.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc::chat {
namespace {

using ::testing::HasSubstr;

constexpr char kLlama3Config[] = ".cache/tokenizers/llama3/tokenizer_config.json";
constexpr char kQwen3Config[] = ".cache/tokenizers/qwen3/tokenizer_config.json";

std::unique_ptr<ChatTemplate> Load(const std::string& path) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> loaded = ChatTemplate::FromTokenizerConfig(path);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? *std::move(loaded) : nullptr;
}

std::string MustApply(const ChatTemplate& chat_template, const std::vector<ChatMessage>& messages,
                      bool add_generation_prompt) {
  absl::StatusOr<std::string> prompt = chat_template.Apply(messages, add_generation_prompt);
  EXPECT_TRUE(prompt.ok()) << prompt.status();
  return prompt.ok() ? *prompt : "";
}

// This Llama-3 template (Meta-Llama-3-8B-Instruct's first release) trims every message, puts
// BOS before the first, and appends the assistant header whatever add_generation_prompt says.
TEST(ChatTemplateLlama3, RendersConversations) {
  if (!std::filesystem::exists(kLlama3Config)) {
    GTEST_SKIP() << "no " << kLlama3Config << " (run scripts/fetch-tokenizers)";
  }
  std::unique_ptr<ChatTemplate> llama = Load(kLlama3Config);
  ASSERT_NE(llama, nullptr);
  EXPECT_EQ(llama->bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(llama->eos_token(), "<|end_of_text|>");

  const std::string header_end = "<|end_header_id|>\n\n";
  const std::string assistant_header = "<|start_header_id|>assistant" + header_end;
  const std::string single = "<|begin_of_text|><|start_header_id|>user" + header_end +
                             "Hello<|eot_id|>" + assistant_header;
  EXPECT_EQ(MustApply(*llama, {{"user", "Hello"}}, true), single);
  EXPECT_EQ(MustApply(*llama, {{"user", "Hello"}}, false), single);

  EXPECT_EQ(MustApply(*llama, {{"system", "  Be brief.\n"}, {"user", " Hi \n"}}, true),
            "<|begin_of_text|><|start_header_id|>system" + header_end +
                "Be brief.<|eot_id|><|start_header_id|>user" + header_end + "Hi<|eot_id|>" +
                assistant_header);

  EXPECT_EQ(MustApply(*llama,
                      {{"system", "S"}, {"user", "q1"}, {"assistant", "a1"}, {"user", "q2"}}, true),
            "<|begin_of_text|><|start_header_id|>system" + header_end +
                "S<|eot_id|><|start_header_id|>user" + header_end +
                "q1<|eot_id|><|start_header_id|>assistant" + header_end +
                "a1<|eot_id|><|start_header_id|>user" + header_end + "q2<|eot_id|>" +
                assistant_header);

  // Message text is data, never template source.
  EXPECT_EQ(MustApply(*llama, {{"user", "{{ x }} {% if %} {# no #}"}}, false),
            "<|begin_of_text|><|start_header_id|>user" + header_end +
                "{{ x }} {% if %} {# no #}<|eot_id|>" + assistant_header);

  EXPECT_EQ(MustApply(*llama, {}, true), assistant_header);
}

// Qwen3: ChatML turns; assistant turns after the last user query carry their reasoning in
// <think> tags, earlier ones lose it; enable_thinking=false pre-fills an empty think block.
TEST(ChatTemplateQwen3, RendersConversations) {
  if (!std::filesystem::exists(kQwen3Config)) {
    GTEST_SKIP() << "no " << kQwen3Config << " (run scripts/fetch-tokenizers)";
  }
  std::unique_ptr<ChatTemplate> qwen = Load(kQwen3Config);
  ASSERT_NE(qwen, nullptr);
  EXPECT_EQ(qwen->bos_token(), "");  // null in the config
  EXPECT_EQ(qwen->eos_token(), "<|im_end|>");

  EXPECT_EQ(MustApply(*qwen, {{"user", "Hello"}}, false), "<|im_start|>user\nHello<|im_end|>\n");
  EXPECT_EQ(MustApply(*qwen, {{"user", "Hello"}}, true),
            "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(MustApply(*qwen, {{"system", "Be brief."}, {"user", "Hi"}}, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");

  // The earlier assistant turn loses its reasoning.
  EXPECT_EQ(MustApply(*qwen,
                      {{"system", "S"},
                       {"user", "q1"},
                       {"assistant", "<think>\nr1\n</think>\n\na1"},
                       {"user", "q2"}},
                      true),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n"
            "<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\nq2<|im_end|>\n"
            "<|im_start|>assistant\n");

  // A final assistant turn keeps it, with an empty block when there was none.
  EXPECT_EQ(
      MustApply(*qwen, {{"user", "q"}, {"assistant", "<think>\nplan\n</think>\n\nanswer"}}, false),
      "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\nplan\n</think>\n\n"
      "answer<|im_end|>\n");
  EXPECT_EQ(MustApply(*qwen, {{"user", "q"}, {"assistant", "a"}}, false),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
            "a<|im_end|>\n");

  EXPECT_EQ(MustApply(*qwen, {{"user", "{{ x }} {%- raw %}"}}, false),
            "<|im_start|>user\n{{ x }} {%- raw %}<|im_end|>\n");

  // enable_thinking=false, as vLLM's chat_template_kwargs passes it.
  absl::StatusOr<std::string> no_thinking =
      qwen->ApplyJson(nlohmann::ordered_json::parse(R"([{"role": "user", "content": "Hi"}])"), true,
                      nlohmann::ordered_json::parse(R"({"enable_thinking": false})"));
  ASSERT_TRUE(no_thinking.ok()) << no_thinking.status();
  EXPECT_EQ(*no_thinking,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");

  // A conversation needs a first message: the template reads messages[0].role.
  absl::StatusOr<std::string> empty = qwen->Apply({}, true);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("list object has no element 0"));
}

TEST(ChatTemplateQwen3, RendersToolsAndToolCalls) {
  if (!std::filesystem::exists(kQwen3Config)) {
    GTEST_SKIP() << "no " << kQwen3Config << " (run scripts/fetch-tokenizers)";
  }
  std::unique_ptr<ChatTemplate> qwen = Load(kQwen3Config);
  ASSERT_NE(qwen, nullptr);
  const auto messages = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "S"},
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": "",
       "tool_calls": [{"type": "function",
                       "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
      {"role": "tool", "content": "rain"},
      {"role": "tool", "content": "cold"}])");
  const auto extra = nlohmann::ordered_json::parse(R"({"tools": [{"type": "function",
      "function": {"name": "get_weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}}}}}]})");
  absl::StatusOr<std::string> prompt = qwen->ApplyJson(messages, true, extra);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt,
            "<|im_start|>system\nS\n\n# Tools\n\nYou may call one or more functions to assist "
            "with the user query.\n\nYou are provided with function signatures within "
            "<tools></tools> XML tags:\n<tools>\n"
            R"({"type": "function", "function": {"name": "get_weather", "parameters": )"
            R"({"type": "object", "properties": {"city": {"type": "string"}}}}})"
            "\n</tools>\n\nFor each function call, return a json object with function name and "
            "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
            R"({"name": <function-name>, "arguments": <args-json-object>})"
            "\n</tool_call><|im_end|>\n"
            "<|im_start|>user\nweather?<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n"
            R"({"name": "get_weather", "arguments": {"city": "Oslo"}})"
            "\n</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\nrain\n</tool_response>\n<tool_response>\ncold\n"
            "</tool_response><|im_end|>\n<|im_start|>assistant\n");
}

class ConfigDir {
 public:
  ConfigDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("chat_template_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    std::filesystem::create_directories(path_);
  }
  ~ConfigDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& contents) const {
    std::ofstream(path_ / name, std::ios::binary) << contents;
    return (path_ / name).string();
  }
  std::string config() const { return (path_ / "tokenizer_config.json").string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

TEST(ChatTemplateFromConfig, ReadsStringTemplateAndAddedTokenForm) {
  ConfigDir dir;
  dir.Write("tokenizer_config.json", R"({
      "bos_token": {"__type": "AddedToken", "content": "<B>", "lstrip": false},
      "eos_token": "<E>",
      "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}{{ eos_token }}"})");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> loaded =
      ChatTemplate::FromTokenizerConfig(dir.config());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->bos_token(), "<B>");
  EXPECT_EQ(MustApply(**loaded, {{"user", "hi"}}, false), "<B>[user:hi]<E>");
}

TEST(ChatTemplateFromConfig, TakesTheDefaultOfNamedTemplates) {
  ConfigDir dir;
  dir.Write("tokenizer_config.json", R"({"chat_template": [
      {"name": "tool_use", "template": "tools"},
      {"name": "default", "template": "plain {{ messages | length }}"}]})");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> loaded =
      ChatTemplate::FromTokenizerConfig(dir.config());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(MustApply(**loaded, {{"user", "a"}, {"user", "b"}}, false), "plain 2");
}

TEST(ChatTemplateFromConfig, AbsentTokensAreUndefinedInTheTemplate) {
  ConfigDir dir;
  dir.Write(
      "tokenizer_config.json",
      R"({"bos_token": null, "chat_template": "{{ bos_token is defined }}|{{ eos_token is defined }}"})");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> loaded =
      ChatTemplate::FromTokenizerConfig(dir.config());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(MustApply(**loaded, {}, false), "False|False");
}

TEST(ChatTemplateFromConfig, FallsBackToChatTemplateJinjaBesideIt) {
  ConfigDir dir;
  dir.Write("tokenizer_config.json", R"({"eos_token": "<E>"})");
  dir.Write("chat_template.jinja",
            "{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}\n");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> loaded =
      ChatTemplate::FromTokenizerConfig(dir.config());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(MustApply(**loaded, {{"user", "x"}}, false), "x<E>");
}

TEST(ChatTemplateFromConfig, Errors) {
  ConfigDir dir;
  dir.Write("tokenizer_config.json", R"({"eos_token": "<E>"})");
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig(dir.config()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig(dir.Write("missing_default.json",
                                                        R"({"chat_template": [
      {"name": "rag", "template": "x"}]})"))
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig(dir.Write("none.json", "")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig(dir.Write("bad.json", "{\"chat_template\": "))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig(dir.Write("number.json", R"({"chat_template": 3})"))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig(dir.Write("no_such_dir/x.json", "")).status().code(),
            absl::StatusCode::kNotFound);
  absl::Status syntax = ChatTemplate::FromTokenizerConfig(
                            dir.Write("syntax.json", R"({"chat_template": "ok\n{% if %}"})"))
                            .status();
  EXPECT_EQ(syntax.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(syntax.message(), HasSubstr("syntax.json: chat_template: template syntax error at "
                                          "line 2, column 7"));
}

// Llama-3.1 style: the system turn states today's date through strftime_now.
TEST(ChatTemplate, StrftimeNowReadsTheInjectedClock) {
  constexpr char kSource[] =
      "{{- bos_token }}{%- set date_string = strftime_now('%d %b %Y') %}"
      "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
      "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
      "{{- 'Today Date: ' + date_string + '\\n\\n<|eot_id|>' }}";
  ChatTemplate::Options options;
  // Noon UTC, so that the local date is the same in every time zone from UTC-11 to UTC+11.
  options.clock = [] {
    return std::chrono::system_clock::from_time_t(1721995200);  // 2024-07-26 12:00:00 UTC
  };
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed =
      ChatTemplate::Parse(kSource, "<|begin_of_text|>", "<|eot_id|>", options);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(MustApply(**parsed, {{"user", "hi"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>");
}

TEST(ChatTemplate, RaiseExceptionGivesItsMessage) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed = ChatTemplate::Parse(
      "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
      "{% endif %}{{ m.content }}{% endfor %}",
      "", "");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(MustApply(**parsed, {{"user", "a"}, {"assistant", "b"}}, false), "ab");
  absl::StatusOr<std::string> refused =
      (*parsed)->Apply(std::vector<ChatMessage>{{"user", "a"}, {"user", "b"}}, false);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.status().message(),
            "Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplate, ApplyJsonChecksItsArguments) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed =
      ChatTemplate::Parse("{{ messages[0].content[1].text }}|{{ flag }}", "", "");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto parts = nlohmann::ordered_json::parse(
      R"([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "T"}]}])");
  absl::StatusOr<std::string> rendered =
      (*parsed)->ApplyJson(parts, false, nlohmann::ordered_json::parse(R"({"flag": [1, 2.5]})"));
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(*rendered, "T|[1, 2.5]");

  const auto object = nlohmann::ordered_json::object();
  EXPECT_EQ((*parsed)->ApplyJson(object, false, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      (*parsed)->ApplyJson(nlohmann::ordered_json::parse("[1]"), false, nullptr).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*parsed)->ApplyJson(parts, false, nlohmann::ordered_json::parse("[]")).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status reserved =
      (*parsed)
          ->ApplyJson(parts, false, nlohmann::ordered_json::parse(R"({"messages": []})"))
          .status();
  EXPECT_EQ(reserved.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reserved.message(), HasSubstr("'messages' is reserved"));
}

TEST(ChatTemplate, RendersConcurrently) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed = ChatTemplate::Parse(
      "{%- set ns = namespace(count=0) %}{%- for m in messages %}{%- set ns.count = ns.count + 1 %}"
      "<{{ m.role }}>{{ m.content | trim }}{%- endfor %}#{{ ns.count }}",
      "", "");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  constexpr int kThreads = 8;
  std::vector<std::string> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<ChatMessage> messages;
      for (int i = 0; i <= t; ++i) messages.push_back({"user", " m" + std::to_string(i) + " "});
      for (int round = 0; round < 200; ++round) {
        absl::StatusOr<std::string> prompt = (*parsed)->Apply(messages, false);
        const std::string text = prompt.ok() ? *prompt : prompt.status().ToString();
        if (round > 0 && text != results[t]) results[t] = "changed: " + text;
        if (round == 0) results[t] = text;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    std::string expected;
    for (int i = 0; i <= t; ++i) expected += "<user>m" + std::to_string(i);
    EXPECT_EQ(results[t], expected + "#" + std::to_string(t + 1));
  }
}

}  // namespace
}  // namespace kvc::chat
