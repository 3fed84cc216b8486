#include "router/openai_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kvc::router::openai {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Request Parse(const std::string& body, Endpoint endpoint = Endpoint::kCompletions) {
  Request request;
  ApiError error;
  EXPECT_TRUE(ParseRequest(body, endpoint, &request, &error)) << error.message;
  return request;
}

ApiError Error(const std::string& body, Endpoint endpoint = Endpoint::kCompletions) {
  Request request;
  ApiError error;
  EXPECT_FALSE(ParseRequest(body, endpoint, &request, &error)) << body;
  return error;
}

TEST(OpenAiRequestTest, CompletionsDefaultsAndFields) {
  Request r = Parse(R"({"model": "m", "prompt": "hi"})");
  EXPECT_EQ(r.model, "m");
  ASSERT_TRUE(r.prompt_text.has_value());
  EXPECT_EQ(*r.prompt_text, "hi");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FLOAT_EQ(r.temperature, 1.0f);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.logprobs);

  r = Parse(R"({"model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0, "top_p": 0.5,
                "top_k": 20, "seed": -3, "stop": ["a", "b"], "stream": true,
                "stream_options": {"include_usage": true}, "logprobs": 0, "user": "u",
                "ignore_eos": true, "cache_salt": "s", "n": 1, "echo": false,
                "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {},
                "best_of": 1, "suffix": null})");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(r.top_k, 20);
  EXPECT_EQ(r.seed, static_cast<uint64_t>(-3));
  EXPECT_THAT(r.stop, ElementsAre("a", "b"));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.logprobs);
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.cache_salt, "s");
  EXPECT_EQ(r.user, "u");

  // top_k -1 means off; an integral float is an integer; null is "not given".
  r = Parse(R"({"model": "m", "prompt": "x", "top_k": -1, "max_tokens": 16.0, "stop": null})");
  EXPECT_EQ(r.top_k, 0);
  EXPECT_EQ(r.max_tokens, 16);
  EXPECT_TRUE(r.stop.empty());
}

TEST(OpenAiRequestTest, PromptShapes) {
  EXPECT_THAT(Parse(R"({"model": "m", "prompt": [1, 2, 3]})").prompt_ids, ElementsAre(1, 2, 3));
  EXPECT_THAT(Parse(R"({"model": "m", "prompt": [[4, 5]]})").prompt_ids, ElementsAre(4, 5));
  EXPECT_EQ(*Parse(R"({"model": "m", "prompt": ["text"]})").prompt_text, "text");
  EXPECT_EQ(Error(R"({"model": "m", "prompt": ["a", "b"]})").param, "prompt");
  EXPECT_EQ(Error(R"({"model": "m", "prompt": ""})").param, "prompt");
  EXPECT_EQ(Error(R"({"model": "m", "prompt": []})").param, "prompt");
  EXPECT_EQ(Error(R"({"model": "m", "prompt": [1, -2]})").param, "prompt[1]");
  EXPECT_EQ(Error(R"({"model": "m", "prompt": [1, 4294967296]})").param, "prompt[1]");
  EXPECT_EQ(Error(R"({"model": "m", "prompt": [1, "x"]})").code, "invalid_type");
  EXPECT_EQ(Error(R"({"model": "m", "prompt": 5})").code, "invalid_type");
}

TEST(OpenAiRequestTest, ChatMessages) {
  Request r = Parse(R"({"model": "m", "messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
       "name": "ann"},
      {"role": "assistant", "content": null, "tool_calls": []},
      {"role": "user", "content": "c"}],
      "max_tokens": 5, "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 0})",
                    Endpoint::kChatCompletions);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_TRUE(r.logprobs);

  const Endpoint chat = Endpoint::kChatCompletions;
  EXPECT_EQ(Error(R"({"model": "m", "messages": []})", chat).param, "messages");
  EXPECT_EQ(Error(R"({"model": "m", "messages": "hi"})", chat).code, "invalid_type");
  EXPECT_EQ(Error(R"({"model": "m", "messages": [{"content": "x"}]})", chat).param,
            "messages[0].role");
  EXPECT_EQ(Error(R"({"model": "m", "messages": [{"role": "tool", "content": "x"}]})", chat).param,
            "messages[0].role");
  EXPECT_EQ(Error(R"({"model": "m", "messages": [{"role": "user"}]})", chat).param,
            "messages[0].content");
  EXPECT_EQ(Error(R"({"model": "m", "messages": [{"role": "user", "content":
                      [{"type": "image_url", "image_url": {"url": "x"}}]}]})",
                  chat)
                .param,
            "messages[0].content[0].type");
  EXPECT_EQ(
      Error(R"({"model": "m", "messages": [{"role": "user", "content": "x", "v": 1}]})", chat).code,
      "unknown_parameter");
  EXPECT_EQ(Error(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                      "tools": [{"type": "function"}]})",
                  chat)
                .param,
            "tools");
  EXPECT_EQ(Error(R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
                      "top_logprobs": 2})",
                  chat)
                .param,
            "top_logprobs");
  // "prompt" is a completions field.
  EXPECT_EQ(Error(R"({"model": "m", "prompt": "x"})", chat).code, "unknown_parameter");
  EXPECT_EQ(Error(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})").code,
            "unknown_parameter");
}

