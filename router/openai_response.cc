#include "router/openai_response.h"

#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kvc::router::openai {

namespace pb = ::kvcluster::v1;
using Json = nlohmann::ordered_json;

namespace {

std::string Dump(const Json& json) {
  // Token texts may hold part of a UTF-8 character: replaced, never thrown on.
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string Event(const Json& json) { return absl::StrCat("data: ", Dump(json), "\n\n"); }

Json UsageJson(const pb::Usage& usage) {
  return Json{{"prompt_tokens", usage.prompt_tokens()},
              {"completion_tokens", usage.completion_tokens()},
              {"total_tokens", usage.prompt_tokens() + usage.completion_tokens()},
              {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens()}}}};
}

// The choice's logprobs object: OpenAI's completions shape (parallel lists) or chat shape (one
// entry per token). No alternatives are listed: only the chosen tokens' values are known.
Json LogprobsJson(Endpoint endpoint, const std::vector<TokenLogprob>& entries) {
  if (endpoint == Endpoint::kCompletions) {
    Json tokens = Json::array(), token_logprobs = Json::array(), top = Json::array(),
         offsets = Json::array();
    for (const TokenLogprob& entry : entries) {
      tokens.push_back(entry.token);
      token_logprobs.push_back(entry.logprob);
      top.push_back(Json::object());
      offsets.push_back(entry.text_offset);
    }
    return Json{{"tokens", std::move(tokens)},
                {"token_logprobs", std::move(token_logprobs)},
                {"top_logprobs", std::move(top)},
                {"text_offset", std::move(offsets)}};
  }
  Json content = Json::array();
  for (const TokenLogprob& entry : entries) {
    Json bytes = Json::array();
    for (unsigned char c : entry.token) bytes.push_back(static_cast<int>(c));
    content.push_back({{"token", entry.token},
                       {"logprob", entry.logprob},
                       {"bytes", std::move(bytes)},
                       {"top_logprobs", Json::array()}});
  }
  return Json{{"content", std::move(content)}, {"refusal", nullptr}};
}

}  // namespace

std::string NewResponseId(Endpoint endpoint) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = endpoint == Endpoint::kCompletions ? "cmpl-" : "chatcmpl-";
  for (int i = 0; i < 24; ++i) id += kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  return id;
}

ResponseBuilder::ResponseBuilder(ResponseOptions options) : options_(std::move(options)) {}

std::string ResponseBuilder::TokenText(uint32_t id) const {
  if (options_.tokenizer == nullptr) return absl::StrCat("token_id:", id);
  std::string bytes;
  if (!options_.tokenizer->AppendTokenBytes(id, /*skip_special_tokens=*/false, &bytes).ok()) {
    return absl::StrCat("token_id:", id);
  }
  return bytes;
}

std::string ResponseBuilder::Consume(const pb::GenerateResponse& message,
                                     std::vector<TokenLogprob>* logprobs,
                                     std::optional<ApiError>* error) {
  std::string text = message.chunk().text();
  const pb::TokenChunk& chunk = message.chunk();
  if (options_.logprobs) {
    for (int i = 0; i < chunk.token_ids_size(); ++i) {
      TokenLogprob entry{.token = TokenText(chunk.token_ids(i)),
                         .logprob = i < chunk.logprobs_size() ? chunk.logprobs(i) : 0.0f,
                         .text_offset = text_offset_};
      text_offset_ += entry.token.size();
      logprobs->push_back(std::move(entry));
    }
  }
  if (!message.has_result()) return text;
  const pb::GenerateResult& result = message.result();
  usage_ = result.usage();
  switch (result.finish_reason()) {
    case pb::FINISH_REASON_LENGTH:
      finish_reason_ = "length";
      break;
    case pb::FINISH_REASON_STOP:
      finish_reason_ = "stop";
      break;
    default:
      *error = ApiError{.http_status = 503,
                        .message = "the worker cancelled the request (it may be shutting down)",
                        .type = "service_unavailable",
                        .code = "service_unavailable"};
      return "";
  }
  // An end-of-sequence (special) token that ended generation is not part of the text.
  if (result.finish_reason() == pb::FINISH_REASON_STOP && chunk.token_ids_size() > 0 &&
      options_.tokenizer != nullptr) {
    const uint32_t last = chunk.token_ids(chunk.token_ids_size() - 1);
    if (result.stop_reason() == absl::StrCat(last) && options_.tokenizer->IsSpecial(last)) {
      const std::string spelling = TokenText(last);
      if (absl::EndsWith(text, spelling)) text.resize(text.size() - spelling.size());
    }
  }
  return text;
}

