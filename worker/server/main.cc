// kvc-worker: serves one model over gRPC (the Worker service of proto/kvcluster/v1) with a
// paged KV cache, prefix caching and KV events for the router.
//
//   kvc-worker --model DIR [--listen 127.0.0.1:50051] [--kv-cache-memory 2GiB] ...
//   kvc-worker --backend sim --model DIR [--sim-speedup X] [--sim-profile FILE] ...
//
// Every tunable is a flag below with its default and a one-line doc; `--help` lists them.
// Flags may be written with dashes or underscores.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/block_hash.h"
#include "common/flags.h"
#include "common/process_setup.h"
#include "common/tokenizer/tokenizer.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cuda_loader.h"
#include "worker/backend/sim/sim_backend.h"
#include "worker/model/config.h"
#include "worker/model/loader.h"
#include "worker/server/engine_loop.h"
#include "worker/server/event_hub.h"
#include "worker/server/worker_service.h"

ABSL_FLAG(std::string, model, "",
          "Model directory in Hugging Face layout (config.json, *.safetensors, tokenizer.json). "
          "The sim backend reads config.json (and tokenizer.json when present) only.");
ABSL_FLAG(std::string, backend, "cpu",
          "Forward-pass backend: cpu (real math on this machine's CPU), cuda (real math on an "
          "NVIDIA GPU, --cuda-device; needs a build with nvcc) or sim (no math: every "
          "step sleeps for the time the --sim-profile GPU would take, divided by --sim-speedup; "
          "tokens are synthetic; the real engine, cache and KV events; no K/V memory is "
          "allocated, --kv-cache-memory only sets the capacity).");
ABSL_FLAG(std::string, sim_profile, "",
          "sim backend: JSON file of device figures, any of name, memory_bandwidth_gb_per_s, "
          "memory_efficiency, peak_tflops, compute_efficiency, step_overhead_us (missing ones "
          "keep their defaults); default: the built-in H100 SXM5 bf16 profile (3350 GB/s x 0.80, "
          "989 TFLOPS x 0.50, 300 us per step).");
ABSL_FLAG(double, sim_speedup, 1.0,
          "sim backend: run this many times faster than the modelled GPU (a step's wall time "
          "is its modelled time / X); > 0.");
ABSL_FLAG(int32_t, cuda_device, 0, "cuda backend: the CUDA device ordinal to run on.");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "host:port of the gRPC server; port 0 picks a free port (printed at start).");
ABSL_FLAG(std::string, worker_id, "",
          "Name reported to the router; default: host:port of --listen (the machine's host name "
          "when it listens on a wildcard address).");
ABSL_FLAG(std::string, model_identity, "",
          "Identity mixed into every block hash; default: the model directory's name. Must "
          "equal the router's --model-identity.");
ABSL_FLAG(int32_t, block_size, kvc::kDefaultBlockSize, "Tokens per KV block.");
ABSL_FLAG(uint64_t, hash_seed, kvc::kDefaultHashSeed, "Seed of the block hashes.");
ABSL_FLAG(std::string, kv_cache_memory, "",
          "KV cache size in bytes (suffixes KiB, MiB, GiB, KB, MB, GB); default: "
          "--kv-cache-fraction of the memory available after loading the weights.");
ABSL_FLAG(double, kv_cache_fraction, 0,
          "Share of available memory for the KV cache when --kv-cache-memory is not given: of "
          "the host's available memory (cpu, sim; 0 means 0.3), or of the GPU memory free after "
          "the weights (cuda; 0 means 0.9).");
ABSL_FLAG(int32_t, max_num_seqs, 64, "Most sequences in one forward step.");
ABSL_FLAG(int32_t, max_num_batched_tokens, 2048,
          "Most new tokens in one forward step (long prompts are prefilled in chunks).");
ABSL_FLAG(int32_t, max_context, 0,
          "Longest prompt + generation accepted; 0: the model's max_position_embeddings.");
ABSL_FLAG(int32_t, threads, 0, "Threads of the cpu backend; 0: one per online CPU. (sim: unused)");
ABSL_FLAG(int32_t, replay_events, 1 << 16,
          "KV events kept for subscribers that resume from a seq; older ones need a snapshot.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(1),
          "How often KV event streams carry a heartbeat (epoch, last seq, block count, digest).");
ABSL_FLAG(bool, no_kv_cache, false,
          "Recompute the whole sequence every step (same outputs, slower): to measure what the "
          "KV cache buys.");
