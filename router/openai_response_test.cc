#include "router/openai_response.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/tokenizer/unicode.h"

namespace kvc::router::openai {
namespace {

namespace pb = ::kvcluster::v1;
using Json = nlohmann::json;
using ::testing::HasSubstr;

constexpr uint32_t kEos = 256;

// Byte b is token b; "<eos>" (special) is 256.
std::unique_ptr<Tokenizer> ByteTokenizer() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) {
    vocab[std::string(tokenizer_internal::ByteLevelAlphabet::Encode(static_cast<uint8_t>(b)))] = b;
  }
  const Json json = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", kEos},
         {"content", "<eos>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}}};
  auto tokenizer = Tokenizer::FromJson(json.dump(), "", "bytes");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

pb::GenerateResponse Chunk(const std::string& text, std::vector<uint32_t> ids,
                           std::vector<float> logprobs = {}) {
  pb::GenerateResponse message;
  message.mutable_chunk()->set_text(text);
  for (uint32_t id : ids) message.mutable_chunk()->add_token_ids(id);
  for (float lp : logprobs) message.mutable_chunk()->add_logprobs(lp);
  return message;
}

pb::GenerateResponse WithResult(pb::GenerateResponse message, pb::FinishReason reason,
                                const std::string& stop_reason, uint32_t prompt, uint32_t cached,
                                uint32_t completion) {
  pb::GenerateResult* result = message.mutable_result();
  result->set_finish_reason(reason);
  result->set_stop_reason(stop_reason);
  result->mutable_usage()->set_prompt_tokens(prompt);
  result->mutable_usage()->set_cached_prompt_tokens(cached);
  result->mutable_usage()->set_completion_tokens(completion);
  return message;
}

// The JSON objects of an SSE stream; *done is set when it ends with [DONE].
std::vector<Json> Events(const std::string& stream, bool* done) {
  std::vector<Json> events;
  *done = false;
  for (absl::string_view event : absl::StrSplit(stream, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::ConsumePrefix(&event, "data: ")) << event;
    EXPECT_FALSE(*done) << "an event after [DONE]";
    if (event == "[DONE]") {
      *done = true;
      continue;
    }
    events.push_back(Json::parse(event));
  }
  return events;
}

ResponseOptions Options(Endpoint endpoint, const Tokenizer* tokenizer, bool usage = false,
                        bool logprobs = false) {
  return ResponseOptions{.endpoint = endpoint,
                         .id = "id-1",
                         .model = "m",
                         .created = 1700000000,
                         .include_usage = usage,
                         .logprobs = logprobs,
                         .tokenizer = tokenizer};
}

TEST(OpenAiResponseTest, CompletionStreamAndBodyAgree) {
  const auto tokenizer = ByteTokenizer();
  const std::vector<pb::GenerateResponse> messages = {
      Chunk("ab", {'a', 'b'}), Chunk("c", {'c'}),
      WithResult(Chunk("d<eos>", {'d', kEos}), pb::FINISH_REASON_STOP, "256", 10, 4, 4)};
  ResponseBuilder stream(Options(Endpoint::kCompletions, tokenizer.get(), /*usage=*/true));
  ResponseBuilder whole(Options(Endpoint::kCompletions, tokenizer.get()));
  std::string sse;
  for (const auto& message : messages) {
    std::optional<ApiError> error;
    sse += stream.StreamEvents(message, &error);
    EXPECT_FALSE(error.has_value());
    whole.Add(message, &error);
    EXPECT_FALSE(error.has_value());
  }
  EXPECT_TRUE(stream.finished());
  sse += stream.StreamDone();
  bool done = false;
  const std::vector<Json> events = Events(sse, &done);
  EXPECT_TRUE(done);
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i]["id"], "id-1");
    EXPECT_EQ(events[i]["object"], "text_completion");
    EXPECT_TRUE(events[i]["usage"].is_null());
    text += events[i]["choices"][0]["text"].get<std::string>();
    if (!events[i]["choices"][0]["finish_reason"].is_null()) {
      finish = events[i]["choices"][0]["finish_reason"];
    }
  }
  EXPECT_EQ(text, "abcd");  // the end-of-sequence token is not text
  EXPECT_EQ(finish, "stop");
  const Json& last = events.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(last["usage"]["completion_tokens"], 4);
  EXPECT_EQ(last["usage"]["total_tokens"], 14);
  EXPECT_EQ(last["usage"]["prompt_tokens_details"]["cached_tokens"], 4);

  const Json body = Json::parse(whole.Body());
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], "abcd");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(body["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(body["usage"], last["usage"]);
}

TEST(OpenAiResponseTest, StopStringsAndLengthKeepTheText) {
  const auto tokenizer = ByteTokenizer();
  // A stop string ended it: stop_reason is the string, nothing is cut here.
  ResponseBuilder stop(Options(Endpoint::kCompletions, tokenizer.get()));
  std::optional<ApiError> error;
  stop.Add(WithResult(Chunk("xy", {'x', 'y', 'z'}), pb::FINISH_REASON_STOP, "z", 1, 0, 3), &error);
  EXPECT_EQ(Json::parse(stop.Body())["choices"][0]["text"], "xy");
  ResponseBuilder length(Options(Endpoint::kCompletions, tokenizer.get()));
  length.Add(WithResult(Chunk("<eos>", {kEos}), pb::FINISH_REASON_LENGTH, "", 1, 0, 1), &error);
  EXPECT_EQ(Json::parse(length.Body())["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(Json::parse(length.Body())["choices"][0]["text"], "<eos>");
}

TEST(OpenAiResponseTest, ChatStreamOpensWithTheRole) {
  ResponseBuilder stream(Options(Endpoint::kChatCompletions, nullptr));
  std::optional<ApiError> error;
  std::string sse = stream.StreamEvents(Chunk("Hel", {1, 2}), &error);
  sse += stream.StreamEvents(WithResult(Chunk("lo", {3}), pb::FINISH_REASON_LENGTH, "", 5, 0, 3),
                             &error);
  sse += stream.StreamDone();
  bool done = false;
  const std::vector<Json> events = Events(sse, &done);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  for (const Json& event : events) {
    EXPECT_FALSE(event.contains("usage"));  // not asked for
    const Json& delta = event["choices"][0]["delta"];
    if (delta.contains("content")) content += delta["content"].get<std::string>();
  }
  EXPECT_EQ(content, "Hello");
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(done);

  ResponseBuilder whole(Options(Endpoint::kChatCompletions, nullptr));
  whole.Add(Chunk("Hel", {1, 2}), &error);
  whole.Add(WithResult(Chunk("lo", {3}), pb::FINISH_REASON_LENGTH, "", 5, 0, 3), &error);
  const Json body = Json::parse(whole.Body());
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(body["usage"]["total_tokens"], 8);
}

TEST(OpenAiResponseTest, Logprobs) {
  const auto tokenizer = ByteTokenizer();
  ResponseBuilder completion(Options(Endpoint::kCompletions, tokenizer.get(), false, true));
  std::optional<ApiError> error;
  completion.Add(Chunk("ab", {'a', 'b'}, {-0.5f, -1.5f}), &error);
  completion.Add(WithResult(Chunk("c", {'c'}, {-2.0f}), pb::FINISH_REASON_LENGTH, "", 1, 0, 3),
                 &error);
  const Json logprobs = Json::parse(completion.Body())["choices"][0]["logprobs"];
  EXPECT_EQ(logprobs["tokens"], Json::array({"a", "b", "c"}));
  EXPECT_EQ(logprobs["token_logprobs"], Json::array({-0.5, -1.5, -2.0}));
  EXPECT_EQ(logprobs["text_offset"], Json::array({0, 1, 2}));
  EXPECT_EQ(logprobs["top_logprobs"].size(), 3u);

  ResponseBuilder chat(Options(Endpoint::kChatCompletions, tokenizer.get(), false, true));
  chat.Add(WithResult(Chunk("a", {'a'}, {-0.25f}), pb::FINISH_REASON_LENGTH, "", 1, 0, 1), &error);
  const Json content = Json::parse(chat.Body())["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0]["token"], "a");
  EXPECT_EQ(content[0]["logprob"], -0.25);
  EXPECT_EQ(content[0]["bytes"], Json::array({97}));
}

TEST(OpenAiResponseTest, CancelledByTheWorkerIsAnError) {
  ResponseBuilder builder(Options(Endpoint::kCompletions, nullptr));
  std::optional<ApiError> error;
  builder.Add(WithResult(Chunk("", {}), pb::FINISH_REASON_CANCELLED, "", 1, 0, 0), &error);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->http_status, 503);
  bool done = false;
  const std::vector<Json> events = Events(ResponseBuilder::StreamError(*error), &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0]["error"]["message"].get<std::string>(), HasSubstr("cancelled"));
}

TEST(OpenAiResponseTest, IdsDiffer) {
  EXPECT_NE(NewResponseId(Endpoint::kCompletions), NewResponseId(Endpoint::kCompletions));
  EXPECT_EQ(NewResponseId(Endpoint::kChatCompletions).rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(NewResponseId(Endpoint::kCompletions).size(), 5u + 24u);
}

}  // namespace
}  // namespace kvc::router::openai
