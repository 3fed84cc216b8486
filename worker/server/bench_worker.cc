// kvc_bench_worker: the worker through gRPC on loopback, on a Llama-3.2-1B-shaped model.
//   kvc_bench_worker [--json] [--report FILE] [--model DIR] [--quick]
// Without --model, kvc-make-model writes the llama-3.2-1b-shape preset once into
// $TMPDIR/kvc-bench-llama-3.2-1b-shape (kept for later runs).
// Measures: output tokens/s with 1, 8 and 32 concurrent streams; time to first token of a
// 2048-token prompt cold vs with its first 2032 tokens cached; and the gRPC cost per token:
// decode time per token through kvc-worker vs the same engine in this process.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/bench_args.h"
#include "common/check.h"
#include "common/process_setup.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "tests/util/process.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/engine/engine.h"
#include "worker/model/loader.h"

namespace kvc {
namespace {

namespace pb = ::kvcluster::v1;

void Progress(const std::string& what) { std::fprintf(stderr, "bench worker: %s\n", what.c_str()); }

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "bench worker: %s\n", what.c_str());
  std::exit(1);
}

std::vector<uint32_t> Tokens(uint32_t seed, int n) {
  std::vector<uint32_t> ids(n);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ids[i] = 1000 + x % 100000;
  }
  return ids;
}

struct StreamTiming {
  double ttft_s = 0;
  double tpot_s = 0;         // mean time between tokens after the first, seen by the client
  double worker_tpot_s = 0;  // the same, measured inside the worker as the engine emits them
  int tokens = 0;
  uint32_t cached_tokens = 0;
};

StreamTiming Generate(pb::Worker::Stub* stub, const std::vector<uint32_t>& prompt, int max_tokens) {
  pb::GenerateRequest request;
  for (uint32_t id : prompt) request.mutable_token_ids()->add_ids(id);
  request.mutable_sampling()->set_max_tokens(max_tokens);
  request.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext context;
  const absl::Time start = absl::Now();
  absl::Time first, last;
  StreamTiming timing;
  auto reader = stub->Generate(&context, request);
  pb::GenerateResponse response;
  while (reader->Read(&response)) {
    if (response.has_chunk() && response.chunk().token_ids_size() > 0) {
      last = absl::Now();
      if (timing.tokens == 0) first = last;
      timing.tokens += response.chunk().token_ids_size();
    }
    if (response.has_result()) {
      timing.cached_tokens = response.result().usage().cached_prompt_tokens();
      timing.worker_tpot_s = response.result().timings().time_per_output_token_ms() / 1e3;
    }
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) Fail(absl::StrCat("Generate failed: ", status.error_message()));
  timing.ttft_s = absl::ToDoubleSeconds(first - start);
  if (timing.tokens > 1) timing.tpot_s = absl::ToDoubleSeconds(last - first) / (timing.tokens - 1);
  return timing;
}

double Throughput(pb::Worker::Stub* stub, int streams, int prompt_len, int max_tokens,
                  uint32_t seed) {
  std::vector<std::thread> threads;
  std::vector<int> tokens(streams);
  const absl::Time start = absl::Now();
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back(
        [&, s] { tokens[s] = Generate(stub, Tokens(seed + s, prompt_len), max_tokens).tokens; });
  }
  for (std::thread& t : threads) t.join();
  return std::accumulate(tokens.begin(), tokens.end(), 0) /
         absl::ToDoubleSeconds(absl::Now() - start);
}

