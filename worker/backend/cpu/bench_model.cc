// kvc_bench_model: CPU backend throughput on a Llama-3.2-1B-shaped model (bf16).
//   kvc_bench_model [--json] [--report FILE] [--model DIR] [--threads N] [--quick]
// Without --model the model is built in memory with random weights (same shapes and dtype as
// `kvc-make-model --preset llama-3.2-1b-shape`; speed does not depend on the values).
// Measures: a STREAM-like copy (this machine's memory bandwidth, same run), prefill tokens/s
// (one 512-token prompt), decode tokens/s at batch 1, 8 and 32, the GB/s decode achieves, and
// what the KV cache buys: time to generate 1000 tokens with it vs recomputing every step.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/bench_args.h"
#include "common/process_setup.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cpu/kernels.h"
#include "worker/backend/cpu/test_model.h"
#include "worker/backend/generate.h"
#include "worker/model/loader.h"

namespace kvc::backend::cpu {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

void Progress(const char* what) { std::fprintf(stderr, "bench model: %s\n", what); }

// STREAM "copy" (a[i] = b[i]) over arrays far larger than the caches, one slice per thread,
// counting bytes read + bytes written as STREAM does. Best of several passes.
double CopyBandwidthGBs(int threads) {
  const size_t bytes = size_t(512) << 20;
  std::vector<uint8_t> src(bytes, 1), dst(bytes, 0);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto start = Clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t begin = bytes * t / threads, end = bytes * (t + 1) / threads;
        std::memcpy(dst.data() + begin, src.data() + begin, end - begin);
      });
    }
    for (std::thread& w : workers) w.join();
    best = std::max(best, 2.0 * double(bytes) / Seconds(start) / 1e9);
  }
  return best;
}

// Bytes a decode step must read from memory: every weight matrix once (lm_head once, which is
// the embedding table when tied; embedding rows and norms are negligible) plus the KV of every
// context token.
double DecodeBytes(const model::ModelWeights& w, int batch, int context, model::DType kv) {
  const auto bytes = [](const model::TensorView& t) {
    return double(t.numel()) * double(ElementBytes(t.dtype));
  };
  double total = bytes(w.lm_head);
  for (const model::LayerWeights& l : w.layers) {
    total += bytes(l.q_proj) + bytes(l.k_proj) + bytes(l.v_proj) + bytes(l.o_proj) +
             bytes(l.gate_proj) + bytes(l.up_proj) + bytes(l.down_proj);
  }
  const model::ModelConfig& c = w.config;
  total += double(batch) * context * 2.0 * c.num_layers * c.num_kv_heads * c.head_dim *
           double(ElementBytes(kv));
  return total;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& e : t) e = int32_t(rng() % vocab);
  return t;
}

// Decode steps for `batch` sequences that each already hold `context` - 1 tokens, `steps`
// steps after one warm-up step. The cached K/V are whatever the pool holds (zeros): values do
// not change the work. Returns the fastest step's seconds: like STREAM's best-of-N, it filters
// out other processes sharing the cores.
double DecodeStepSeconds(Backend& backend, int batch, int context, int steps) {
  const int block_size = backend.kv_cache_options().block_size;
  const int blocks_per_seq = (context + steps + 1 + block_size - 1) / block_size;
  std::vector<float> logits;
  double best = 1e30;
  for (int step = 0; step <= steps; ++step) {
    ForwardBatch b;
    for (int s = 0; s < batch; ++s) {
      std::vector<int32_t> table(blocks_per_seq);
      std::iota(table.begin(), table.end(), s * blocks_per_seq);
      const int32_t token = int32_t((s * 7919 + step * 104729) % backend.config().vocab_size);
      b.AddSequence(std::span<const int32_t>(&token, 1), context - 1 + step, table);
    }
    const auto start = Clock::now();
    absl::Status status = backend.Forward(b, &logits);
    if (!status.ok()) {
      std::fprintf(stderr, "decode failed: %s\n", status.ToString().c_str());
      std::exit(1);
    }
    if (step > 0) best = std::min(best, Seconds(start));
  }
  return best;
}

