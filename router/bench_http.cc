// kvc_bench_http: what the OpenAI-compatible HTTP API costs next to the router's gRPC API, for
// the same requests against the same router and worker.
//   kvc_bench_http [--json] [--report FILE] [--quick] [--clients N]
// 1. Latency: requests (64-token prompt as token ids, 1 output token, greedy) sent one at a
//    time, in pairs: the same prompt over gRPC Generate and over HTTP /v1/completions (whole,
//    then in a second pair with stream=true), back to back, the order alternating. An HTTP
//    path's added latency is the percentiles of its per-pair differences (the difference of two
//    paths' percentiles compares different requests' tails and can even go negative).
// 2. Throughput: N clients (threads, each with its own keep-alive connection or channel) send
//    such requests back to back over each path in turn, for a few rounds: requests/s, and the
//    router's CPU time per request (from /proc).
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/bench_args.h"
#include "common/process_setup.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "tests/util/cluster.h"

namespace kvc {
namespace {

namespace pb = ::kvcluster::v1;

void Progress(const std::string& what) { std::fprintf(stderr, "bench http: %s\n", what.c_str()); }

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "bench http: %s\n", what.c_str());
  std::exit(1);
}

constexpr int kPromptTokens = 64;
constexpr int kPrompts = 50;  // distinct prompts, reused: both paths see the same cache state

std::vector<uint32_t> PromptIds(uint32_t seed) {
  std::vector<uint32_t> ids;
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;
  for (int i = 0; i < kPromptTokens; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ids.push_back(x % 500);
  }
  return ids;
}

// The same request in both APIs.
struct Workload {
  std::vector<pb::GenerateRequest> grpc;
  std::vector<std::string> http;
  std::vector<std::string> http_stream;
};

Workload MakeWorkload(const std::string& model) {
  Workload w;
  for (int i = 0; i < kPrompts; ++i) {
    const std::vector<uint32_t> ids = PromptIds(1000 + i);
    pb::GenerateRequest request;
    request.mutable_token_ids()->mutable_ids()->Assign(ids.begin(), ids.end());
    request.mutable_sampling()->set_max_tokens(1);
    request.mutable_sampling()->set_ignore_eos(true);
    w.grpc.push_back(request);
    std::string prompt;
    for (uint32_t id : ids) absl::StrAppend(&prompt, prompt.empty() ? "" : ",", id);
    const std::string body =
        absl::StrCat(R"({"model": ")", model, R"(", "prompt": [)", prompt,
                     R"(], "max_tokens": 1, "temperature": 0, )", R"("ignore_eos": true)");
    w.http.push_back(body + "}");
    w.http_stream.push_back(body + R"(, "stream": true})");
  }
  return w;
}

void GrpcGenerate(pb::Router::Stub* stub, const pb::GenerateRequest& request) {
  grpc::ClientContext context;
  auto reader = stub->Generate(&context, request);
  pb::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  if (const grpc::Status status = reader->Finish(); !status.ok()) {
    Fail("a gRPC Generate call failed: " + status.error_message());
  }
}

void HttpGenerate(httplib::Client* client, const std::string& body) {
  auto result = client->Post("/v1/completions", body, "application/json");
  if (!result) Fail("an HTTP request failed: " + httplib::to_string(result.error()));
  if (result->status != 200) Fail(absl::StrCat("HTTP ", result->status, ": ", result->body));
  // A whole response carries its usage; a stream ends with [DONE].
  if (result->body.find("\"usage\"") == std::string::npos &&
      result->body.find("[DONE]") == std::string::npos) {
    Fail("an HTTP response without a result: " + result->body);
  }
}

std::unique_ptr<httplib::Client> HttpClient(int port) {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  client->set_keep_alive(true);
  client->set_tcp_nodelay(true);
  client->set_read_timeout(std::chrono::seconds(60));
  return client;
}