// Decode time per token of one request on the engine in this process.
double InProcessTpot(const std::string& model_dir, const std::vector<uint32_t>& prompt,
                     int max_tokens) {
  auto weights = model::LoadModel(model_dir, {.prefault = true});
  if (!weights.ok()) Fail(weights.status().ToString());
  backend::CpuBackendOptions options;
  options.kv_cache.num_blocks = 512;
  auto backend = backend::CreateCpuBackend(*weights, options);
  if (!backend.ok()) Fail(backend.status().ToString());
  engine::Engine engine(backend->get(), engine::EngineOptions{});
  engine::GenerationOptions generation;
  generation.max_tokens = max_tokens;
  generation.ignore_eos = true;
  std::vector<int32_t> ids(prompt.begin(), prompt.end());
  if (!engine.Submit(1, ids, generation, 0).ok()) Fail("in-process submit failed");
  std::vector<engine::RequestOutput> outputs;
  absl::Time first, last;
  int tokens = 0;
  while (!engine.idle()) {
    if (!engine.Step(&outputs).ok()) Fail("in-process step failed");
    for (const auto& o : outputs) {
      if (o.new_tokens.empty()) continue;
      last = absl::Now();
      if (tokens == 0) first = last;
      tokens += o.new_tokens.size();
    }
    outputs.clear();
  }
  return absl::ToDoubleSeconds(last - first) / (tokens - 1);
}

