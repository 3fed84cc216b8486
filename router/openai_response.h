// The OpenAI-compatible API's responses: turns a worker's Generate stream (chunks, then the
// result with usage) into OpenAI's JSON, either as server-sent events ("data: {json}\n\n"
// chunks ending with "data: [DONE]") or as one body at the end.
//
// Generated text is the workers' (stop strings already cut); an end-of-sequence token that
// ended generation is left out of the text, as OpenAI's servers do (its log-probability and
// its count in completion_tokens stay).
//
// Thread-safety: a ResponseBuilder is not thread-safe; one per request, used by one thread at
// a time.
#ifndef KVCLUSTER_ROUTER_OPENAI_RESPONSE_H_
#define KVCLUSTER_ROUTER_OPENAI_RESPONSE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "kvcluster/v1/kvcluster.pb.h"
#include "router/openai_request.h"

namespace kvc::router::openai {

// A fresh response id: "cmpl-" or "chatcmpl-" and 24 random letters and digits.
std::string NewResponseId(Endpoint endpoint);

struct ResponseOptions {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;
  std::string model;
  int64_t created = 0;  // unix seconds
  bool include_usage = false;
  bool logprobs = false;
  // Spells tokens for logprobs and recognises the end-of-sequence token; may be null (then
  // tokens are spelled "token_id:N").
  const Tokenizer* tokenizer = nullptr;
};

// One generated token's log-probability, as the responses list them.
struct TokenLogprob {
  std::string token;  // the token's bytes (possibly part of a UTF-8 character)
  float logprob = 0;
  size_t text_offset = 0;  // bytes of completion text before it
};

class ResponseBuilder {
 public:
  explicit ResponseBuilder(ResponseOptions options);

  // Streaming: the events for one worker message ("" when it carries nothing to send).
  // Sets *error instead when the message ends the request without a usable result.
  std::string StreamEvents(const kvcluster::v1::GenerateResponse& message,
                           std::optional<ApiError>* error);
  // The events after the last message: the usage chunk when asked for, then [DONE].
  std::string StreamDone() const;
  // An error after the stream began: one event holding the error object, then [DONE].
  static std::string StreamError(const ApiError& error);

  // Whole response: adds one worker message. Sets *error as StreamEvents does.
  void Add(const kvcluster::v1::GenerateResponse& message, std::optional<ApiError>* error);
  // The response body once the result was added.
  std::string Body() const;

  // True once the worker's result arrived.
  bool finished() const { return finish_reason_ != nullptr; }

 private:
  // Folds one message in: returns its text, appends its log-probabilities to *logprobs.
  std::string Consume(const kvcluster::v1::GenerateResponse& message,
                      std::vector<TokenLogprob>* logprobs, std::optional<ApiError>* error);
  std::string TokenText(uint32_t id) const;
  std::string Chunk(const std::string& text, const std::vector<TokenLogprob>& logprobs,
                    const char* finish_reason, bool with_role) const;

  const ResponseOptions options_;
  std::string text_;  // the whole text so far
  std::vector<TokenLogprob> logprobs_;
  size_t text_offset_ = 0;
  bool role_sent_ = false;
  const char* finish_reason_ = nullptr;
  kvcluster::v1::Usage usage_;
};

}  // namespace kvc::router::openai

#endif  // KVCLUSTER_ROUTER_OPENAI_RESPONSE_H_