// The 1-minute load average, to judge how quiet the shared machine was.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one_minute;
  in >> one_minute;
  return one_minute.empty() ? "unknown" : one_minute;
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * values.size()))];
}

// CPU seconds (user + system) a process has used so far, from /proc/PID/stat; -1 if unreadable.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return -1;
  // Fields after the command name (which may hold spaces) start after the last ')'.
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Requests done, seconds and router CPU seconds, summed over a path's rounds.
struct Throughput {
  int64_t requests = 0;
  double seconds = 0;
  double router_cpu_seconds = 0;

  double requests_per_s() const { return requests / std::max(seconds, 1e-9); }
  double router_cpu_us_per_request() const {
    return router_cpu_seconds / std::max<int64_t>(requests, 1) * 1e6;
  }
};

// `clients` threads each run `one(thread, i)` back to back for `duration`; adds to *total.
template <typename One>
void Measure(int clients, absl::Duration duration, pid_t router_pid, One one, Throughput* total) {
  std::atomic<int64_t> done{0};
  const double cpu_before = ProcessCpuSeconds(router_pid);
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; absl::Now() < end; ++i) {
        one(t, t * 7 + i);
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  total->seconds += absl::ToDoubleSeconds(absl::Now() - start);
  total->router_cpu_seconds += ProcessCpuSeconds(router_pid) - cpu_before;
  total->requests += done.load();
}

