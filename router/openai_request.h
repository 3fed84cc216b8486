// The OpenAI-compatible API's requests: parsing and validating the JSON bodies of
// /v1/completions and /v1/chat/completions.
// Pure functions with no server, no router and no I/O, so that every field's rules are tested
// on their own.
//
// Thread-safety: stateless; every function may be called from any thread.
#ifndef KVCLUSTER_ROUTER_OPENAI_REQUEST_H_
#define KVCLUSTER_ROUTER_OPENAI_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvcluster/v1/kvcluster.pb.h"
#include "router/openai_error.h"

namespace kvc::router::openai {

enum class Endpoint { kCompletions, kChatCompletions };

// One chat message, as the chat template takes it (system, user or assistant; "developer"
// is read as system).
struct Message {
  std::string role;
  std::string content;
};

struct Request {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  // Completions: the prompt as text, or as token ids when the client sent ids.
  std::optional<std::string> prompt_text;
  std::vector<uint32_t> prompt_ids;
  // Chat completions.
  std::vector<Message> messages;

  // Absent: completions default to 16 tokens (as OpenAI does), chat to the rest of the
  // context or of the worker's KV pool, whichever is smaller (OpenAiApi decides; a router
  // without a tokenizer refuses chat without it).
  std::optional<int32_t> max_tokens;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;  // 0: off
  // Any integer in [-2^63, 2^64) as its 64-bit pattern (modulo 2^64): -1 is 2^64 - 1.
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Log-probabilities of the chosen tokens (completions: logprobs=0; chat: logprobs=true).
  bool logprobs = false;
  bool ignore_eos = false;  // extension: generate max_tokens tokens whatever the model says
  std::string cache_salt;   // extension: requests with different salts never share KV blocks
  std::string user;
};

// Parses and checks a request body for `endpoint`. On failure returns false with *error set
// (400 for malformed JSON, unknown fields, wrong types and values out of range or not
// supported, naming the field in param).
bool ParseRequest(std::string_view body, Endpoint endpoint, Request* request, ApiError* error);

// The Generate request for a parsed request whose prompt is `prompt_text` (chat: the
// template's output; completions: the client's text) or, when prompt_text is null, the
// client's token ids. `max_tokens` is the final budget.
kvcluster::v1::GenerateRequest ToGenerateRequest(const Request& request,
                                                 const std::string* prompt_text,
                                                 bool add_special_tokens, int32_t max_tokens);

// Completions' max_tokens when the request has none.
inline constexpr int32_t kDefaultCompletionMaxTokens = 16;

}  // namespace kvc::router::openai

#endif  // KVCLUSTER_ROUTER_OPENAI_REQUEST_H_