int Main(int argc, char** argv) {
  const BenchArgs args = ParseBenchArgs(
      argc, argv, {"--model"}, "kvc_bench_worker [--json] [--report FILE] [--model DIR] [--quick]");
  const bool json = args.json, quick = args.quick;
  const std::string& report = args.report;
  std::string model_dir = args.Value("--model");
  const std::string bin = testing::BinDir();
  const std::string work = (std::filesystem::temp_directory_path() / "kvc-bench-worker").string();
  std::filesystem::create_directories(work);
  if (model_dir.empty()) {
    model_dir = (std::filesystem::temp_directory_path() / "kvc-bench-llama-3.2-1b-shape").string();
    if (!std::filesystem::exists(model_dir + "/config.json")) {
      Progress("writing the llama-3.2-1b-shape model (once) to " + model_dir);
      auto made = testing::Run(
          {bin + "/kvc-make-model", "--preset", "llama-3.2-1b-shape", "--out", model_dir},
          work + "/make-model.log", absl::Minutes(30));
      if (!made.ok() || *made != 0)
        Fail("kvc-make-model failed: " + testing::ReadFile(work + "/make-model.log"));
    }
  }
  const int decode_tokens = quick ? 8 : 32;
  const int long_prompt = 2048;

  Progress("starting kvc-worker on " + model_dir);
  std::filesystem::remove(work + "/port");
  auto worker = testing::Process::Start(
      {bin + "/kvc-worker", "--model", model_dir, "--listen", "127.0.0.1:0", "--port-file",
       work + "/port", "--kv-cache-memory", "3GiB", "--max-num-seqs", "64",
       "--max-num-batched-tokens", "2048", "--max-context", "8192"},
      work + "/worker.log");
  if (!worker.ok()) Fail(worker.status().ToString());
  auto port = testing::WaitForPortFile(work + "/port", &*worker, absl::Minutes(10));
  if (!port.ok()) Fail("kvc-worker did not start: " + testing::ReadFile(work + "/worker.log"));
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", *port), grpc::InsecureChannelCredentials());
  auto stub = pb::Worker::NewStub(channel);
  Generate(stub.get(), Tokens(7, 16), 2);  // warm-up

  std::map<int, double> throughput;
  uint32_t seed = 100;
  for (int streams : {1, 8, 32}) {
    Progress(absl::StrCat("throughput with ", streams, " concurrent streams"));
    throughput[streams] = Throughput(stub.get(), streams, 32, decode_tokens, seed);
    seed += streams;
  }

  Progress("time to first token of a 2048-token prompt, cold");
  std::vector<uint32_t> prompt = Tokens(5000, long_prompt);
  const StreamTiming cold = Generate(stub.get(), prompt, 1);
  Progress("time to first token with its first 2032 tokens cached");
  std::vector<uint32_t> warm_prompt = prompt;
  for (int i = 2032; i < long_prompt; ++i) warm_prompt[i] = 7 + i;
  const StreamTiming warm = Generate(stub.get(), warm_prompt, 1);
  if (warm.cached_tokens != 2032) {
    Fail(absl::StrCat("expected 2032 cached tokens, the worker reported ", warm.cached_tokens));
  }

  Progress("decode time per token through gRPC");
  const std::vector<uint32_t> tpot_prompt = Tokens(9000, 64);
  const int tpot_tokens = quick ? 16 : 48;
  const StreamTiming streamed = Generate(stub.get(), tpot_prompt, tpot_tokens);
  const double grpc_tpot = streamed.tpot_s;
  worker->Stop();
  Progress("decode time per token in process");
  const double inproc_tpot = InProcessTpot(model_dir, tpot_prompt, tpot_tokens);
  // The overhead is judged within one run: the client's time per token against the engine's
  // own, measured in the worker for the same tokens. A separate in-process run is reported
  // too, but its thread calibration and memory state differ by more than the overhead.
  const double overhead = (grpc_tpot - streamed.worker_tpot_s) / streamed.worker_tpot_s;
  const double cached_fraction = warm.ttft_s / cold.ttft_s;

  if (json) {
    std::printf(
        "{\"throughput_tok_s_c1\": %.3f, \"throughput_tok_s_c8\": %.3f, "
        "\"throughput_tok_s_c32\": %.3f, \"ttft_cold_2048_s\": %.4f, "
        "\"ttft_cached_2032_of_2048_s\": %.4f, \"cached_ttft_fraction\": %.5f, "
        "\"tpot_grpc_ms\": %.3f, \"tpot_in_worker_ms\": %.3f, \"tpot_in_process_ms\": %.3f, "
        "\"grpc_overhead_fraction\": %.5f}\n",
        throughput[1], throughput[8], throughput[32], cold.ttft_s, warm.ttft_s, cached_fraction,
        grpc_tpot * 1e3, streamed.worker_tpot_s * 1e3, inproc_tpot * 1e3, overhead);
  }
  std::string table = absl::StrFormat(
      "| figure | value | goal |\n|---|---|---|\n"
      "| output tokens/s, 1 stream | %.2f | |\n"
      "| output tokens/s, 8 streams | %.2f | |\n"
      "| output tokens/s, 32 streams | %.2f | |\n"
      "| TTFT, 2048-token prompt, cold | %.3f s | |\n"
      "| TTFT, same prompt with 2032 tokens cached | %.3f s | |\n"
      "| cached / cold TTFT | %.2f%% | <= 10%% (%s) |\n"
      "| decode time per token, seen by the gRPC client | %.3f ms | |\n"
      "| decode time per token, same tokens inside the worker | %.3f ms | |\n"
      "| gRPC overhead per token (client vs worker, same run) | %.2f%% | < 5%% (%s) |\n"
      "| decode time per token, engine in a separate process | %.3f ms | |\n",
      throughput[1], throughput[8], throughput[32], cold.ttft_s, warm.ttft_s, 100 * cached_fraction,
      cached_fraction <= 0.10 ? "met" : "missed", grpc_tpot * 1e3, streamed.worker_tpot_s * 1e3,
      100 * overhead, overhead < 0.05 ? "met" : "missed", inproc_tpot * 1e3);
  KVC_CHECK(!table.empty(), "the report table's format does not match its figures");
  if (!json) std::printf("%s", table.c_str());
  if (!report.empty()) {
    std::ofstream out(report);
    out << "## worker\n\n"
        << "Command: `scripts/bench worker" << (quick ? " --quick" : "")
        << "` (build/bin/kvc_bench_worker)  \n"
        << "CPU: " << CpuModelName() << ", " << std::thread::hardware_concurrency()
        << " threads  \n"
        << "Model: llama-3.2-1b-shape (bf16, random weights) served by kvc-worker on loopback; "
        << "streams use 32-token prompts and " << decode_tokens
        << " output tokens each; the gRPC comparison decodes " << tpot_tokens
        << " tokens after a 64-token prompt and compares the client's time per token with the "
           "worker's own for the same tokens (the engine in a separate process is shown for "
           "reference; its thread calibration differs run to run by more than the overhead).\n\n"
        << table;
  }
  return 0;
}

}  // namespace
}  // namespace kvc

int main(int argc, char** argv) { return kvc::Main(argc, argv); }