TEST(OpenAiRequestTest, BadFieldsNameTheField) {
  struct Case {
    const char* body;
    const char* param;
    const char* code;
  };
  const Case cases[] = {
      {R"({"model": "m", "prompt": "x", "foo": 1})", "foo", "unknown_parameter"},
      {R"({"prompt": "x"})", "model", "missing_required_parameter"},
      {R"({"model": "m"})", "prompt", "missing_required_parameter"},
      {R"({"model": 3, "prompt": "x"})", "model", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "max_tokens": "10"})", "max_tokens", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 0})", "max_tokens", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 1.5})", "max_tokens", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "temperature": 2.5})", "temperature", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "temperature": "hot"})", "temperature", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "top_p": 0})", "top_p", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "top_p": 1.5})", "top_p", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "top_k": -2})", "top_k", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "n": 2})", "n", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "stream": "yes"})", "stream", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}})",
       "stream_options", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "stream": true, "stream_options": {"x": true}})",
       "stream_options.x", "unknown_parameter"},
      {R"({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop",
       "invalid_value"},
      {R"({"model": "m", "prompt": "x", "stop": [""]})", "stop", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "stop": [1]})", "stop[0]", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "logprobs": 2})", "logprobs", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "logprobs": true})", "logprobs", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "echo": true})", "echo", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "best_of": 2})", "best_of", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "presence_penalty": 0.5})", "presence_penalty",
       "invalid_value"},
      {R"({"model": "m", "prompt": "x", "logit_bias": {"1": 5}})", "logit_bias", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "suffix": "end"})", "suffix", "invalid_value"},
      {R"({"model": "m", "prompt": "x", "seed": "7"})", "seed", "invalid_type"},
      {R"({"model": "m", "prompt": "x", "user": 7})", "user", "invalid_type"},
  };
  for (const Case& c : cases) {
    const ApiError error = Error(c.body);
    EXPECT_EQ(error.http_status, 400) << c.body;
    EXPECT_EQ(error.type, "invalid_request_error") << c.body;
    EXPECT_EQ(error.param, c.param) << c.body;
    EXPECT_EQ(error.code, c.code) << c.body;
    EXPECT_FALSE(error.message.empty()) << c.body;
  }
}

TEST(OpenAiRequestTest, MalformedBodies) {
  for (const char* body : {"", "{", "[1, 2]", "\"text\"", "{\"model\": \"m\",}", "nul",
                           "{\"model\": \"\xff\xfe\", \"prompt\": \"x\"}"}) {
    const ApiError error = Error(body);
    EXPECT_EQ(error.http_status, 400) << body;
    EXPECT_FALSE(error.message.empty());
  }
  EXPECT_EQ(Error("{").code, "invalid_json");
  EXPECT_THAT(Error("{").message, HasSubstr("not valid JSON"));
}

TEST(OpenAiRequestTest, ErrorBodyHasOpenAisShape) {
  const nlohmann::json body = nlohmann::json::parse(
      ErrorBody({.http_status = 404, .message = "no such model", .param = "model", .code = "x"}));
  EXPECT_EQ(body["error"]["message"], "no such model");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "model");
  EXPECT_EQ(body["error"]["code"], "x");
  const nlohmann::json nulls = nlohmann::json::parse(ErrorBody({.message = "m"}));
  EXPECT_TRUE(nulls["error"]["param"].is_null());
  EXPECT_TRUE(nulls["error"]["code"].is_null());
}

