// kvctl: the command-line client of a kvcluster router.
//
//   kvctl generate --prompt TEXT | --file FILE | --tokens "1 2 3"  [sampling flags]
//   kvctl stats [--json]          per-worker hit rates, loads and index size
//   kvctl workers [--json]        the router's workers and their state
//   kvctl route --prompt TEXT     the routing decision only, with every candidate's cost
//   kvctl register HOST:PORT / kvctl deregister HOST:PORT
//   kvctl health [HOST:PORT]      grpc.health.v1 check of a router or worker (exit 0: SERVING)
//
// The router is --router HOST:PORT, else $KVC_ROUTER, else 127.0.0.1:50050.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"

ABSL_FLAG(std::string, router, "", "Router address; default $KVC_ROUTER or 127.0.0.1:50050.");
ABSL_FLAG(std::string, prompt, "", "generate/route: the prompt text.");
ABSL_FLAG(std::string, file, "", "generate/route: read the prompt text from this file.");
ABSL_FLAG(std::string, tokens, "", "generate/route: the prompt as token ids (\"1 2 3\").");
ABSL_FLAG(int32_t, max_tokens, 64, "generate: most tokens to generate.");
ABSL_FLAG(double, temperature, 0.0, "generate: sampling temperature (0: greedy).");
ABSL_FLAG(double, top_p, 1.0, "generate: nucleus sampling mass in (0, 1].");
ABSL_FLAG(int32_t, top_k, 0, "generate: keep the k most likely tokens (0: all).");
ABSL_FLAG(int64_t, seed, -1, "generate: sampling seed (-1: random).");
ABSL_FLAG(std::vector<std::string>, stop, {}, "generate: comma-separated stop strings.");
ABSL_FLAG(bool, ignore_eos, false, "generate: keep going past end-of-sequence tokens.");
ABSL_FLAG(std::string, cache_salt, "", "generate/route: per-request cache salt.");
ABSL_FLAG(bool, add_special_tokens, true, "generate/route: add the model's BOS to text prompts.");
ABSL_FLAG(bool, json, false, "Print JSON instead of text.");
ABSL_FLAG(std::string, service, "",
          "health: the service to ask about: empty = the server as a whole (liveness); "
          "kvcluster.v1.Router = the router has a READY worker (readiness).");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(600), "Deadline of the whole call.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(5),
          "How long to wait for the router to accept the connection.");

namespace kvc {
namespace {

namespace pb = ::kvcluster::v1;

[[noreturn]] void Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "kvctl: %s\n", message.c_str());
  std::exit(code);
}

std::string RouterAddress() {
  if (!absl::GetFlag(FLAGS_router).empty()) return absl::GetFlag(FLAGS_router);
  if (const char* env = std::getenv("KVC_ROUTER"); env != nullptr && *env != '\0') return env;
  return "127.0.0.1:50050";
}

std::unique_ptr<pb::Router::Stub> Connect() {
  const std::string address = RouterAddress();
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(
          std::chrono::system_clock::now() +
          absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_connect_timeout)))) {
    Fail(absl::StrCat("cannot reach the router at ", address,
                      " (is kvc-router running? set --router or $KVC_ROUTER)"),
         2);
  }
  return pb::Router::NewStub(channel);
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_timeout)));
}

void FailOn(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return;
  Fail(absl::StrCat(what, " failed: ", status.error_message(), " (",
                    static_cast<int>(status.error_code()), ")"));
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

pb::GenerateRequest BuildRequest() {
  pb::GenerateRequest request;
  const int sources = !absl::GetFlag(FLAGS_prompt).empty() + !absl::GetFlag(FLAGS_file).empty() +
                      !absl::GetFlag(FLAGS_tokens).empty();
  if (sources != 1) Fail("give exactly one of --prompt, --file or --tokens", 2);
  if (!absl::GetFlag(FLAGS_tokens).empty()) {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_tokens),
                                                 absl::ByAnyChar(" ,\n\t"), absl::SkipEmpty())) {
      uint32_t id = 0;
      if (!absl::SimpleAtoi(part, &id)) Fail(absl::StrCat("'", part, "' is not a token id"), 2);
      request.mutable_token_ids()->add_ids(id);
    }
  } else if (!absl::GetFlag(FLAGS_file).empty()) {
    std::ifstream in(absl::GetFlag(FLAGS_file), std::ios::binary);
    if (!in) Fail("cannot read " + absl::GetFlag(FLAGS_file), 2);
    std::stringstream text;
    text << in.rdbuf();
    request.set_text(text.str());
  } else {
    request.set_text(absl::GetFlag(FLAGS_prompt));
  }
  request.set_add_special_tokens(absl::GetFlag(FLAGS_add_special_tokens));
  request.set_cache_salt(absl::GetFlag(FLAGS_cache_salt));
  pb::SamplingParams* sampling = request.mutable_sampling();
  sampling->set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  sampling->set_temperature(absl::GetFlag(FLAGS_temperature));
  sampling->set_top_p(absl::GetFlag(FLAGS_top_p));
  sampling->set_top_k(absl::GetFlag(FLAGS_top_k));
  if (absl::GetFlag(FLAGS_seed) >= 0) sampling->set_seed(absl::GetFlag(FLAGS_seed));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) sampling->add_stop(stop);
  sampling->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  return request;
}