int Main(int argc, char** argv) {
  const BenchArgs args = ParseBenchArgs(
      argc, argv, {"--clients"}, "kvc_bench_http [--json] [--report FILE] [--quick] [--clients N]");
  int clients = 8;
  if (!args.Value("--clients").empty() &&
      (!absl::SimpleAtoi(args.Value("--clients"), &clients) || clients <= 0)) {
    Fail("--clients must be a positive number");
  }
  const int requests = args.quick ? 300 : 2000;
  const int rounds = args.quick ? 1 : 4;
  const absl::Duration duration = args.quick ? absl::Seconds(3) : absl::Seconds(4);

  const std::string load_before = LoadAverage();
  testing::TempDir dir;
  Progress("starting a router and one worker");
  testing::Cluster cluster;
  if (absl::Status s = cluster.Start(dir.path(), {.num_workers = 1}); !s.ok()) {
    Fail(std::string(s.message()));
  }
  int http_port = 0;
  if (!absl::SimpleAtoi(
          absl::StripAsciiWhitespace(testing::ReadFile(dir.path() + "/router-http.port")),
          &http_port)) {
    Fail("the router wrote no HTTP port");
  }
  const Workload workload = MakeWorkload("tiny");
  auto channel = grpc::CreateChannel(cluster.router_address(), grpc::InsecureChannelCredentials());
  auto router = pb::Router::NewStub(channel);
  auto http = HttpClient(http_port);
  // Wait until the router serves, then warm every path.
  for (int tries = 0;; ++tries) {
    auto result = http->Post("/v1/completions", workload.http[0], "application/json");
    if (result && result->status == 200) break;
    if (tries > 200) Fail("the router never became ready");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (int i = 0; i < kPrompts; ++i) {
    GrpcGenerate(router.get(), workload.grpc[i]);
    HttpGenerate(http.get(), workload.http[i]);
    HttpGenerate(http.get(), workload.http_stream[i]);
  }

  // 1. Latency, one request at a time, in pairs: each HTTP call next to a gRPC call for the
  // same prompt, the order alternating so that neither path always runs second (warmer).
  Progress(absl::StrCat(requests, " pairs each for HTTP and for HTTP streaming against gRPC"));
  auto micros = [](const auto& call) {
    const absl::Time start = absl::Now();
    call();
    return absl::ToDoubleSeconds(absl::Now() - start) * 1e6;
  };
  // Times a gRPC call and an HTTP call of the same prompt, back to back in the given order;
  // returns the HTTP call's time minus the gRPC call's.
  auto pair = [&](int p, const std::string& http_body, bool grpc_first, std::vector<double>* grpc_s,
                  std::vector<double>* http_s) {
    auto grpc_call = [&] { GrpcGenerate(router.get(), workload.grpc[p]); };
    auto http_call = [&] { HttpGenerate(http.get(), http_body); };
    double grpc_us = 0, http_us = 0;
    if (grpc_first) {
      grpc_us = micros(grpc_call);
      http_us = micros(http_call);
    } else {
      http_us = micros(http_call);
      grpc_us = micros(grpc_call);
    }
    grpc_s->push_back(grpc_us);
    http_s->push_back(http_us);
    return http_us - grpc_us;
  };
  std::vector<double> grpc_s, http_s, sse_s, http_added, sse_added;
  for (int i = 0; i < requests; ++i) {
    const int p = i % kPrompts;
    http_added.push_back(pair(p, workload.http[p], i % 2 == 0, &grpc_s, &http_s));
    sse_added.push_back(pair(p, workload.http_stream[p], i % 2 == 1, &grpc_s, &sse_s));
  }
  // gRPC's figures are over the calls of both kinds of pair.
  const double grpc_p50 = Percentile(grpc_s, 0.5), grpc_p99 = Percentile(grpc_s, 0.99);
  const double http_p50 = Percentile(http_s, 0.5), http_p99 = Percentile(http_s, 0.99);
  const double sse_p50 = Percentile(sse_s, 0.5), sse_p99 = Percentile(sse_s, 0.99);
  const double added_p50 = Percentile(http_added, 0.5), added_p99 = Percentile(http_added, 0.99);
  const double sse_added_p50 = Percentile(sse_added, 0.5);
  const double sse_added_p99 = Percentile(sse_added, 0.99);

  // 2. Throughput with `clients` in flight: the paths take turns, a few rounds each, so that
  // other load on the shared machine falls on all of them alike.
  const pid_t router_pid = cluster.router().pid();
  std::vector<std::unique_ptr<pb::Router::Stub>> stubs;
  std::vector<std::unique_ptr<httplib::Client>> http_clients;
  for (int t = 0; t < clients; ++t) {
    // One channel per client, as separate HTTP connections are.
    grpc::ChannelArguments channel_args;
    channel_args.SetInt("kvc.client", t);
    stubs.push_back(pb::Router::NewStub(grpc::CreateCustomChannel(
        cluster.router_address(), grpc::InsecureChannelCredentials(), channel_args)));
    http_clients.push_back(HttpClient(http_port));
  }
  Throughput grpc_tp, http_tp, sse_tp;
  for (int round = 0; round < rounds; ++round) {
    Progress(absl::StrCat("throughput round ", round + 1, "/", rounds, ": ", clients, " clients, ",
                          absl::FormatDuration(duration), " per path"));
    Measure(
        clients, duration, router_pid,
        [&](int t, int i) { GrpcGenerate(stubs[t].get(), workload.grpc[i % kPrompts]); }, &grpc_tp);
    Measure(
        clients, duration, router_pid,
        [&](int t, int i) { HttpGenerate(http_clients[t].get(), workload.http[i % kPrompts]); },
        &http_tp);
    Measure(
        clients, duration, router_pid,
        [&](int t, int i) {
          HttpGenerate(http_clients[t].get(), workload.http_stream[i % kPrompts]);
        },
        &sse_tp);
  }

  const double rate_ratio = http_tp.requests_per_s() / grpc_tp.requests_per_s();
  if (args.json) {
    std::printf(
        "{\"grpc_p50_us\": %.1f, \"grpc_p99_us\": %.1f, \"http_p50_us\": %.1f, "
        "\"http_p99_us\": %.1f, \"http_stream_p50_us\": %.1f, \"http_stream_p99_us\": %.1f, "
        "\"http_added_p50_us\": %.1f, \"http_added_p99_us\": %.1f, "
        "\"http_stream_added_p50_us\": %.1f, \"http_stream_added_p99_us\": %.1f, "
        "\"clients\": %d, \"grpc_requests_per_s\": %.1f, "
        "\"http_requests_per_s\": %.1f, \"http_stream_requests_per_s\": %.1f, "
        "\"http_vs_grpc_rate_ratio\": %.3f, \"grpc_router_cpu_us_per_request\": %.1f, "
        "\"http_router_cpu_us_per_request\": %.1f, "
        "\"http_stream_router_cpu_us_per_request\": %.1f}\n",
        grpc_p50, grpc_p99, http_p50, http_p99, sse_p50, sse_p99, added_p50, added_p99,
        sse_added_p50, sse_added_p99, clients, grpc_tp.requests_per_s(), http_tp.requests_per_s(),
        sse_tp.requests_per_s(), rate_ratio, grpc_tp.router_cpu_us_per_request(),
        http_tp.router_cpu_us_per_request(), sse_tp.router_cpu_us_per_request());
  }
  const std::string table = absl::StrFormat(
      "| figure | gRPC Generate | HTTP /v1/completions | HTTP, stream=true |\n"
      "|---|---|---|---|\n"
      "| latency p50, one at a time | %.0f us | %.0f us | %.0f us |\n"
      "| latency p99, one at a time | %.0f us | %.0f us | %.0f us |\n"
      "| added over gRPC (per-pair difference), p50 / p99 | | %.0f / %.0f us | %.0f / %.0f us |\n"
      "| requests/s, %d clients | %.0f | %.0f (%.2fx) | %.0f (%.2fx) |\n"
      "| router CPU per request, %d clients | %.0f us | %.0f us | %.0f us |\n",
      grpc_p50, http_p50, sse_p50, grpc_p99, http_p99, sse_p99, added_p50, added_p99, sse_added_p50,
      sse_added_p99, clients, grpc_tp.requests_per_s(), http_tp.requests_per_s(), rate_ratio,
      sse_tp.requests_per_s(), sse_tp.requests_per_s() / grpc_tp.requests_per_s(), clients,
      grpc_tp.router_cpu_us_per_request(), http_tp.router_cpu_us_per_request(),
      sse_tp.router_cpu_us_per_request());
  if (!args.json) std::printf("%s", table.c_str());
  if (!args.report.empty()) {
    std::ofstream out(args.report);
    out << "## http\n\nCommand: `scripts/bench http" << (args.quick ? " --quick" : "")
        << (args.Value("--clients").empty() ? "" : " --clients " + args.Value("--clients"))
        << "` (build/bin/kvc_bench_http)  \nCPU: " << CpuModelName() << ", "
        << std::thread::hardware_concurrency()
        << " threads, shared by the clients, the router and the worker; load average "
        << load_before << " before the run  \n"
        << "The same requests (64-token prompt as token ids, 1 output token, greedy, tiny model, "
           "one worker) through the router's gRPC API and its OpenAI-compatible HTTP API. "
           "Latency: "
        << requests
        << " pairs of calls for each HTTP path, one at a time: a gRPC call and an HTTP call "
           "(whole, or in its own pairs with stream=true) for the same prompt, back to back in "
           "alternating order; the added latency is the percentiles of the differences within "
           "pairs, and the gRPC column is over the calls of both kinds of pair. Throughput: "
        << clients << " client threads sending back to back, the paths taking turns: " << rounds
        << " rounds of " << absl::FormatDuration(duration)
        << " per path; router CPU from /proc. The clients share the cores with the router and "
           "the worker, so requests/s also reflects each client library's own cost; router CPU "
           "per request is the path's cost alone.\n\n"
        << table;
  }
  return 0;
}

}  // namespace
}  // namespace kvc

int main(int argc, char** argv) { return kvc::Main(argc, argv); }