ABSL_FLAG(bool, prefault, true,
          "Read all weights into memory at start, showing progress (cpu backend).");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "On SIGTERM, how long in-flight requests may run before they are cancelled.");
ABSL_FLAG(std::string, port_file, "", "Write the bound port to this file once serving.");

namespace kvc {
namespace {

void Log(const std::string& message) { std::fprintf(stderr, "kvc-worker: %s\n", message.c_str()); }

[[noreturn]] void Fail(const std::string& message) {
  Log(message);
  std::exit(1);
}

uint64_t MemAvailableBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

uint64_t RandomEpoch() {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device() ^ 1;  // never 0: 0 means "unknown epoch"
}

model::ModelWeights LoadWeights(const std::string& model_dir) {
  model::LoadOptions load_options;
  load_options.prefault = absl::GetFlag(FLAGS_prefault);
  absl::Time last_progress = absl::InfinitePast();
  load_options.progress = [&](uint64_t done, uint64_t total) {
    if (absl::Now() - last_progress < absl::Milliseconds(500) && done != total) return;
    last_progress = absl::Now();
    Log(absl::StrCat("loading weights: ", FormatBytes(done), " / ", FormatBytes(total)));
  };
  absl::StatusOr<model::ModelWeights> weights = model::LoadModel(model_dir, load_options);
  if (!weights.ok()) Fail(absl::StrCat("cannot load model: ", weights.status().ToString()));
  return *std::move(weights);
}

std::unique_ptr<backend::Backend> MakeCpuBackend(const model::ModelWeights& weights,
                                                 const backend::KvCacheOptions& kv_cache) {
  backend::CpuBackendOptions options;
  options.kv_cache = kv_cache;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  auto backend = backend::CreateCpuBackend(weights, options);
  if (!backend.ok()) Fail(absl::StrCat("cannot start backend: ", backend.status().ToString()));
  return *std::move(backend);
}

// The cuda backend's library, loaded on first use; exits with the reason when there is none.
const backend::CudaBackendEntryPoints& CudaBackend() {
  absl::StatusOr<const backend::CudaBackendEntryPoints*> cuda = backend::LoadCudaBackend();
  if (!cuda.ok()) Fail(absl::StrCat("--backend cuda: ", cuda.status().message()));
  return **cuda;
}

// num_blocks 0 in kv_cache: the backend sizes the pool from the GPU's free memory.
std::unique_ptr<backend::Backend> MakeCudaBackend(const model::ModelWeights& weights,
                                                  const backend::KvCacheOptions& kv_cache) {
  backend::CudaBackendOptions options;
  options.kv_cache = kv_cache;
  const double fraction = absl::GetFlag(FLAGS_kv_cache_fraction);
  options.kv_cache_fraction = fraction == 0 ? 0.9 : fraction;
  options.device = absl::GetFlag(FLAGS_cuda_device);
  options.max_batch_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  options.max_batch_sequences = absl::GetFlag(FLAGS_max_num_seqs);
  options.max_graph_batch = absl::GetFlag(FLAGS_max_num_seqs);
  options.progress = [last_progress = absl::InfinitePast()](uint64_t done, uint64_t total) mutable {
    if (absl::Now() - last_progress < absl::Milliseconds(500) && done != total) return;
    last_progress = absl::Now();
    Log(absl::StrCat("uploading weights to the GPU: ", FormatBytes(done), " / ",
                     FormatBytes(total)));
  };
  options.log = [](const std::string& line) { Log(absl::StrCat("cuda: ", line)); };
  const backend::CudaBackendEntryPoints& cuda = CudaBackend();
  Log(absl::StrCat("cuda backend on ", cuda.device_description(options.device)));
  auto backend = cuda.create(weights, options);
  if (!backend.ok()) Fail(absl::StrCat("cannot start backend: ", backend.status().ToString()));
  return *std::move(backend);
}

std::unique_ptr<backend::Backend> MakeSimBackend(const model::ModelConfig& config,
                                                 const backend::KvCacheOptions& kv_cache) {
  backend::SimBackendOptions options;
  options.kv_cache = kv_cache;
  options.speedup = absl::GetFlag(FLAGS_sim_speedup);
  if (!(options.speedup > 0) || !std::isfinite(options.speedup)) {
    Fail(absl::StrCat("--sim-speedup must be a finite number > 0, got ", options.speedup));
  }
  if (!absl::GetFlag(FLAGS_sim_profile).empty()) {
    auto profile = backend::sim::LoadSimProfile(absl::GetFlag(FLAGS_sim_profile));
    if (!profile.ok()) Fail(absl::StrCat("--sim-profile: ", profile.status().message()));
    options.profile = *profile;
  }
  auto backend = backend::CreateSimBackend(config, options);
  if (!backend.ok()) Fail(absl::StrCat("cannot start backend: ", backend.status().ToString()));
  const backend::sim::CostModel cost(config, kv_cache.dtype, options.profile);
  Log(absl::StrCat("sim backend, speedup ", options.speedup, ": ", cost.Describe()));
  return *std::move(backend);
}

int Main(int argc, char** argv) {
  PrepareServerProcess();
  NormalizeFlagNames(argc, argv);
  // --help lists the flags of this file (absl would look for a file named after the program).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) {
    return absl::EndsWith(path, "worker/server/main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "Serves a model over gRPC with a paged KV cache and KV events.\n"
      "  kvc-worker --model DIR [--listen HOST:PORT] [--kv-cache-memory SIZE] ...");
  absl::ParseCommandLine(argc, argv);

  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) Fail("--model is required (a Hugging Face model directory)");
  const std::string backend_name = absl::GetFlag(FLAGS_backend);
  if (backend_name != "cpu" && backend_name != "sim" && backend_name != "cuda") {
    Fail(absl::StrCat("unknown --backend '", backend_name, "' (available: cpu, cuda, sim)"));
  }
  // Before reading gigabytes of weights: is there a backend, and a GPU to put them on?
  if (backend_name == "cuda") {
    if (absl::Status s = CudaBackend().device_status(absl::GetFlag(FLAGS_cuda_device)); !s.ok()) {
      Fail(absl::StrCat("--backend cuda: ", s.message()));
    }
  }
  const int block_size = absl::GetFlag(FLAGS_block_size);
  if (block_size <= 0 || block_size > 1024) Fail("--block-size must be in [1, 1024]");

