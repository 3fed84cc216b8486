// kvc_bench_router: what the router costs and how fast it decides.
//   kvc_bench_router [--json] [--report FILE] [--quick]
// 1. Overhead: Generate requests (64-token prompt, 1 output token) sent to a worker
//    directly and through the router in pairs (the same prompt both ways, back to back, the
//    order alternating); the router's added latency is the percentiles of the per-pair
//    differences.
// 2. Decisions: Route calls for 4096-token prompts against a router with 64 registered
//    workers (real kvc-worker processes on the tiny model), many in flight, for a fixed time.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_writer.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/bench_args.h"
#include "common/process_setup.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "tests/util/cluster.h"

namespace kvc {
namespace {

namespace pb = ::kvcluster::v1;

void Progress(const std::string& what) { std::fprintf(stderr, "bench router: %s\n", what.c_str()); }

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "bench router: %s\n", what.c_str());
  std::exit(1);
}

pb::GenerateRequest Request(uint32_t seed, int tokens, int max_tokens) {
  pb::GenerateRequest request;
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;
  for (int i = 0; i < tokens; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    request.mutable_token_ids()->add_ids(x % 500);
  }
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  return request;
}

template <typename Stub>
double GenerateSeconds(Stub* stub, const pb::GenerateRequest& request) {
  grpc::ClientContext context;
  const absl::Time start = absl::Now();
  auto reader = stub->Generate(&context, request);
  pb::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  if (const grpc::Status status = reader->Finish(); !status.ok()) {
    Fail("a Generate call failed: " + status.error_message());
  }
  return absl::ToDoubleSeconds(absl::Now() - start);
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
  return (utime + stime) / double(sysconf(_SC_CLK_TCK));
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * values.size()))];
}

