#include "router/openai_api.h"

#include <httplib.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "router/http_connection.h"
#include "router/openai_response.h"
#include "router/routed_generate.h"

namespace kvc::router::openai {

namespace pb = ::kvcluster::v1;
using Json = nlohmann::ordered_json;

namespace {

void Reply(httplib::Response& response, const ApiError& error) {
  response.status = error.http_status;
  if (error.http_status == 429) response.set_header("Retry-After", "1");
  if (error.http_status == 401) response.set_header("WWW-Authenticate", "Bearer");
  response.set_content(ErrorBody(error), "application/json");
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

ApiError ShuttingDown() {
  return ApiError{.http_status = 503,
                  .message = "The router is shutting down.",
                  .type = "service_unavailable",
                  .code = "service_unavailable"};
}

// The generation budget within the context the chosen worker reports: the client's
// max_tokens, or the default (completions: 16, shrunk to fit the context; chat: the rest of
// the context, or of the worker's KV pool when that is smaller, since a worker refuses a
// request that its whole pool cannot hold). 413 for a prompt that fills the context, 400 for
// a max_tokens past it. When the prompt's length or the context is unknown (a router without
// a tokenizer), the workers judge the budget, and chat needs the client's max_tokens.
std::optional<ApiError> FitContext(const Request& request, const RouteDecision& decision,
                                   int32_t* max_tokens) {
  *max_tokens = request.max_tokens.value_or(kDefaultCompletionMaxTokens);
  const pb::WorkerInfo info = decision.candidates.front().worker->Status().info();
  const uint32_t max_context = info.max_context_tokens();
  const uint32_t prompt_tokens = decision.prompt_tokens;
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  if (max_context == 0 || prompt_tokens == 0) {
    if (!chat || request.max_tokens) return std::nullopt;
    // Never a smaller default in its place: a silently short answer hides the cause.
    return ApiError{
        .http_status = 400,
        .message = prompt_tokens == 0
                       ? "This router cannot count the prompt's tokens (it has no tokenizer), so "
                         "it cannot give chat its default of the rest of the context: set "
                         "max_tokens or max_completion_tokens, or start the router with --model "
                         "DIR (holding tokenizer.json) or --tokenizer FILE."
                       : "The worker reported no context length, so chat has no default budget: "
                         "set max_tokens or max_completion_tokens.",
        .param = "max_tokens",
        .code = "missing_required_parameter"};
  }
  if (prompt_tokens >= max_context) {
    return ApiError{.http_status = 413,
                    .message = absl::StrCat("This model's maximum context length is ", max_context,
                                            " tokens; the prompt has ", prompt_tokens, "."),
                    .param = chat ? "messages" : "prompt",
                    .code = "context_length_exceeded"};
  }
  const int64_t room = static_cast<int64_t>(max_context) - prompt_tokens;
  if (!request.max_tokens && !chat) {
    *max_tokens = static_cast<int32_t>(std::min<int64_t>(*max_tokens, room));
  } else if (!request.max_tokens) {
    const int64_t pool_room =
        static_cast<int64_t>(info.capacity_blocks() * info.hash().block_size()) - prompt_tokens;
    // A prompt that fills the pool (or a pool not reported) is left to the worker to judge.
    *max_tokens = static_cast<int32_t>(pool_room > 0 ? std::min(room, pool_room) : room);
  } else if (*request.max_tokens > room) {
    return ApiError{.http_status = 400,
                    .message = absl::StrCat("This model's maximum context length is ", max_context,
                                            " tokens; the prompt has ", prompt_tokens,
                                            " and max_tokens asks ", *request.max_tokens, " more."),
                    .param = "max_tokens",
                    .code = "context_length_exceeded"};
  }
  return std::nullopt;
}

// The token of an "Authorization: Bearer TOKEN" header; nullopt for another scheme or no
// token. The scheme is case-insensitive and may be followed by several spaces (RFC 7235:
// credentials = auth-scheme 1*SP token68).
std::optional<absl::string_view> BearerToken(absl::string_view header) {
  constexpr absl::string_view kScheme = "Bearer";
  if (!absl::StartsWithIgnoreCase(header, kScheme)) return std::nullopt;
  absl::string_view rest = header.substr(kScheme.size());
  if (!absl::ConsumePrefix(&rest, " ")) return std::nullopt;
  while (absl::ConsumePrefix(&rest, " ")) {
  }
  if (rest.empty()) return std::nullopt;
  return rest;
}

// Compares without returning early, so that the time taken does not reveal the key.
bool SameSecret(const std::string& given, const std::string& expected) {
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) {
    difference |= static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  }
  return difference == 0;
}

}  // namespace

// The HTTP side of one routed Generate: the request's thread waits for the worker's messages.
class OpenAiApi::Generation final : public RoutedGenerate {
 public:
  enum class Next { kMessage, kEnd, kIdle };