struct Results {
  std::string model;
  int threads = 0;
  double copy_gb_s = 0;
  double prefill_tok_s = 0;
  double decode_tok_s[3] = {0, 0, 0};  // batch 1, 8, 32
  double decode_gb_s_b1 = 0;
  double decode_bw_fraction_b1 = 0;
  // Batch-1 decode with the memory-bound products pinned to one thread / to all threads (the
  // default backend measures which pays at creation), and at a 2048-token context.
  double decode_gb_s_b1_one_thread = 0, decode_gb_s_b1_all_threads = 0;
  double decode_tok_s_b1_context_2048 = 0;
  std::string speedup_model;
  double cached_1000_s = 0, recompute_1000_s = 0, kv_cache_speedup_1000 = 0;
  bool same_tokens = false;
  // The loaded model's comparison, measured at sample lengths (SampledKvCacheComparison).
  double model_cached_1000_s = 0, model_recompute_1000_s = 0, model_speedup_1000 = 0;
  std::string model_samples;
};

// The KV-cache comparison generates 1000 tokens both ways for real, on a small Llama shape:
// recomputing every step costs ~500k token-forwards, hours on the 1B shape on two cores.
model::ModelConfig SpeedupConfig() {
  model::ModelConfig c = TinyConfig(model::Architecture::kLlama);
  c.hidden_size = 128;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 64;
  c.intermediate_size = 384;
  c.vocab_size = 2048;
  c.tie_word_embeddings = true;
  c.dtype = model::DType::kBF16;
  return c;
}

// Generating 1000 tokens after a 16-token prompt on the loaded model, with and without the
// KV cache. Without it, step n is one forward over all 16 + n - 1 tokens: ~500k token
// forwards in all, hours for the 1B shape on two cores. So both kinds of step are timed for
// real at `samples` lengths spread over 16..1015 and integrated over every step (trapezoid
// rule): a step's cost is smooth in the length (linear in the matrix products, quadratic in
// attention), so the interpolation error is far below run-to-run noise. The cached run is the
// 16-token prefill plus 999 decode steps at contexts 17..1015.
struct SampledComparison {
  double cached_s = 0, recompute_s = 0;
  std::string samples;  // "length: recompute s / decode ms, ..."
};

SampledComparison SampledKvCacheComparison(Backend& backend, int samples) {
  constexpr int kPrompt = 16, kNew = 1000;
  const int vocab = backend.config().vocab_size;
  const int block_size = backend.kv_cache_options().block_size;
  std::vector<int> lengths;
  for (int i = 0; i < samples; ++i) {
    lengths.push_back(kPrompt + int(std::lround(double(kNew - 1) * i / (samples - 1))));
  }
  std::vector<double> recompute(samples), decode(samples);
  std::vector<float> logits;
  double prefill_s = 0;
  for (int i = 0; i < samples; ++i) {
    const int length = lengths[i];
    const std::vector<int32_t> tokens = RandomTokens(length, vocab, 7 + i);
    std::vector<int32_t> table((length + block_size - 1) / block_size);
    std::iota(table.begin(), table.end(), 0);
    ForwardBatch batch;
    batch.AddSequence(tokens, 0, table);
    const auto start = Clock::now();
    if (absl::Status status = backend.Forward(batch, &logits); !status.ok()) {
      std::fprintf(stderr, "recompute forward failed: %s\n", status.ToString().c_str());
      std::exit(1);
    }
    recompute[i] = Seconds(start);
    if (i == 0) prefill_s = recompute[i];
    decode[i] = DecodeStepSeconds(backend, 1, length + 1, 3);
  }
  SampledComparison result;
  result.cached_s = prefill_s;
  for (int i = 0; i + 1 < samples; ++i) {
    const double steps = lengths[i + 1] - lengths[i];
    result.recompute_s += steps * (recompute[i] + recompute[i + 1]) / 2;
    result.cached_s += steps * (decode[i] + decode[i + 1]) / 2;
  }
  // The trapezoids sum a step per length with half weight at both ends. Recompute runs at
  // every length 16..1015; decode at 17..1015 (step 1 is the prefill, counted above).
  result.recompute_s += (recompute.front() + recompute.back()) / 2;
  result.cached_s += (decode.back() - decode.front()) / 2;
  char point[96];
  for (int i = 0; i < samples; ++i) {
    std::snprintf(point, sizeof(point), "%s%d: %.2f s / %.0f ms", i ? ", " : "", lengths[i],
                  recompute[i], decode[i] * 1e3);
    result.samples += point;
  }
  return result;
}

