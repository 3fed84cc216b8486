#include "router/http_server.h"

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "router/metrics.h"
#include "router/router_service.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

namespace {

// Threads serving connections besides the --http-max-requests generation requests: /metrics,
// /health, quick errors and idle keep-alive connections.
constexpr int kSpareThreads = 16;

const char* StatusText(int status) {
  switch (status) {
    case 400:
      return "The request is malformed.";
    case 404:
      return "No such endpoint.";
    case 405:
      return "Method not allowed.";
    case 413:
      return "The request body is too large.";
    case 414:
      return "The request URI is too long.";
    default:
      return "The request failed.";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              const Router* router,
                                                              const Tokenizer* tokenizer,
                                                              const openai::ChatPrompter* chat) {
  const std::string& host_port = options.listen;
  const size_t colon = host_port.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(host_port.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP address '", host_port, "' is not host:port (port 0 picks one)"));
  }
  if (options.max_body_bytes <= 0 || options.api.max_requests <= 0) {
    return absl::InvalidArgumentError("the HTTP body limit and request limit must be positive");
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->server_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *server->server_;
  const int threads = options.api.max_requests + kSpareThreads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
  http.set_tcp_nodelay(true);  // SSE chunks go out as they are written
  http.set_keep_alive_max_count(10000);

  server->api_ = std::make_unique<openai::OpenAiApi>(router, tokenizer, chat, options.api);
  server->api_->Register(&http);
  openai::OpenAiApi* api = server->api_.get();

  http.Get("/metrics", [router, api](const httplib::Request&, httplib::Response& res) {
    pb::ListWorkersResponse workers;
    for (const auto& link : router->pool()->All()) *workers.add_workers() = link->Status();
    std::string text = PrometheusText(CollectStats(*router), workers);
    absl::StrAppend(&text,
                    "# HELP kvc_router_http_requests_in_flight Generation requests being "
                    "served over HTTP.\n# TYPE kvc_router_http_requests_in_flight gauge\n"
                    "kvc_router_http_requests_in_flight ",
                    api->in_flight(), "\n");
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/health", [router](const httplib::Request&, httplib::Response& res) {
    const size_t ready = router->pool()->Ready().size();
    res.status = ready > 0 ? 200 : 503;
    res.set_content(absl::StrCat("{\"status\":\"", ready > 0 ? "ok" : "no ready worker",
                                 "\",\"ready_workers\":", ready, "}\n"),
                    "application/json");
  });
  // Errors cpp-httplib answers itself (no route, body over the limit, a malformed request)
  // get a body in the API's error shape.
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        openai::ApiError error{.http_status = res.status, .message = StatusText(res.status)};
        if (res.status == 413) error.code = "request_too_large";
        res.set_content(openai::ErrorBody(error), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        res.status = 500;
        res.set_content(openai::ErrorBody({.http_status = 500,
                                           .message = "The router failed to serve the request.",
                                           .type = "server_error"}),
                        "application/json");
      });

  if (port == 0) {
    server->port_ = http.bind_to_any_port(host);
  } else {
    server->port_ = http.bind_to_port(host, port) ? port : -1;
  }
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for HTTP on ", host_port));
  }
  httplib::Server* raw = server->server_.get();
  server->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (api_ != nullptr) api_->Stop();
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace kvc::router