  Generation(const Router* router, pb::GenerateRequest request, RouteDecision decision)
      : RoutedGenerate(router), request_(std::move(request)) {
    absl::MutexLock lock(&mutex_);
    LockedStart(request_, std::move(decision));
  }

  // The next worker message (kMessage), the end with its status (kEnd), or nothing within
  // `timeout` (kIdle).
  Next Wait(absl::Duration timeout, pb::GenerateResponse* message, grpc::Status* end) {
    absl::MutexLock lock(&mutex_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
      return LockedQueued() > 0 || LockedUpstreamDone();
    };
    mutex_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    if (LockedTake(message)) return Next::kMessage;
    if (LockedUpstreamDone()) {
      *end = LockedFinalStatus();
      return Next::kEnd;
    }
    return Next::kIdle;
  }

  // The client side is done: cancels what still runs and lets go of the call.
  struct Close {
    void operator()(Generation* generation) const {
      {
        absl::MutexLock lock(&generation->mutex_);
        generation->LockedCancelUpstream();
      }
      generation->Unref();
    }
  };

 private:
  // The waiting thread's condition sees new messages when the worker side releases mutex_.
  void LockedOnUpstreamProgress() override {}

  const pb::GenerateRequest request_;
};

// One slot of --http-max-requests, held while a generation request is served.
class OpenAiApi::Admission {
 public:
  explicit Admission(std::atomic<int>* in_flight) : in_flight_(in_flight) {}
  ~Admission() {
    if (in_flight_ != nullptr) in_flight_->fetch_sub(1, std::memory_order_relaxed);
  }
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

