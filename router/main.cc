// kvc-router: routes generation requests to the worker most likely to hold their prompt's
// KV blocks, kept exact by each worker's KV events; serves the Router gRPC service and, over
// HTTP, the OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models),
// Prometheus /metrics and /health.
//
//   kvc-router --model DIR --workers HOST:PORT,... [--listen 127.0.0.1:50050] ...
//
// Every tunable is a flag below with its default and a one-line doc (router/config.h holds
// the same set); `--help` lists them. Flags may be written with dashes or underscores.
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/block_hash.h"
#include "common/flags.h"
#include "common/process_setup.h"
#include "common/tokenizer/tokenizer.h"
#include "kvindex/prefix_index.h"
#include "router/grpc_loop.h"
#include "router/health_service.h"
#include "router/http_server.h"
#include "router/openai_chat.h"
#include "router/router.h"
#include "router/router_service.h"
#include "router/worker_pool.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50050",
          "host:port of the gRPC server; port 0 picks a free port (printed at start).");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8080",
          "host:port of the HTTP server (OpenAI-compatible /v1/ API, /metrics, /health); empty "
          "disables it.");
ABSL_FLAG(std::string, http_max_body, "8MiB",
          "Longest HTTP request body accepted (e.g. 8MiB); longer ones get 413.");
ABSL_FLAG(int32_t, http_max_requests, 256,
          "Generation requests served over HTTP at once (each holds a server thread); more get "
          "429.");
ABSL_FLAG(std::string, api_key, "",
          "When set (or when the environment has KVC_API_KEY), /v1/ requests need "
          "'Authorization: Bearer KEY'; /health and /metrics stay open.");
ABSL_FLAG(std::string, cors_origins, "",
          "Comma-separated origins allowed to call /v1/ from browsers ('*' for any); empty "
          "leaves CORS off.");
ABSL_FLAG(std::string, model_alias, "",
          "Comma-separated names that /v1/ requests may give as 'model' besides the model "
          "identity.");
ABSL_FLAG(std::string, chat_template, "",
          "Jinja chat template file for /v1/chat/completions (overrides the chat_template of "
          "tokenizer_config.json).");
ABSL_FLAG(std::string, tokenizer_config, "",
          "tokenizer_config.json whose chat_template /v1/chat/completions applies. Default: the "
          "one beside the tokenizer.");
ABSL_FLAG(std::string, workers, "", "Comma-separated worker addresses (host:port).");
ABSL_FLAG(std::string, workers_dns, "",
          "A DNS name:port whose addresses are the workers (a Kubernetes headless service); "
          "resolved again every --dns-refresh.");