  // cpu, cuda: the weights (and their config); sim: the config alone.
  std::optional<model::ModelWeights> weights;
  model::ModelConfig config;
  if (backend_name != "sim") {
    weights = LoadWeights(model_dir);
    config = weights->config;
  } else {
    absl::StatusOr<model::ParsedConfig> parsed = model::LoadModelConfig(model_dir);
    if (!parsed.ok()) Fail(absl::StrCat("cannot load model: ", parsed.status().ToString()));
    if (absl::Status status = model::ValidateModelConfig(parsed->config); !status.ok()) {
      Fail(absl::StrCat("cannot load model: ", status.ToString()));
    }
    config = parsed->config;
  }

  std::unique_ptr<Tokenizer> tokenizer;
  const std::filesystem::path tokenizer_path = std::filesystem::path(model_dir) / "tokenizer.json";
  if (std::filesystem::exists(tokenizer_path)) {
    auto loaded = Tokenizer::FromFile(tokenizer_path.string());
    if (!loaded.ok()) Fail(absl::StrCat("cannot load tokenizer: ", loaded.status().ToString()));
    tokenizer = std::move(*loaded);
  } else {
    Log("no tokenizer.json: only token-id prompts will be served");
  }

  backend::KvCacheOptions kv_cache;
  kv_cache.block_size = block_size;
  const uint64_t bytes_per_token = config.KvBytesPerToken(kv_cache.dtype);
  const uint64_t bytes_per_block = bytes_per_token * block_size;
  uint64_t kv_bytes = 0;
  // cuda without --kv-cache-memory: the backend sizes the pool once the weights are on the GPU.
  const bool sized_by_gpu = backend_name == "cuda" && absl::GetFlag(FLAGS_kv_cache_memory).empty();
  if (!absl::GetFlag(FLAGS_kv_cache_memory).empty()) {
    auto parsed = ParseByteSize(absl::GetFlag(FLAGS_kv_cache_memory));
    if (!parsed.ok()) Fail(absl::StrCat("--kv-cache-memory: ", parsed.status().message()));
    kv_bytes = *parsed;
  } else if (!sized_by_gpu) {
    const double flag = absl::GetFlag(FLAGS_kv_cache_fraction);
    const double fraction = flag == 0 ? 0.3 : flag;
    if (!(fraction > 0 && fraction <= 1)) Fail("--kv-cache-fraction must be in (0, 1]");
    kv_bytes = static_cast<uint64_t>(MemAvailableBytes() * fraction);
  }
  const uint64_t num_blocks = kv_bytes / bytes_per_block;
  if (num_blocks < 2 && !sized_by_gpu) {
    Fail(absl::StrCat("the KV cache of ", FormatBytes(kv_bytes), " holds ", num_blocks,
                      " blocks of ", FormatBytes(bytes_per_block), "; give more memory"));
  }
  kv_cache.num_blocks = static_cast<int>(std::min<uint64_t>(num_blocks, 1 << 30));
  if (!sized_by_gpu) {
    Log(absl::StrCat("KV cache: ", kv_cache.num_blocks, " blocks of ", block_size,
                     " tokens = ", static_cast<uint64_t>(kv_cache.num_blocks) * block_size,
                     " tokens, ", FormatBytes(num_blocks * bytes_per_block), " (",
                     FormatBytes(bytes_per_token), " per token: 2 x ", config.num_layers,
                     " layers x ", config.num_kv_heads, " KV heads x ", config.head_dim,
                     " x dtype)", backend_name == "sim" ? ", not allocated (sim)" : ""));
  }
  std::unique_ptr<backend::Backend> backend =
      backend_name == "cpu"    ? MakeCpuBackend(*weights, kv_cache)
      : backend_name == "cuda" ? MakeCudaBackend(*weights, kv_cache)
                               : MakeSimBackend(config, kv_cache);