// The tokenizer's encode speed belongs in this report too: kvc_bench_tokenizer (next to this
// program) measures it, and its JSON figure is taken as is. -1 when it cannot run (the
// tokenizer files are fetched by scripts/setup).
double TokenizerMbPerSecond(bool quick) {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return -1;
  const std::string command = (self.parent_path() / "kvc_bench_tokenizer").string() + " --json" +
                              (quick ? " --text-mb 1 --runs 2" : "") + " 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  if (pclose(pipe) != 0) return -1;
  const std::string key = "\"tokenizer_mb_s\":";
  const size_t at = output.find(key);
  return at == std::string::npos ? -1 : std::atof(output.c_str() + at + key.size());
}

}  // namespace

int Main(int argc, char** argv) {
  const BenchArgs args = ParseBenchArgs(
      argc, argv, {"--model", "--threads"},
      "kvc_bench_model [--json] [--report FILE] [--model DIR] [--threads N] [--quick]");
  const bool json = args.json, quick = args.quick;
  const std::string& report_path = args.report;
  const std::string model_dir = args.Value("--model");
  int threads = std::atoi(args.Value("--threads").c_str());
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  Results r;
  r.threads = threads;

  Progress("measuring memory bandwidth (STREAM-like copy)");
  r.copy_gb_s = CopyBandwidthGBs(threads);

  model::ModelWeights weights;
  if (!model_dir.empty()) {
    Progress("loading model");
    model::LoadOptions options;
    options.prefault = true;
    absl::StatusOr<model::ModelWeights> loaded = model::LoadModel(model_dir, options);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    weights = std::move(*loaded);
    const model::ModelConfig& c = weights.config;
    r.model = model_dir + " (" + model::ArchitectureName(c.architecture) + ", " +
              model::DTypeName(c.dtype) + ", " + std::to_string(c.num_layers) + " layers, hidden " +
              std::to_string(c.hidden_size) + ", vocab " + std::to_string(c.vocab_size) + ")";
  } else {
    Progress("building the llama-3.2-1b-shape model in memory (random bf16 weights)");
    weights = MakeRandomModel(Llama32_1BShapeConfig(), 1);
    r.model = "llama-3.2-1b-shape (in memory, random bf16 weights)";
  }

  CpuBackendOptions options;
  options.num_threads = threads;
  options.kv_cache.num_blocks = 1024;
  options.kv_cache.dtype = model::DType::kBF16;
  absl::StatusOr<std::unique_ptr<Backend>> created = CreateCpuBackend(weights, options);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.status().ToString().c_str());
    return 1;
  }
  Backend& backend = **created;
  const int vocab = weights.config.vocab_size;

  {
    Progress("prefill, prompt 512");
    const int prompt_len = quick ? 64 : 512;
    const std::vector<int32_t> prompt = RandomTokens(prompt_len, vocab, 1);
    std::vector<int32_t> table(prompt_len / 16 + 1);
    std::iota(table.begin(), table.end(), 0);
    std::vector<float> logits;
    ForwardBatch warm;
    warm.AddSequence(std::span(prompt).first(16), 0, table);
    (void)backend.Forward(warm, &logits);
    ForwardBatch batch;
    batch.AddSequence(prompt, 0, table);
    const auto start = Clock::now();
    if (absl::Status s = backend.Forward(batch, &logits); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    r.prefill_tok_s = prompt_len / Seconds(start);
  }

  const int kContext = 128;
  const int batches[3] = {1, 8, 32};
  for (int i = 0; i < 3; ++i) {
    Progress(("decode, batch " + std::to_string(batches[i])).c_str());
    const double step_s = DecodeStepSeconds(backend, batches[i], kContext, quick ? 3 : 10);
    r.decode_tok_s[i] = batches[i] / step_s;
    if (i == 0) {
      r.decode_gb_s_b1 = DecodeBytes(weights, 1, kContext, options.kv_cache.dtype) / step_s / 1e9;
      // The copy again, next to the decode it is compared with: other processes come and go,
      // and the best of both measurements is the fairer reference.
      r.copy_gb_s = std::max(r.copy_gb_s, CopyBandwidthGBs(threads));
      r.decode_bw_fraction_b1 = r.decode_gb_s_b1 / r.copy_gb_s;
    }
  }

  {
    Progress("decode, batch 1, memory-bound products on one thread / on all");
    for (int pinned : {1, 0}) {
      CpuBackendOptions pinned_options = options;
      pinned_options.memory_bound_threads = pinned;
      std::unique_ptr<Backend> b = *CreateCpuBackend(weights, pinned_options);
      const double step_s = DecodeStepSeconds(*b, 1, kContext, quick ? 3 : 10);
      (pinned == 1 ? r.decode_gb_s_b1_one_thread : r.decode_gb_s_b1_all_threads) =
          DecodeBytes(weights, 1, kContext, options.kv_cache.dtype) / step_s / 1e9;
    }
    Progress("decode, batch 1, context 2048");
    r.decode_tok_s_b1_context_2048 = 1 / DecodeStepSeconds(backend, 1, 2048, quick ? 3 : 10);
  }

  {
    Progress("1000 tokens with the KV cache vs recomputing every step (small shape)");
    const model::ModelWeights small = MakeRandomModel(SpeedupConfig(), 2);
    CpuBackendOptions small_options = options;
    small_options.kv_cache.num_blocks = 128;
    std::unique_ptr<Backend> small_backend = *CreateCpuBackend(small, small_options);
    const std::vector<int32_t> prompt = RandomTokens(16, small.config.vocab_size, 3);
    GenerateOptions gen;
    gen.max_new_tokens = quick ? 200 : 1000;
    auto start = Clock::now();
    const std::vector<int32_t> cached = *GenerateGreedy(*small_backend, prompt, gen);
    r.cached_1000_s = Seconds(start);
    gen.use_kv_cache = false;
    start = Clock::now();
    const std::vector<int32_t> recomputed = *GenerateGreedy(*small_backend, prompt, gen);
    r.recompute_1000_s = Seconds(start);
    r.same_tokens = cached == recomputed;
    r.kv_cache_speedup_1000 = r.recompute_1000_s / r.cached_1000_s;
    const model::ModelConfig& c = small.config;
    r.speedup_model = "llama shape: hidden " + std::to_string(c.hidden_size) + ", " +
                      std::to_string(c.num_layers) + " layers, vocab " +
                      std::to_string(c.vocab_size) + ", bf16; prompt 16";
  }
  {
    Progress("1000 tokens with the KV cache vs recomputing, on the loaded model (sampled steps)");
    const SampledComparison sampled = SampledKvCacheComparison(backend, quick ? 3 : 5);
    r.model_cached_1000_s = sampled.cached_s;
    r.model_recompute_1000_s = sampled.recompute_s;
    r.model_speedup_1000 = sampled.recompute_s / sampled.cached_s;
    r.model_samples = sampled.samples;
  }

  std::ostringstream table;
  char line[256];
  const auto row = [&](const char* name, double value, const char* unit) {
    std::snprintf(line, sizeof(line), "| %-46s | %12.2f | %-8s |\n", name, value, unit);
    table << line;
  };
  table << "| figure | value | unit |\n|---|---:|---|\n";
  row("memory bandwidth, STREAM-like copy", r.copy_gb_s, "GB/s");
  row("prefill, prompt 512", r.prefill_tok_s, "tok/s");
  row("decode, batch 1 (context 128)", r.decode_tok_s[0], "tok/s");
  row("decode, batch 8 (context 128)", r.decode_tok_s[1], "tok/s");
  row("decode, batch 32 (context 128)", r.decode_tok_s[2], "tok/s");
  row("decode batch 1: bytes read / time", r.decode_gb_s_b1, "GB/s");
  row("decode batch 1: fraction of copy bandwidth", r.decode_bw_fraction_b1, "ratio");
  row("decode batch 1, memory-bound on 1 thread", r.decode_gb_s_b1_one_thread, "GB/s");
  row("decode batch 1, memory-bound on all threads", r.decode_gb_s_b1_all_threads, "GB/s");
  row("decode, batch 1 (context 2048)", r.decode_tok_s_b1_context_2048, "tok/s");
  row("1000 tokens with KV cache (small shape)", r.cached_1000_s, "s");
  row("1000 tokens recomputed (small shape)", r.recompute_1000_s, "s");
  row("KV cache speedup, 1000 tokens (small shape)", r.kv_cache_speedup_1000, "x");
  row("1000 tokens with KV cache (this model, sampled)", r.model_cached_1000_s, "s");
  row("1000 tokens recomputed (this model, sampled)", r.model_recompute_1000_s, "s");
  row("KV cache speedup, 1000 tokens (this model)", r.model_speedup_1000, "x");
  Progress("tokenizer encode speed (kvc_bench_tokenizer)");
  const double tokenizer_mb_s = TokenizerMbPerSecond(quick);
  row("tokenizer encode, slower of Llama-3 / Qwen3 (kvc_bench_tokenizer)", tokenizer_mb_s, "MB/s");
  const std::string notes =
      "Model: " + r.model + "; " + std::to_string(r.threads) +
      " threads; AVX2 kernels; KV cache bf16, block 16. Decode runs "
      "over a context of 128 tokens per sequence;"
      " its figures are the fastest of 10 steps, the copy bandwidth the best of 5 passes before "
      "prefill and 5 after the batch-1 decode."
      " Small shape for the measured KV-cache speedup: " +
      r.speedup_model +
      (r.same_tokens ? " (both modes produced the same 1000 tokens)"
                     : " (WARNING: the modes produced different tokens)") +
      ". On this model, 1000 tokens after a 16-token prompt: each step of both modes timed at "
      "sequence lengths " +
      r.model_samples +
      " (recompute forward / cached decode step), integrated over all 1000 steps; the "
      "cached run adds the prompt's prefill.\n";

  if (json) {
    std::printf(
        "{\"prefill_tok_s\": %.3f, \"decode_tok_s_b1\": %.3f, \"decode_tok_s_b8\": %.3f, "
        "\"decode_tok_s_b32\": %.3f, \"decode_gb_s_b1\": %.3f, \"memory_copy_gb_s\": %.3f, "
        "\"decode_bw_fraction_b1\": %.4f, \"kv_cache_speedup_1000\": %.3f, "
        "\"kv_cache_cached_1000_s\": %.3f, \"kv_cache_recompute_1000_s\": %.3f, "
        "\"kv_cache_speedup_1000_small_shape\": %.3f, \"kv_cache_same_tokens_small_shape\": %s, "
        "\"kv_cache_cached_1000_s_small_shape\": %.3f, "
        "\"kv_cache_recompute_1000_s_small_shape\": %.3f, "
        "\"decode_gb_s_b1_one_thread\": %.3f, \"decode_gb_s_b1_all_threads\": %.3f, "
        "\"decode_tok_s_b1_context_2048\": %.3f, \"tokenizer_mb_s\": %.3f, \"threads\": %d}\n",
        r.prefill_tok_s, r.decode_tok_s[0], r.decode_tok_s[1], r.decode_tok_s[2], r.decode_gb_s_b1,
        r.copy_gb_s, r.decode_bw_fraction_b1, r.model_speedup_1000, r.model_cached_1000_s,
        r.model_recompute_1000_s, r.kv_cache_speedup_1000, r.same_tokens ? "true" : "false",
        r.cached_1000_s, r.recompute_1000_s, r.decode_gb_s_b1_one_thread,
        r.decode_gb_s_b1_all_threads, r.decode_tok_s_b1_context_2048, tokenizer_mb_s, r.threads);
  } else {
    std::printf("%s\n%s", table.str().c_str(), notes.c_str());
  }
  if (!report_path.empty()) {
    const std::string cpu = CpuModelName();
    std::ofstream out(report_path);
    std::string command = "scripts/bench model";
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--report") {
        ++i;
      } else {
        command += std::string(" ") + argv[i];
      }
    }
    char goal[160];
    std::snprintf(goal, sizeof(goal), "%.0f%% of it: %s", 100 * r.decode_bw_fraction_b1,
                  r.decode_bw_fraction_b1 >= 0.8 ? "met" : "not met");
    out << "## model\n\n`" << command << "` (kvc_bench_model: CPU backend) on " << cpu << ", "
        << std::thread::hardware_concurrency() << " CPUs. Goal: decode at batch 1 reads >= 80% "
        << "of the copy bandwidth; " << goal
        << ". The cores and memory are shared with other work; figures move by up to 2x between "
           "runs.\n\n"
        << table.str() << "\n"
        << notes;
  }
  return 0;
}

}  // namespace kvc::backend::cpu

int main(int argc, char** argv) { return kvc::backend::cpu::Main(argc, argv); }