 private:
  std::atomic<int>* in_flight_;
};

// A streaming response between calls of cpp-httplib's content provider.
struct OpenAiApi::Stream {
  std::unique_ptr<Admission> admission;
  std::unique_ptr<Generation, Generation::Close> generation;
  std::optional<ResponseBuilder> builder;
  std::optional<ClientConnection> connection;
  std::optional<pb::GenerateResponse> first;  // taken before the headers were sent
  bool done = false;
};

OpenAiApi::OpenAiApi(const Router* router, const Tokenizer* tokenizer, const ChatPrompter* chat,
                     ApiOptions options)
    : router_(router), tokenizer_(tokenizer), chat_(chat), options_(std::move(options)) {}

void OpenAiApi::Stop(absl::Duration grace) {
  stopping_.store(true);
  const absl::Time deadline = absl::Now() + grace;
  while (in_flight() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
}

bool OpenAiApi::KnownModel(const std::string& name) const {
  return name == router_->config().model_identity ||
         std::find(options_.model_aliases.begin(), options_.model_aliases.end(), name) !=
             options_.model_aliases.end();
}

bool OpenAiApi::PreRoute(const httplib::Request& request, httplib::Response& response) const {
  if (!absl::StartsWith(request.path, "/v1/")) return false;
  if (!options_.cors_origins.empty() && request.has_header("Origin")) {
    const std::string origin = request.get_header_value("Origin");
    const bool any = std::find(options_.cors_origins.begin(), options_.cors_origins.end(), "*") !=
                     options_.cors_origins.end();
    if (any || std::find(options_.cors_origins.begin(), options_.cors_origins.end(), origin) !=
                   options_.cors_origins.end()) {
      response.set_header("Access-Control-Allow-Origin", any ? "*" : origin);
      if (!any) response.set_header("Vary", "Origin");
      if (request.method == "OPTIONS") {
        // A preflight: no credentials are sent with it, so it is answered before auth.
        response.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        response.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        response.set_header("Access-Control-Max-Age", "600");
        response.status = 204;
        return true;
      }
    }
  }
  if (options_.api_key.empty()) return false;
  const std::string header = request.get_header_value("Authorization");
  if (std::optional<absl::string_view> token = BearerToken(header);
      token && SameSecret(std::string(*token), options_.api_key)) {
    return false;
  }
  Reply(response,
        ApiError{.http_status = 401,
                 .message = header.empty() ? "Missing API key: send 'Authorization: Bearer KEY'."
                                           : "Incorrect API key provided.",
                 .type = "invalid_request_error",
                 .code = "invalid_api_key"});
  return true;
}

void OpenAiApi::Register(httplib::Server* server) {
  server->set_pre_routing_handler(
      [this](const httplib::Request& request, httplib::Response& response) {
        return PreRoute(request, response) ? httplib::Server::HandlerResponse::Handled
                                           : httplib::Server::HandlerResponse::Unhandled;
      });
  server->Post("/v1/completions",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Generate(request, response, Endpoint::kCompletions);
               });
  server->Post("/v1/chat/completions",
               [this](const httplib::Request& request, httplib::Response& response) {
                 Generate(request, response, Endpoint::kChatCompletions);
               });
  server->Get("/v1/models",
              [this](const httplib::Request&, httplib::Response& response) { Models(response); });
  server->Get(R"(/v1/models/(.+))",
              [this](const httplib::Request& request, httplib::Response& response) {
                Model(request.matches[1].str(), response);
              });
}

namespace {

Json ModelJson(const std::string& id, const std::string& root, int64_t created,
               uint32_t max_context) {
  Json model = {{"id", id},
                {"object", "model"},
                {"created", created},
                {"owned_by", "kvcluster"},
                {"root", root}};
  if (max_context > 0) model["max_model_len"] = max_context;
  return model;
}

// The longest context of the ready workers (0 when none said).
uint32_t MaxContext(const Router& router) {
  uint32_t max_context = 0;
  for (const auto& worker : router.pool()->Ready()) {
    max_context = std::max(max_context, worker->Status().info().max_context_tokens());
  }
  return max_context;
}

}  // namespace

void OpenAiApi::Models(httplib::Response& response) const {
  const std::string& identity = router_->config().model_identity;
  const int64_t created = absl::ToUnixSeconds(router_->start_time());
  const uint32_t max_context = MaxContext(*router_);
  Json data = Json::array({ModelJson(identity, identity, created, max_context)});
  for (const std::string& alias : options_.model_aliases) {
    data.push_back(ModelJson(alias, identity, created, max_context));
  }
  response.set_content(Dump(Json{{"object", "list"}, {"data", std::move(data)}}),
                       "application/json");
}

void OpenAiApi::Model(const std::string& id, httplib::Response& response) const {
  if (!KnownModel(id)) {
    Reply(response, ApiError{.http_status = 404,
                             .message = absl::StrCat("The model '", id, "' does not exist."),
                             .param = "model",
                             .code = "model_not_found"});
    return;
  }
  response.set_content(
      Dump(ModelJson(id, router_->config().model_identity,
                     absl::ToUnixSeconds(router_->start_time()), MaxContext(*router_))),
      "application/json");
}

void OpenAiApi::Generate(const httplib::Request& http_request, httplib::Response& http_response,
                         Endpoint endpoint) {
  Request request;
  ApiError error;
  if (!ParseRequest(http_request.body, endpoint, &request, &error)) {
    return Reply(http_response, error);
  }
  if (!KnownModel(request.model)) {
    return Reply(http_response,
                 ApiError{.http_status = 404,
                          .message = absl::StrCat("The model '", request.model,
                                                  "' does not exist; this router serves '",
                                                  router_->config().model_identity, "'."),
                          .param = "model",
                          .code = "model_not_found"});
  }

  // The prompt: the chat template's text, the client's text, or the client's token ids.
  std::string chat_text;
  const std::string* prompt_text = nullptr;
  if (endpoint == Endpoint::kChatCompletions) {
    if (chat_ == nullptr) {
      return Reply(http_response,
                   ApiError{.http_status = 400,
                            .message = "This model has no chat template: use /v1/completions, "
                                       "or start the router with --chat-template FILE.",
                            .param = "messages",
                            .code = "chat_template_missing"});
    }
    absl::StatusOr<std::string> rendered = chat_->Render(request.messages);
    if (!rendered.ok()) {
      ApiError render_error = ErrorFromStatus(rendered.status());
      render_error.param = "messages";
      return Reply(http_response, render_error);
    }
    chat_text = std::move(*rendered);
    prompt_text = &chat_text;
  } else if (request.prompt_text) {
    prompt_text = &*request.prompt_text;
  }

  if (stopping_.load()) return Reply(http_response, ShuttingDown());
  if (in_flight_.fetch_add(1, std::memory_order_relaxed) >= options_.max_requests) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    return Reply(http_response,
                 ApiError{.http_status = 429,
                          .message = absl::StrCat("Too many requests in flight (",
                                                  options_.max_requests, "); retry shortly."),
                          .type = "rate_limit_error",
                          .code = "rate_limit_exceeded"});
  }
  auto admission = std::make_unique<Admission>(&in_flight_);

  // A chat template writes its own BOS; a completions prompt gets the tokenizer's.
  pb::GenerateRequest generate = ToGenerateRequest(
      request, prompt_text, /*add_special_tokens=*/endpoint == Endpoint::kCompletions,
      request.max_tokens.value_or(kDefaultCompletionMaxTokens));
  absl::StatusOr<RouteDecision> decision = router_->Decide(generate);
  if (!decision.ok()) return Reply(http_response, ErrorFromStatus(decision.status()));