ABSL_FLAG(std::string, model, "",
          "The model directory the workers serve: its tokenizer.json (when it has one) "
          "tokenizes text prompts and its name is the default --model-identity.");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json for text prompts (overrides --model's).");
ABSL_FLAG(std::string, model_identity, "",
          "Identity mixed into block hashes; must equal the workers' (their default is their "
          "model directory's name). Default: --model's directory name.");
ABSL_FLAG(int32_t, block_size, kvc::kDefaultBlockSize, "Tokens per KV block; workers must agree.");
ABSL_FLAG(uint64_t, hash_seed, kvc::kDefaultHashSeed,
          "Seed of the block hashes; workers must agree.");
ABSL_FLAG(std::string, policy, "kv", "Routing policy: kv, round-robin, random, least-loaded.");
ABSL_FLAG(double, overlap_weight, 1.0,
          "kv policy: weight of a prompt block still to prefill against a block of decode load.");
ABSL_FLAG(double, routing_temperature, 0.0,
          "kv policy: 0 takes the cheapest worker; > 0 samples a softmax over costs.");
ABSL_FLAG(absl::Duration, load_interval, absl::Milliseconds(500),
          "How often each worker's load is polled.");
ABSL_FLAG(absl::Duration, dead_after, absl::Seconds(10),
          "A worker unreachable this long has its blocks dropped from the index.");
ABSL_FLAG(absl::Duration, stream_timeout, absl::Seconds(5),
          "An event stream silent this long (no events or heartbeats) is restarted.");
ABSL_FLAG(absl::Duration, reconnect_max, absl::Seconds(5),
          "Longest wait between reconnection attempts to a lost worker.");
ABSL_FLAG(absl::Duration, dns_refresh, absl::Seconds(5), "How often --workers-dns is resolved.");
ABSL_FLAG(std::string, port_file, "", "Write the bound gRPC port to this file once serving.");
ABSL_FLAG(std::string, http_port_file, "", "Write the bound HTTP port to this file.");

namespace kvc {
namespace {

void Log(const std::string& message) { std::fprintf(stderr, "kvc-router: %s\n", message.c_str()); }

[[noreturn]] void Fail(const std::string& message) {
  Log(message);
  std::exit(1);
}

// The gRPC health service answers two names: "" is SERVING while the process serves
// (liveness), kReadinessService only while at least one worker is READY (readiness: the
// router would refuse every request without one). Kubernetes' gRPC probe and
// `kvctl health --service` ask for the second.
constexpr char kReadinessService[] = "kvcluster.v1.Router";

// Keeps kReadinessService's status equal to "some worker is READY", polling the pool five
// times a second and logging each change.
// Thread-safety: owns one thread; construct and destroy it on the same thread.
class ReadinessReporter {
 public:
  ReadinessReporter(router::HealthService* health, const router::WorkerPool* pool)
      : thread_([this, health, pool] { Run(health, pool); }) {}
  ~ReadinessReporter() {
    stop_.Notify();
    thread_.join();
  }

 private:
  void Run(router::HealthService* health, const router::WorkerPool* pool) {
    int last = -1;
    do {
      const int ready = pool->Ready().empty() ? 0 : 1;
      if (ready != last) {
        health->SetServingStatus(kReadinessService, ready == 1);
        if (last != -1) Log(ready ? "ready: a worker is READY" : "not ready: no worker is READY");
        last = ready;
      }
    } while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  }

  absl::Notification stop_;
  std::thread thread_;  // last: it starts in the constructor and reads stop_
};

int Main(int argc, char** argv) {
  PrepareServerProcess();
  // A write to an HTTP client that left fails with EPIPE instead of ending the process.
  std::signal(SIGPIPE, SIG_IGN);
  NormalizeFlagNames(argc, argv);
  // --help lists the flags of this file (absl would look for a file named after the program).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) {
    return absl::EndsWith(path, "router/main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "Routes requests to the worker that holds their prefix.\n"
      "  kvc-router --model DIR --workers HOST:PORT,... [--listen HOST:PORT] ...");
  absl::ParseCommandLine(argc, argv);

  router::RouterConfig config;
  config.hash.block_size = absl::GetFlag(FLAGS_block_size);
  config.hash.seed = absl::GetFlag(FLAGS_hash_seed);
  if (absl::GetFlag(FLAGS_block_size) <= 0) Fail("--block-size must be positive");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  config.model_identity = absl::GetFlag(FLAGS_model_identity);
  if (config.model_identity.empty() && !model_dir.empty()) {
    std::filesystem::path path = std::filesystem::path(model_dir).lexically_normal();
    config.model_identity = path.has_filename() ? path.filename() : path.parent_path().filename();
  }
  if (config.model_identity.empty()) {
    Fail(
        "set --model DIR or --model-identity (the workers' model name): block hashes depend on it");
  }
  auto policy = router::ParsePolicy(absl::GetFlag(FLAGS_policy));
  if (!policy.ok()) Fail(std::string(policy.status().message()));
  config.policy.kind = *policy;
  config.policy.overlap_weight = absl::GetFlag(FLAGS_overlap_weight);
  config.policy.temperature = absl::GetFlag(FLAGS_routing_temperature);
  if (config.policy.overlap_weight < 0 || config.policy.temperature < 0) {
    Fail("--overlap-weight and --routing-temperature must be >= 0");
  }
  config.load_interval = absl::GetFlag(FLAGS_load_interval);
  config.dead_after = absl::GetFlag(FLAGS_dead_after);
  config.stream_timeout = absl::GetFlag(FLAGS_stream_timeout);
  config.reconnect_max = absl::GetFlag(FLAGS_reconnect_max);
  config.dns_refresh = absl::GetFlag(FLAGS_dns_refresh);

  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  if (tokenizer_path.empty() && !model_dir.empty()) {
    // The model directory's tokenizer is optional (a config-only directory serves sim
    // workers, token-id prompts only); an explicit --tokenizer must exist.
    const std::filesystem::path in_model = std::filesystem::path(model_dir) / "tokenizer.json";
    if (std::filesystem::exists(in_model)) tokenizer_path = in_model.string();
  }
  if (!tokenizer_path.empty()) {
    auto loaded = Tokenizer::FromFile(tokenizer_path);
    if (!loaded.ok()) Fail(absl::StrCat("cannot load tokenizer: ", loaded.status().ToString()));
    tokenizer = std::move(*loaded);
  } else {
    Log("no tokenizer: text prompts are routed by load only (token-id prompts by prefix)");
  }

  // The chat template: --chat-template, else tokenizer_config.json's (beside the tokenizer).
  std::unique_ptr<router::openai::ChatPrompter> chat;
  std::string tokenizer_config = absl::GetFlag(FLAGS_tokenizer_config);
  if (tokenizer_config.empty() && !tokenizer_path.empty()) {
    tokenizer_config =
        (std::filesystem::path(tokenizer_path).parent_path() / "tokenizer_config.json").string();
  }
  if (!absl::GetFlag(FLAGS_chat_template).empty() || !tokenizer_config.empty()) {
    auto loaded = router::openai::ChatPrompter::Load(absl::GetFlag(FLAGS_chat_template),
                                                     tokenizer_config, tokenizer.get());
    if (loaded.ok()) {
      chat = std::move(*loaded);
    } else if (loaded.status().code() == absl::StatusCode::kNotFound &&
               absl::GetFlag(FLAGS_chat_template).empty() &&
               absl::GetFlag(FLAGS_tokenizer_config).empty()) {
      Log("no chat template: /v1/chat/completions answers 400 (--chat-template FILE sets one)");
    } else {
      Fail(absl::StrCat("cannot load the chat template: ", loaded.status().ToString()));
    }
  }

  // gRPC: every call the router serves or makes runs on one loop thread (router/grpc_loop.h).
  router::RouterService service;
  router::HealthService health;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.service());
  builder.RegisterService(health.service());
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::ServerCompletionQueue> server_cq = builder.AddCompletionQueue();
  grpc::ServerCompletionQueue* const cq = server_cq.get();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) Fail("cannot listen on " + absl::GetFlag(FLAGS_listen));
  router::GrpcLoop loop(std::move(server_cq));

  std::unique_ptr<kvindex::PrefixIndex> index = kvindex::NewPrefixIndex();
  router::WorkerPool pool(config, index.get(), &loop);
  for (absl::string_view address :
       absl::StrSplit(absl::GetFlag(FLAGS_workers), ',', absl::SkipWhitespace())) {
    auto added = pool.Add(std::string(address), kvcluster::v1::WORKER_SOURCE_STATIC);
    if (!added.ok()) Fail(std::string(added.status().message()));
  }
  if (!absl::GetFlag(FLAGS_workers_dns).empty()) {
    if (absl::Status status = pool.FollowDns(absl::GetFlag(FLAGS_workers_dns)); !status.ok()) {
      Fail(std::string(status.message()));
    }
  }
  router::Router router(config, index.get(), &pool, tokenizer.get());
  service.Serve(&router, cq);
  health.Serve(&loop, cq);
  ReadinessReporter readiness(&health, &pool);

  std::unique_ptr<router::HttpServer> http;
  if (!absl::GetFlag(FLAGS_http_listen).empty()) {
    router::HttpServerOptions http_options;
    http_options.listen = absl::GetFlag(FLAGS_http_listen);
    auto max_body = ParseByteSize(absl::GetFlag(FLAGS_http_max_body));
    if (!max_body.ok()) Fail(absl::StrCat("--http-max-body: ", max_body.status().message()));
    http_options.max_body_bytes = static_cast<int64_t>(*max_body);
    http_options.api.max_requests = absl::GetFlag(FLAGS_http_max_requests);
    http_options.api.api_key = absl::GetFlag(FLAGS_api_key);
    if (const char* env = std::getenv("KVC_API_KEY");
        http_options.api.api_key.empty() && env != nullptr) {
      http_options.api.api_key = env;
    }
    for (absl::string_view origin :
         absl::StrSplit(absl::GetFlag(FLAGS_cors_origins), ',', absl::SkipWhitespace())) {
      http_options.api.cors_origins.emplace_back(origin);
    }
    for (absl::string_view alias :
         absl::StrSplit(absl::GetFlag(FLAGS_model_alias), ',', absl::SkipWhitespace())) {
      http_options.api.model_aliases.emplace_back(alias);
    }
    auto started = router::HttpServer::Start(http_options, &router, tokenizer.get(), chat.get());
    if (!started.ok()) Fail(std::string(started.status().message()));
    http = std::move(*started);
    if (!absl::GetFlag(FLAGS_http_port_file).empty()) {
      std::ofstream(absl::GetFlag(FLAGS_http_port_file)) << http->port() << "\n";
    }
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  Log(absl::StrCat("routing for model '", config.model_identity, "' with policy ",
                   router::PolicyName(config.policy.kind), " on ",
                   listen.substr(0, listen.rfind(':')), ":", port,
                   http ? absl::StrCat(", HTTP on port ", http->port()) : ""));
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_port_file)) << port << "\n";
  }

  const int signal_number = WaitForTerminationSignal();
  Log(absl::StrCat("signal ", signal_number, ": shutting down"));
  if (http) http->Stop();
  health.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pool.Stop();  // no link thread waits on the loop any more
  loop.Shutdown();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace kvc

int main(int argc, char** argv) { return kvc::Main(argc, argv); }