int Generate() {
  const pb::GenerateRequest request = BuildRequest();
  auto stub = Connect();
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub->Generate(&context, request);
  pb::GenerateResponse response;
  pb::GenerateResult result;
  std::vector<uint32_t> tokens;
  std::string text;
  while (reader->Read(&response)) {
    if (response.has_chunk()) {
      tokens.insert(tokens.end(), response.chunk().token_ids().begin(),
                    response.chunk().token_ids().end());
      text += response.chunk().text();
      if (!absl::GetFlag(FLAGS_json)) {
        std::fwrite(response.chunk().text().data(), 1, response.chunk().text().size(), stdout);
        std::fflush(stdout);
      }
    }
    if (response.has_result()) result = response.result();
  }
  FailOn(reader->Finish(), "generate");
  if (absl::GetFlag(FLAGS_json)) {
    std::string ids;
    for (uint32_t id : tokens) absl::StrAppend(&ids, ids.empty() ? "" : ", ", id);
    // A random or cut-off generation may end inside a UTF-8 sequence: such bytes become U+FFFD
    // so that the output stays valid JSON; token_ids carry the exact output.
    const std::string text_json =
        nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::printf("{\"text\": %s, \"token_ids\": [%s], \"result\": %s}\n", text_json.c_str(),
                ids.c_str(), ToJson(result).c_str());
    return 0;
  }
  std::printf("\n");
  std::fflush(stdout);
  std::fprintf(stderr,
               "[worker %s | finish %s | prompt %u tokens, %u cached | %u generated | "
               "ttft %.1f ms | %.1f ms/token]\n",
               result.worker_id().c_str(), pb::FinishReason_Name(result.finish_reason()).c_str(),
               result.usage().prompt_tokens(), result.usage().cached_prompt_tokens(),
               result.usage().completion_tokens(), result.timings().time_to_first_token_ms(),
               result.timings().time_per_output_token_ms());
  return 0;
}

int Stats() {
  auto stub = Connect();
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::StatsResponse stats;
  FailOn(stub->GetStats(&context, pb::GetStatsRequest(), &stats), "stats");
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", ToJson(stats).c_str());
    return 0;
  }
  std::printf("policy %s, up %.0f s; index: %llu blocks, %llu (block, worker) pairs, %s\n\n",
              stats.policy().c_str(), stats.uptime_seconds(),
              static_cast<unsigned long long>(stats.index().blocks()),
              static_cast<unsigned long long>(stats.index().block_worker_pairs()),
              FormatBytes(stats.index().memory_bytes()).c_str());
  std::printf("%-22s %8s %10s %10s %10s %7s %8s %6s %8s %7s %7s\n", "worker", "requests", "prompt",
              "predicted", "cached", "hit", "accuracy", "active", "blocks", "lag ms", "resyncs");
  auto row = [](const pb::WorkerStats& w) {
    std::printf("%-22s %8llu %10llu %10llu %10llu %6.1f%% %7.1f%% %6u %8llu %7.1f %7llu\n",
                w.worker_id().c_str(), static_cast<unsigned long long>(w.requests()),
                static_cast<unsigned long long>(w.prompt_tokens()),
                static_cast<unsigned long long>(w.predicted_cached_tokens()),
                static_cast<unsigned long long>(w.actual_cached_tokens()), 100 * w.hit_rate(),
                100 * w.routing_accuracy(), w.active_requests(),
                static_cast<unsigned long long>(w.indexed_blocks()), 1e3 * w.event_lag_seconds(),
                static_cast<unsigned long long>(w.resyncs()));
  };
  for (const pb::WorkerStats& w : stats.workers()) row(w);
  row(stats.total());
  return 0;
}