  const uint64_t epoch = RandomEpoch();
  engine::EngineOptions engine_options;
  engine_options.scheduler.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  engine_options.scheduler.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  if (engine_options.scheduler.max_num_seqs <= 0 ||
      engine_options.scheduler.max_num_batched_tokens <= 0) {
    Fail("--max-num-seqs and --max-num-batched-tokens must be positive");
  }
  engine_options.hash = HashConfig{.block_size = static_cast<uint32_t>(block_size),
                                   .seed = absl::GetFlag(FLAGS_hash_seed)};
  engine_options.max_context_tokens = absl::GetFlag(FLAGS_max_context);
  engine_options.epoch = epoch;
  engine_options.replay_events = std::max(absl::GetFlag(FLAGS_replay_events), 1024);
  engine_options.no_kv_cache = absl::GetFlag(FLAGS_no_kv_cache);

  server::EventHub hub(epoch, engine_options.replay_events);
  server::EngineLoop loop(std::move(backend), engine_options, &hub);

  server::WorkerServiceOptions service_options;
  service_options.model_name = std::filesystem::path(model_dir).lexically_normal().filename();
  if (service_options.model_name.empty()) {
    service_options.model_name =
        std::filesystem::path(model_dir).lexically_normal().parent_path().filename();
  }
  service_options.model_identity = absl::GetFlag(FLAGS_model_identity).empty()
                                       ? service_options.model_name
                                       : absl::GetFlag(FLAGS_model_identity);
  service_options.backend_name = backend_name;
  service_options.hash = engine_options.hash;
  service_options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  server::WorkerService service(&loop, &hub, tokenizer.get(), service_options);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) Fail(absl::StrCat("cannot listen on ", listen));
  std::string host = std::string(listen.substr(0, listen.rfind(':')));
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") {
    // A wildcard names no one: containers listening on 0.0.0.0 would all report the same id.
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0') host = name;
  }
  const std::string address = absl::StrCat(host, ":", port);
  // The default worker id needs the bound port, known only now.
  service.SetWorkerId(absl::GetFlag(FLAGS_worker_id).empty() ? address
                                                             : absl::GetFlag(FLAGS_worker_id));
  loop.Start();
  Log(absl::StrCat("serving ", service_options.model_name, " (",
                   model::ArchitectureName(config.architecture), ", ", config.num_layers,
                   " layers, vocab ", config.vocab_size, ") on ", address, " as ",
                   service.worker_id(), ", epoch ", epoch));
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_port_file)) << port << "\n";
  }

  const int signal_number = WaitForTerminationSignal();
  Log(absl::StrCat("signal ", signal_number, ": shutting down"));
  service.StopAccepting();
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health != nullptr) health->Shutdown();
  hub.Shutdown();  // ends event streams
  server->Shutdown(std::chrono::system_clock::now() +
                   absl::ToChronoSeconds(absl::GetFlag(FLAGS_shutdown_grace)));
  loop.Stop(/*drain=*/false);
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace kvc

int main(int argc, char** argv) { return kvc::Main(argc, argv); }
