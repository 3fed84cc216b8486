// The OpenAI-compatible HTTP API of the router: POST /v1/completions and
// /v1/chat/completions (streaming as server-sent events, or one JSON body), GET /v1/models and
// /v1/models/{id}, with optional bearer-token auth and CORS, on the router's HTTP server.
//
// A generation request takes the gRPC path's route: Router::Decide picks the workers, and
// RoutedGenerate streams from the first, fails over before the first token, and keeps the
// same load accounting and statistics. The request is served on one cpp-httplib thread: it
// waits for the worker's first message before answering, so that errors found before any
// token (a prompt over the context, no worker) get their HTTP status; then it writes the
// response (SSE chunks as they come). A client that disconnects has its worker request
// cancelled: a failed write reports it while streaming, a peek at the connection's socket
// while it waits (router/http_connection.h).
//
// Departure from DESIGN.md's "no thread per stream": cpp-httplib serves each connection on a
// thread of its pool, so each HTTP request in flight holds a thread; --http-max-requests
// bounds them (429 beyond), and the gRPC path keeps its callback API.
//
// Thread-safety: thread-safe; handlers run concurrently on the server's threads.
#ifndef KVCLUSTER_ROUTER_OPENAI_API_H_
#define KVCLUSTER_ROUTER_OPENAI_API_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/tokenizer/tokenizer.h"
#include "router/openai_chat.h"
#include "router/openai_request.h"
#include "router/router.h"

namespace httplib {
class DataSink;
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace kvc::router::openai {

struct ApiOptions {
  // Names besides the router's model identity that requests may use as "model".
  std::vector<std::string> model_aliases;
  // When not empty, /v1/* requests need "Authorization: Bearer <api_key>" (401 otherwise).
  std::string api_key;
  // Origins allowed to call /v1/* from a browser ("*" for any); empty turns CORS off.
  std::vector<std::string> cors_origins;
  // Generation requests in flight over HTTP; more are answered 429.
  int max_requests = 256;
  // How often a request waiting for a worker checks that its client is still connected.
  absl::Duration disconnect_poll = absl::Milliseconds(50);
};

class OpenAiApi {
 public:
  // `tokenizer` and `chat` may be null (no text spelling of logprob tokens; chat requests
  // answered 400). All must outlive the API.
  OpenAiApi(const Router* router, const Tokenizer* tokenizer, const ChatPrompter* chat,
            ApiOptions options);

  // Serves the API's routes on `server`; sets its pre-routing handler (auth, CORS).
  void Register(httplib::Server* server);

  // Requests in flight end with a 503 error (an error event when streaming), their worker
  // requests cancelled, within a poll interval; new ones get 503. Waits up to `grace` for
  // them to finish answering.
  void Stop(absl::Duration grace = absl::Seconds(2));

  // Generation requests in flight over HTTP.
  int in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  class Generation;
  class Admission;
  struct Stream;

  // Auth and CORS for /v1/*: true when the request was answered here.
  bool PreRoute(const httplib::Request& request, httplib::Response& response) const;
  void Generate(const httplib::Request& http_request, httplib::Response& http_response,
                Endpoint endpoint);
  void Models(httplib::Response& response) const;
  void Model(const std::string& id, httplib::Response& response) const;
  bool KnownModel(const std::string& name) const;
  // Streams one step of an SSE response; false when the client is gone.
  bool StreamStep(Stream& stream, httplib::DataSink& sink);

  const Router* const router_;
  const Tokenizer* const tokenizer_;
  const ChatPrompter* const chat_;
  const ApiOptions options_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace kvc::router::openai

#endif  // KVCLUSTER_ROUTER_OPENAI_API_H_
