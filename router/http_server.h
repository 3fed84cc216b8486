// The router's HTTP server (cpp-httplib, Debian libcpp-httplib-dev): Prometheus /metrics,
// /health, and the OpenAI-compatible API under /v1/ (router/openai_api.h), on one port.
//
// Thread-safety: thread-safe; the server answers on its own threads.
#ifndef KVCLUSTER_ROUTER_HTTP_SERVER_H_
#define KVCLUSTER_ROUTER_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "router/openai_api.h"
#include "router/openai_chat.h"
#include "router/router.h"

namespace httplib {
class Server;
}

namespace kvc::router {

struct HttpServerOptions {
  // host:port; port 0 picks a free one.
  std::string listen = "127.0.0.1:8080";
  // Longest request body accepted; longer ones are answered 413.
  int64_t max_body_bytes = 8 << 20;
  openai::ApiOptions api;
};

class HttpServer {
 public:
  // Binds and serves. `tokenizer` and `chat` may be null (see OpenAiApi); everything passed
  // must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           const Router* router,
                                                           const Tokenizer* tokenizer,
                                                           const openai::ChatPrompter* chat);
  ~HttpServer();
  int port() const { return port_; }
  // Ends requests still waiting for workers, then stops serving. Idempotent.
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<openai::OpenAiApi> api_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_HTTP_SERVER_H_