// Seeds are any integer in [-2^63, 2^64), taken modulo 2^64: the whole uint64 range maps one
// to one (none is clamped onto another), a negative seed is its two's-complement pattern.
TEST(OpenAiRequestTest, SeedsKeepAll64Bits) {
  struct Case {
    const char* json;
    uint64_t seed;
  };
  const Case cases[] = {
      {"0", 0},
      {"9223372036854775807", 9223372036854775807ull},    // 2^63 - 1
      {"9223372036854775808", 9223372036854775808ull},    // 2^63
      {"9223372036854775809", 9223372036854775809ull},    // 2^63 + 1
      {"18446744073709551614", 18446744073709551614ull},  // 2^64 - 2
      {"18446744073709551615", 18446744073709551615ull},  // 2^64 - 1
      {"-1", 18446744073709551615ull},
      {"-9223372036854775808", 9223372036854775808ull},  // -2^63
      {"42.0", 42},
      {"1e19", 10000000000000000000ull},
      {"-2.0", 18446744073709551614ull},
  };
  for (const Case& c : cases) {
    const std::string body =
        std::string(R"({"model": "m", "prompt": "x", "seed": )") + c.json + "}";
    const Request r = Parse(body);
    ASSERT_TRUE(r.seed.has_value()) << body;
    EXPECT_EQ(*r.seed, c.seed) << body;
    EXPECT_EQ(ToGenerateRequest(r, nullptr, true, 1).sampling().seed(), c.seed) << body;
  }
  for (const char* seed : {"18446744073709551616", "1e20", "-9.3e18", "-1e19"}) {
    const ApiError error =
        Error(std::string(R"({"model": "m", "prompt": "x", "seed": )") + seed + "}");
    EXPECT_EQ(error.param, "seed") << seed;
    EXPECT_EQ(error.code, "invalid_value") << seed;
  }
  EXPECT_EQ(Error(R"({"model": "m", "prompt": "x", "seed": 1.5})").code, "invalid_type");
  // Other integer fields refuse what is past int64 instead of clamping it.
  EXPECT_EQ(Error(R"({"model": "m", "prompt": "x", "max_tokens": 9223372036854775808})").code,
            "invalid_value");
}

TEST(OpenAiRequestTest, StatusesMapToHttp) {
  EXPECT_EQ(ErrorFromStatus(absl::InvalidArgumentError("x")).http_status, 400);
  EXPECT_EQ(ErrorFromStatus(absl::FailedPreconditionError("x")).http_status, 400);
  EXPECT_EQ(ErrorFromStatus(absl::ResourceExhaustedError("x")).http_status, 413);
  // A worker's RESOURCE_EXHAUSTED, in its own words: the prompt's size is the request's fault
  // (413); a KV pool too small for prompt + max_tokens is the worker's capacity (503).
  const ApiError too_large = ErrorFromStatus(
      absl::ResourceExhaustedError("the prompt text has 9000000 bytes; the limit is 8388608"));
  EXPECT_EQ(too_large.http_status, 413);
  EXPECT_EQ(too_large.code, "request_too_large");
  const ApiError pool = ErrorFromStatus(
      absl::ResourceExhaustedError("the request needs 194 KV blocks and the whole pool has 128"));
  EXPECT_EQ(pool.http_status, 503);
  EXPECT_EQ(pool.type, "service_unavailable");
  EXPECT_EQ(pool.code, "insufficient_capacity");
  EXPECT_EQ(pool.message, "the request needs 194 KV blocks and the whole pool has 128");
  // The chat template's limits stay the request's.
  EXPECT_EQ(
      ErrorFromStatus(absl::ResourceExhaustedError("out of memory rendering the chat template"))
          .http_status,
      413);
  EXPECT_EQ(ErrorFromStatus(absl::UnavailableError("x")).http_status, 503);
  EXPECT_EQ(ErrorFromStatus(absl::CancelledError("x")).http_status, 503);
  EXPECT_EQ(ErrorFromStatus(absl::InternalError("x")).http_status, 500);
  EXPECT_EQ(ErrorFromStatus(absl::UnavailableError("no worker")).message, "no worker");
}

TEST(OpenAiRequestTest, GenerateRequestCarriesTheFields) {
  const Request r = Parse(R"({"model": "m", "prompt": [3, 4], "temperature": 0.5, "top_p": 0.9,
                              "top_k": 5, "seed": 11, "stop": "x", "logprobs": 0,
                              "ignore_eos": true, "cache_salt": "salt"})");
  kvcluster::v1::GenerateRequest g = ToGenerateRequest(r, nullptr, true, 12);
  EXPECT_THAT(g.token_ids().ids(), ElementsAre(3, 4));
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().top_k(), 5);
  EXPECT_EQ(g.sampling().seed(), 11u);
  EXPECT_EQ(g.sampling().max_tokens(), 12);
  EXPECT_THAT(g.sampling().stop(), ElementsAre("x"));
  EXPECT_TRUE(g.sampling().logprobs());
  EXPECT_TRUE(g.sampling().ignore_eos());
  EXPECT_EQ(g.cache_salt(), "salt");
  const std::string text = "rendered";
  g = ToGenerateRequest(r, &text, false, 3);
  EXPECT_EQ(g.text(), "rendered");
  EXPECT_FALSE(g.add_special_tokens());
  EXPECT_FALSE(ToGenerateRequest(Parse(R"({"model": "m", "prompt": "x"})"), &text, true, 1)
                   .sampling()
                   .has_seed());
}

}  // namespace
}  // namespace kvc::router::openai
