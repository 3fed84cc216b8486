#include "router/openai_error.h"

#include <nlohmann/json.hpp>

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
      error.http_status = 413;
      error.code = "request_too_large";
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