  int32_t max_tokens = 0;
  if (std::optional<ApiError> error = FitContext(request, *decision, &max_tokens)) {
    return Reply(http_response, *error);
  }
  generate.mutable_sampling()->set_max_tokens(max_tokens);
  if (decision->rewritten) decision->rewritten->mutable_sampling()->set_max_tokens(max_tokens);

  std::unique_ptr<Generation, Generation::Close> generation(
      new Generation(router_, std::move(generate), std::move(*decision)));
  ClientConnection connection(http_request.remote_addr, http_request.remote_port,
                              http_request.local_port);
  ResponseBuilder builder(ResponseOptions{.endpoint = endpoint,
                                          .id = NewResponseId(endpoint),
                                          .model = request.model,
                                          .created = absl::ToUnixSeconds(absl::Now()),
                                          .include_usage = request.include_usage,
                                          .logprobs = request.logprobs,
                                          .tokenizer = tokenizer_});

  // Waits for the worker's first message (streaming) or all of them (not streaming).
  pb::GenerateResponse message;
  grpc::Status end;
  std::optional<ApiError> failure;
  bool have_first = false;
  absl::Time next_check = absl::Now() + options_.disconnect_poll;
  for (;;) {
    const Generation::Next next = generation->Wait(options_.disconnect_poll, &message, &end);
    if (next == Generation::Next::kEnd) {
      if (!end.ok()) return Reply(http_response, ErrorFromStatus(FromGrpcStatus(end)));
      break;
    }
    // Tokens may keep coming for a client that left: look at the connection now and then.
    if (next == Generation::Next::kIdle || absl::Now() >= next_check) {
      if (stopping_.load()) return Reply(http_response, ShuttingDown());
      if (!connection.Open()) return;  // the client left: Close cancels the worker's request
      next_check = absl::Now() + options_.disconnect_poll;
      if (next == Generation::Next::kIdle) continue;
    }
    if (request.stream) {
      have_first = true;
      break;
    }
    builder.Add(message, &failure);
    if (failure) return Reply(http_response, *failure);
  }
  if (!request.stream) {
    http_response.set_content(builder.Body(), "application/json");
    return;
  }

  auto stream = std::make_shared<Stream>();
  stream->admission = std::move(admission);
  stream->generation = std::move(generation);
  stream->builder.emplace(std::move(builder));
  stream->connection.emplace(connection);
  if (have_first) stream->first = std::move(message);
  http_response.set_header("Cache-Control", "no-cache");
  http_response.set_header("X-Accel-Buffering", "no");
  http_response.set_chunked_content_provider(
      "text/event-stream",
      [this, stream](size_t, httplib::DataSink& sink) { return StreamStep(*stream, sink); });
}

bool OpenAiApi::StreamStep(Stream& stream, httplib::DataSink& sink) {
  if (stream.done) {
    sink.done();
    return true;
  }
  if (stopping_.load()) {
    // Ends the stream well-formed, before the server stops calling this.
    const std::string events = ResponseBuilder::StreamError(ShuttingDown());
    stream.done = true;
    if (!sink.write(events.data(), events.size())) return false;
    sink.done();
    return true;
  }
  std::string events;
  std::optional<ApiError> failure;
  pb::GenerateResponse message;
  grpc::Status end;
  bool have_message = false;
  if (stream.first) {
    message = std::move(*stream.first);
    stream.first.reset();
    have_message = true;
  }
  // Waits for something to send, then sends everything that is there.
  for (;;) {
    if (have_message) {
      absl::StrAppend(&events, stream.builder->StreamEvents(message, &failure));
      have_message = false;
      if (failure) {
        absl::StrAppend(&events, ResponseBuilder::StreamError(*failure));
        stream.done = true;
        break;
      }
    }
    const Generation::Next next = stream.generation->Wait(
        events.empty() ? options_.disconnect_poll : absl::ZeroDuration(), &message, &end);
    if (next == Generation::Next::kMessage) {
      have_message = true;
      continue;
    }
    if (next == Generation::Next::kEnd) {
      absl::StrAppend(
          &events, end.ok() ? stream.builder->StreamDone()
                            : ResponseBuilder::StreamError(ErrorFromStatus(FromGrpcStatus(end))));
      stream.done = true;
      break;
    }
    if (!events.empty()) break;
    if (stopping_.load()) {
      events = ResponseBuilder::StreamError(ShuttingDown());
      stream.done = true;
      break;
    }
    if (!stream.connection->Open()) return false;  // the client left
  }
  if (!sink.write(events.data(), events.size())) return false;
  if (stream.done) sink.done();
  return true;
}

}  // namespace kvc::router::openai