std::string ResponseBuilder::Chunk(const std::string& text,
                                   const std::vector<TokenLogprob>& logprobs,
                                   const char* finish_reason, bool with_role) const {
  Json choice;
  choice["index"] = 0;
  if (options_.endpoint == Endpoint::kCompletions) {
    choice["text"] = text;
  } else {
    Json delta = Json::object();
    if (with_role) delta["role"] = "assistant";
    if (!text.empty() || with_role) delta["content"] = text;
    choice["delta"] = std::move(delta);
  }
  choice["logprobs"] = options_.logprobs && !logprobs.empty()
                           ? LogprobsJson(options_.endpoint, logprobs)
                           : Json(nullptr);
  choice["finish_reason"] = finish_reason == nullptr ? Json(nullptr) : Json(finish_reason);
  Json chunk = {{"id", options_.id},
                {"object", options_.endpoint == Endpoint::kCompletions ? "text_completion"
                                                                       : "chat.completion.chunk"},
                {"created", options_.created},
                {"model", options_.model},
                {"choices", Json::array({std::move(choice)})}};
  if (options_.include_usage) chunk["usage"] = nullptr;
  return Event(chunk);
}

std::string ResponseBuilder::StreamEvents(const pb::GenerateResponse& message,
                                          std::optional<ApiError>* error) {
  std::vector<TokenLogprob> logprobs;
  const std::string text = Consume(message, &logprobs, error);
  if (error->has_value()) return "";
  std::string events;
  const bool with_role = options_.endpoint == Endpoint::kChatCompletions && !role_sent_;
  if (with_role) {
    // Chat streams open with the assistant's role, as OpenAI's do.
    role_sent_ = true;
    events = Chunk("", {}, nullptr, /*with_role=*/true);
  }
  if (!text.empty() || !logprobs.empty()) {
    absl::StrAppend(&events, Chunk(text, logprobs, nullptr, false));
  }
  if (finish_reason_ != nullptr) absl::StrAppend(&events, Chunk("", {}, finish_reason_, false));
  return events;
}

std::string ResponseBuilder::StreamDone() const {
  std::string events;
  if (options_.include_usage) {
    const Json chunk = {
        {"id", options_.id},
        {"object",
         options_.endpoint == Endpoint::kCompletions ? "text_completion" : "chat.completion.chunk"},
        {"created", options_.created},
        {"model", options_.model},
        {"choices", Json::array()},
        {"usage", UsageJson(usage_)}};
    events = Event(chunk);
  }
  absl::StrAppend(&events, "data: [DONE]\n\n");
  return events;
}

std::string ResponseBuilder::StreamError(const ApiError& error) {
  return absl::StrCat("data: ", ErrorBody(error), "\n\ndata: [DONE]\n\n");
}

void ResponseBuilder::Add(const pb::GenerateResponse& message, std::optional<ApiError>* error) {
  absl::StrAppend(&text_, Consume(message, &logprobs_, error));
}

std::string ResponseBuilder::Body() const {
  Json choice;
  choice["index"] = 0;
  if (options_.endpoint == Endpoint::kCompletions) {
    choice["text"] = text_;
  } else {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  }
  choice["logprobs"] =
      options_.logprobs ? LogprobsJson(options_.endpoint, logprobs_) : Json(nullptr);
  choice["finish_reason"] = finish_reason_ == nullptr ? Json(nullptr) : Json(finish_reason_);
  const Json body = {{"id", options_.id},
                     {"object", options_.endpoint == Endpoint::kCompletions ? "text_completion"
                                                                            : "chat.completion"},
                     {"created", options_.created},
                     {"model", options_.model},
                     {"choices", Json::array({std::move(choice)})},
                     {"usage", UsageJson(usage_)}};
  return Dump(body);
}

}  // namespace kvc::router::openai