int Workers() {
  auto stub = Connect();
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::ListWorkersResponse workers;
  FailOn(stub->ListWorkers(&context, pb::ListWorkersRequest(), &workers), "workers");
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", ToJson(workers).c_str());
    return 0;
  }
  std::printf("%-22s %-12s %-10s %-8s %10s  %s\n", "address", "state", "source", "backend",
              "blocks", "reason");
  for (const pb::WorkerStatus& w : workers.workers()) {
    std::string state = pb::WorkerState_Name(w.state()).substr(strlen("WORKER_STATE_"));
    std::string source = pb::WorkerSource_Name(w.source()).substr(strlen("WORKER_SOURCE_"));
    std::printf("%-22s %-12s %-10s %-8s %10llu  %s\n", w.address().c_str(), state.c_str(),
                source.c_str(), w.info().backend().c_str(),
                static_cast<unsigned long long>(w.info().capacity_blocks()), w.reason().c_str());
  }
  return 0;
}

int Route() {
  pb::RouteRequest request;
  *request.mutable_request() = BuildRequest();
  auto stub = Connect();
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::RouteResponse response;
  FailOn(stub->Route(&context, request, &response), "route");
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", ToJson(response).c_str());
    return 0;
  }
  std::printf("-> %s (%s) by policy %s; prompt %u tokens, %u full blocks\n",
              response.worker_id().c_str(), response.address().c_str(), response.policy().c_str(),
              response.prompt_tokens(), response.prompt_blocks());
  std::printf("%-22s %8s %8s %12s %10s\n", "candidate", "matched", "prefill", "decode load",
              "cost");
  for (const pb::CandidateScore& c : response.candidates()) {
    std::printf("%-22s %8u %8u %12.1f %10.1f\n", c.worker_id().c_str(), c.matched_blocks(),
                c.prefill_blocks(), c.decode_load_blocks(), c.cost());
  }
  return 0;
}

int ChangeWorker(bool add, const std::vector<char*>& args) {
  if (args.size() != 3) Fail(absl::StrCat("usage: kvctl ", args[1], " HOST:PORT"), 2);
  auto stub = Connect();
  grpc::ClientContext context;
  SetDeadline(&context);
  if (add) {
    pb::RegisterWorkerRequest request;
    request.set_address(args[2]);
    pb::RegisterWorkerResponse response;
    FailOn(stub->RegisterWorker(&context, request, &response), "register");
    std::printf("registered %s\n", args[2]);
  } else {
    pb::DeregisterWorkerRequest request;
    request.set_address(args[2]);
    pb::DeregisterWorkerResponse response;
    FailOn(stub->DeregisterWorker(&context, request, &response), "deregister");
    std::printf("deregistered %s\n", args[2]);
  }
  return 0;
}

// The standard gRPC health check of any kvcluster server (router or worker), for container
// health checks: exit 0 when the server answers SERVING for --service, 1 when it answers
// anything else or the call fails (NOT_FOUND for a service it does not know), 2 when it
// cannot be reached within --connect-timeout.
int Health(const std::vector<char*>& args) {
  if (args.size() > 3) Fail("usage: kvctl health [HOST:PORT]", 2);
  const std::string address = args.size() == 3 ? args[2] : RouterAddress();
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(
          std::chrono::system_clock::now() +
          absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_connect_timeout)))) {
    Fail(absl::StrCat("cannot reach ", address), 2);
  }
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  FailOn(stub->Check(&context, request, &response), "health");
  const std::string status =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("{\"address\": \"%s\", \"status\": \"%s\"}\n", address.c_str(), status.c_str());
  } else {
    std::printf("%s %s\n", address.c_str(), status.c_str());
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

int Main(int argc, char** argv) {
  NormalizeFlagNames(argc, argv);
  absl::SetProgramUsageMessage(
      "Client of a kvcluster router.\n"
      "  kvctl generate --prompt TEXT | --file FILE | --tokens IDS  [--max-tokens N ...]\n"
      "  kvctl stats [--json]\n"
      "  kvctl workers [--json]\n"
      "  kvctl route --prompt TEXT [--json]\n"
      "  kvctl register HOST:PORT | kvctl deregister HOST:PORT\n"
      "  kvctl health [HOST:PORT] [--service NAME]   (grpc.health.v1; exit 0 when SERVING)\n"
      "The router is --router HOST:PORT, else $KVC_ROUTER, else 127.0.0.1:50050.");
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2)
    Fail(
        "missing command (generate, stats, workers, route, register, "
        "deregister, health); see kvctl --help",
        2);
  const std::string command = args[1];
  if (command == "generate") return Generate();
  if (command == "stats") return Stats();
  if (command == "workers") return Workers();
  if (command == "route") return Route();
  if (command == "register") return ChangeWorker(true, args);
  if (command == "deregister") return ChangeWorker(false, args);
  if (command == "health") return Health(args);
  Fail(absl::StrCat("unknown command '", command, "'; see kvctl --help"), 2);
}

}  // namespace
}  // namespace kvc

int main(int argc, char** argv) { return kvc::Main(argc, argv); }