int Main(int argc, char** argv) {
  const BenchArgs args =
      ParseBenchArgs(argc, argv, {}, "kvc_bench_router [--json] [--report FILE] [--quick]");
  const bool json = args.json, quick = args.quick;
  const std::string& report = args.report;
  TuneMallocForServing();  // the client's gRPC buffers, as in the servers
  const int requests = quick ? 300 : 5000;
  testing::TempDir dir;

  // 1. Overhead against a single worker.
  double direct_p50, direct_p99, routed_p50, routed_p99, added_p50, added_p99;
  {
    Progress("starting a router and one worker");
    testing::Cluster cluster;
    if (absl::Status s = cluster.Start(dir.path(), {.num_workers = 1}); !s.ok()) {
      Fail(std::string(s.message()));
    }
    auto worker = pb::Worker::NewStub(
        grpc::CreateChannel(cluster.worker_address(0), grpc::InsecureChannelCredentials()));
    auto router = pb::Router::NewStub(
        grpc::CreateChannel(cluster.router_address(), grpc::InsecureChannelCredentials()));
    // Wait until the router serves, then warm both paths.
    for (int tries = 0;; ++tries) {
      grpc::ClientContext context;
      auto reader = router->Generate(&context, Request(1, 64, 1));
      pb::GenerateResponse response;
      while (reader->Read(&response)) {
      }
      if (reader->Finish().ok()) break;
      if (tries > 200) Fail("the router never became ready");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (int i = 0; i < 50; ++i) {
      GenerateSeconds(worker.get(), Request(i, 64, 1));
      GenerateSeconds(router.get(), Request(i, 64, 1));
    }
    Progress(absl::StrCat(requests, " requests each way, interleaved"));
    std::vector<double> direct(requests), routed(requests), added(requests);
    for (int i = 0; i < requests; ++i) {
      // The same prompt both ways, so both see the same cache state (a hit after the first).
      const pb::GenerateRequest request = Request(1000 + i % 50, 64, 1);
      if (i % 2 == 0) {
        direct[i] = GenerateSeconds(worker.get(), request);
        routed[i] = GenerateSeconds(router.get(), request);
      } else {
        routed[i] = GenerateSeconds(router.get(), request);
        direct[i] = GenerateSeconds(worker.get(), request);
      }
      added[i] = routed[i] - direct[i];
    }
    direct_p50 = Percentile(direct, 0.5) * 1e6;
    direct_p99 = Percentile(direct, 0.99) * 1e6;
    routed_p50 = Percentile(routed, 0.5) * 1e6;
    routed_p99 = Percentile(routed, 0.99) * 1e6;
    added_p50 = Percentile(added, 0.5) * 1e6;
    added_p99 = Percentile(added, 0.99) * 1e6;
  }

  // 2. Route decisions with 64 workers.
  const int num_workers = 64;
  double decisions_per_s = 0;
  // CPU time per decision spent by the router and by this client, which share the cores.
  double router_cpu_us = 0, client_cpu_us = 0;
  {
    Progress(absl::StrCat("starting a router and ", num_workers, " workers"));
    testing::TempDir dir64;
    testing::Cluster cluster;
    if (absl::Status s = cluster.Start(
            dir64.path(), {.num_workers = num_workers,
                           .worker_flags = {"--max-context", "8192", "--kv-cache-memory", "4MiB"}});
        !s.ok()) {
      Fail(std::string(s.message()));
    }
    auto router = pb::Router::NewStub(
        grpc::CreateChannel(cluster.router_address(), grpc::InsecureChannelCredentials()));
    for (int tries = 0;; ++tries) {
      grpc::ClientContext context;
      pb::ListWorkersResponse workers;
      int ready = 0;
      if (router->ListWorkers(&context, {}, &workers).ok()) {
        for (const auto& w : workers.workers()) ready += w.state() == pb::WORKER_STATE_READY;
      }
      if (ready == num_workers) break;
      if (tries > 600) Fail("not every worker became ready");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // Give the index something to match: 64 prompts of 4096 tokens, each cached somewhere.
    Progress("filling the index");
    std::vector<pb::RouteRequest> prompts;
    for (int i = 0; i < 64; ++i) {
      GenerateSeconds(router.get(), Request(5000 + i, 4096, 1));
      pb::RouteRequest route;
      *route.mutable_request() = Request(5000 + i, 4096, 1);
      prompts.push_back(route);
    }
    // The client sends pre-serialized requests and leaves the answers unparsed (a generic
    // stub), so that the cores it shares with the router spend as little as possible on it.
    std::vector<grpc::ByteBuffer> serialized(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      bool own_buffer = false;
      if (!grpc::GenericSerialize<grpc::ProtoBufferWriter, pb::RouteRequest>(
               prompts[i], &serialized[i], &own_buffer)
               .ok()) {
        Fail("cannot serialize a Route request");
      }
    }
    grpc::GenericStub generic(
        grpc::CreateChannel(cluster.router_address(), grpc::InsecureChannelCredentials()));
    const std::string route_method = "/kvcluster.v1.Router/Route";
    constexpr int kInFlight = 64;
    Progress(absl::StrCat("Route calls, ", kInFlight, " in flight"));
    const absl::Duration duration = quick ? absl::Seconds(2) : absl::Seconds(8);
    // One thread drives every call through one completion queue: no callback threads and no
    // locks, so the client's share of the cores it has in common with the router stays small.
    struct Call {
      grpc::ClientContext context;
      grpc::ByteBuffer response;
      grpc::Status status;
      std::unique_ptr<grpc::GenericClientAsyncResponseReader> reader;
    };
    grpc::CompletionQueue cq;
    int64_t issued = 0, completed = 0, failed = 0;
    std::string first_error;
    auto issue = [&] {
      auto* call = new Call();
      call->reader = generic.PrepareUnaryCall(&call->context, route_method,
                                              serialized[issued++ % serialized.size()], &cq);
      call->reader->StartCall();
      call->reader->Finish(&call->response, &call->status, call);
    };
    const double router_cpu_start = ProcessCpuSeconds(cluster.router().pid());
    const double client_cpu_start = ProcessCpuSeconds(getpid());
    const absl::Time start = absl::Now();
    const absl::Time end = start + duration;
    for (int i = 0; i < kInFlight; ++i) issue();
    int in_flight = kInFlight;
    void* tag;
    bool ok;
    while (in_flight > 0 && cq.Next(&tag, &ok)) {
      std::unique_ptr<Call> call(static_cast<Call*>(tag));
      --in_flight;
      if (ok && call->status.ok()) {
        ++completed;
      } else if (failed++ == 0) {
        first_error = call->status.error_message();
      }
      if (absl::Now() < end) {
        issue();
        ++in_flight;
      }
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    decisions_per_s = completed / seconds;
    router_cpu_us = (ProcessCpuSeconds(cluster.router().pid()) - router_cpu_start) * 1e6 /
                    double(std::max<int64_t>(1, completed));
    client_cpu_us = (ProcessCpuSeconds(getpid()) - client_cpu_start) * 1e6 /
                    double(std::max<int64_t>(1, completed));
    if (failed > 0) {
      Fail(absl::StrCat(failed, " Route calls failed; the first: ", first_error));
    }
  }

  if (json) {
    std::printf(
        "{\"router_overhead_p50_us\": %.1f, \"router_overhead_p99_us\": %.1f, "
        "\"direct_p50_us\": %.1f, \"direct_p99_us\": %.1f, \"routed_p50_us\": %.1f, "
        "\"routed_p99_us\": %.1f, \"route_decisions_per_s\": %.0f, "
        "\"router_cpu_us_per_decision\": %.1f, \"client_cpu_us_per_decision\": %.1f}\n",
        added_p50, added_p99, direct_p50, direct_p99, routed_p50, routed_p99, decisions_per_s,
        router_cpu_us, client_cpu_us);
  }
  const std::string table = absl::StrFormat(
      "| figure | value | goal |\n|---|---|---|\n"
      "| Generate latency, direct to the worker, p50 / p99 | %.0f / %.0f us | |\n"
      "| Generate latency, through the router, p50 / p99 | %.0f / %.0f us | |\n"
      "| added by the router (per-pair difference), p50 | %.0f us | < 200 us (%s) |\n"
      "| added by the router (per-pair difference), p99 | %.0f us | |\n"
      "| Route decisions/s, 4096-token prompts, %d workers | %.0f | >= 20000 (%s) |\n"
      "| router CPU per Route decision | %.1f us | |\n"
      "| client CPU per Route call (same cores) | %.1f us | |\n",
      direct_p50, direct_p99, routed_p50, routed_p99, added_p50, added_p50 < 200 ? "met" : "missed",
      added_p99, num_workers, decisions_per_s, decisions_per_s >= 20000 ? "met" : "missed",
      router_cpu_us, client_cpu_us);
  if (!json) std::printf("%s", table.c_str());
  if (!report.empty()) {
    std::ofstream out(report);
    out << "## router\n\nCommand: `scripts/bench router" << (quick ? " --quick" : "")
        << "` (build/bin/kvc_bench_router)  \nCPU: " << CpuModelName() << ", "
        << std::thread::hardware_concurrency()
        << " threads, shared by the client, the router and the workers  \n"
        << "Overhead: " << requests
        << " pairs of Generate calls, one direct to the worker and one through the "
           "router, the same 64-token prompt both ways (1 output token, tiny model), back to back "
           "in alternating order; the added latency is the percentiles of the differences within "
           "pairs. Decisions: Route calls with 64 in flight, driven by one client thread on a "
           "completion queue with pre-serialized requests, for "
        << (quick ? 2 : 8) << " s, prompts of 4096 token ids, every worker a real kvc-worker.\n\n"
        << table;
  }
  return 0;
}

}  // namespace
}  // namespace kvc

int main(int argc, char** argv) { return kvc::Main(argc, argv); }
