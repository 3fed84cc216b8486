// The OpenAI-compatible API's errors: the shape every endpoint answers with, and how the
// router's and workers' statuses map onto HTTP.
//
// Thread-safety: plain data and pure functions.
#ifndef KVCLUSTER_ROUTER_OPENAI_ERROR_H_
#define KVCLUSTER_ROUTER_OPENAI_ERROR_H_

#include <string>

#include "absl/status/status.h"

namespace kvc::router::openai {

// An error as OpenAI's API answers it: HTTP status plus {"error": {message, type, param,
// code}}. Empty param / code are written as null.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;
  std::string code;
};

// The JSON body of an error: {"error": {"message", "type", "param", "code"}}.
std::string ErrorBody(const ApiError& error);

// Maps a status from routing or from a worker onto the API's error: INVALID_ARGUMENT,
// OUT_OF_RANGE and FAILED_PRECONDITION 400, RESOURCE_EXHAUSTED 413 (a prompt or request over
// a limit) except a worker's "needs N KV blocks and the whole pool has M", which is 503 with
// code insufficient_capacity (the worker's KV cache is smaller than the request, which the
// context allows), NOT_FOUND 404, UNAVAILABLE, CANCELLED and DEADLINE_EXCEEDED 503 (no worker
// could serve it), anything else 500 (a failure of the router or a worker itself, never of
// the input).
ApiError ErrorFromStatus(const absl::Status& status);

}  // namespace kvc::router::openai

#endif  // KVCLUSTER_ROUTER_OPENAI_ERROR_H_
