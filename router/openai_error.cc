#include "router/openai_error.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace kvc::router::openai {

std::string ErrorBody(const ApiError& error) {
  using Ordered = nlohmann::ordered_json;  // message, type, param, code: OpenAI's order
  const Ordered body = {{"error",
                         {{"message", error.message},
                          {"type", error.type},
                          {"param", error.param.empty() ? Ordered(nullptr) : Ordered(error.param)},
                          {"code", error.code.empty() ? Ordered(nullptr) : Ordered(error.code)}}}};
  return body.dump(-1, ' ', false, Ordered::error_handler_t::replace);
}

namespace {

// A worker answers RESOURCE_EXHAUSTED for two reasons (worker/server/generate_call.cc,
// worker/engine/engine.cc): a prompt text over its --max-prompt-bytes ("the prompt text has N
// bytes; the limit is M"), which is the request's size, and a prompt + max_tokens needing more
// KV blocks than its whole pool holds ("the request needs N KV blocks and the whole pool has
// M"), which is the worker's capacity: such a request may be within the context the API
// advertises, since a worker's pool can be smaller than its context. The status carries no
// detail but its message, so the message tells them apart; tests/openai_api_test.cc checks
// the real worker's wording.
bool KvPoolTooSmall(absl::string_view message) {
  return absl::StrContains(message, " KV blocks and the whole pool has ");
}

}  // namespace

ApiError ErrorFromStatus(const absl::Status& status) {
  ApiError error;
  error.message = std::string(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      error.http_status = 400;
      break;
    case absl::StatusCode::kResourceExhausted:
      if (KvPoolTooSmall(status.message())) {
        error.http_status = 503;
        error.type = "service_unavailable";
        error.code = "insufficient_capacity";
      } else {
        error.http_status = 413;
        error.code = "request_too_large";
      }
      break;
    case absl::StatusCode::kNotFound:
      error.http_status = 404;
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDeadlineExceeded:
      error.http_status = 503;
      error.type = "service_unavailable";
      error.code = "service_unavailable";
      break;
    default:
      error.http_status = 500;
      error.type = "server_error";
      break;
  }
  return error;
}

}  // namespace kvc::router::openai
