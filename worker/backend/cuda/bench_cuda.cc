// kvc_bench_cuda: the CUDA backend on a Llama-3.2-1B-shaped model (bf16), on one GPU.
//   kvc_bench_cuda [--json] [--report FILE] [--quick] [--model DIR] [--work-dir DIR]
//                  [--hf auto|off] [--python PATH]
// Measures, in one run: the GPU's device-to-device copy bandwidth (the reference), decode
// tokens/s at batch 1, 16, 64 and 256 (device sampling, CUDA graphs, context 128 growing by
// the steps timed), the bytes a batch-1 decode step must read over its time against the copy
// bandwidth, the paged-decode attention kernel alone at batch 64 over 1k..8k contexts, prefill
// tokens/s for a 2048-token prompt, and Hugging Face transformers' generate at batch 1 on the
// same weights when python3 with torch (seeing a GPU) and transformers is installed.
// Without --model the weights are the deterministic random ones of kvc-make-model's
// llama-3.2-1b-shape preset: in memory, or written once to --work-dir when the Hugging Face
// comparison needs files. Exits 1 with the reason when no usable GPU is visible.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/bench_args.h"
#include "tools/kvc-make-model/make_model.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/backend/cuda/cuda_check.h"
#include "worker/backend/cuda/paged_attention.h"
#include "worker/model/loader.h"
#include "worker/model/presets.h"
#include "worker/model/random_weights.h"

namespace kvc::backend {
namespace {

using Clock = std::chrono::steady_clock;

void Progress(const std::string& what) { std::fprintf(stderr, "bench cuda: %s\n", what.c_str()); }

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "bench cuda: %s\n", what.c_str());
  std::exit(1);
}

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) Fail(std::string(what) + ": " + status.ToString());
}
void Check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) Fail(std::string(what) + ": " + cudaGetErrorString(error));
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Device-to-device cudaMemcpy of a large buffer, counting bytes read + written; best of 10.
double CopyBandwidthGBs(size_t bytes) {
  cuda::DeviceBuffer src, dst;
  Check(src.Allocate(bytes), "copy buffer");
  Check(dst.Allocate(bytes), "copy buffer");
  Check(cudaMemset(src.data(), 1, bytes), "memset");
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "event");
  Check(cudaEventCreate(&stop), "event");
  double best = 0;
  for (int pass = 0; pass < 11; ++pass) {
    Check(cudaEventRecord(start), "event");
    Check(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice), "copy");
    Check(cudaEventRecord(stop), "event");
    Check(cudaEventSynchronize(stop), "event");
    float ms = 0;
    Check(cudaEventElapsedTime(&ms, start, stop), "event");
    if (pass > 0) best = std::max(best, 2.0 * double(bytes) / (ms * 1e-3) / 1e9);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return best;
}

// Bytes a decode step must read: every matrix once (lm_head once, the embedding table when
// tied), at the dtype the GPU holds them in (f32 models are converted to bf16), plus the K/V of
// every context token.
double DecodeBytes(const model::ModelWeights& w, int batch, int context) {
  constexpr double kWeightBytes = 2.0;  // bf16 or f16 on the device
  double elements = double(w.lm_head.numel());
  for (const model::LayerWeights& l : w.layers) {
    elements += double(l.q_proj.numel() + l.k_proj.numel() + l.v_proj.numel() + l.o_proj.numel() +
                       l.gate_proj.numel() + l.up_proj.numel() + l.down_proj.numel());
  }
  return elements * kWeightBytes +
         double(batch) * context * double(w.config.KvBytesPerToken(model::DType::kBF16));
}

// Mean wall time of a decode step (device greedy sampling, next inputs = the sampled tokens)
// for `batch` sequences starting at context `context`, after three warm-up steps (eager,
// graph capture, first replay).
double DecodeStepSeconds(Backend& backend, int batch, int context, int steps) {
  const int block_size = backend.kv_cache_options().block_size;
  const int blocks_per_seq = (context + steps + 4 + block_size - 1) / block_size;
  std::vector<std::vector<int32_t>> tables(batch);
  for (int s = 0; s < batch; ++s) {
    tables[s].resize(blocks_per_seq);
    std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
  }
  std::vector<int32_t> next(batch);
  for (int s = 0; s < batch; ++s) next[s] = int32_t((s * 7919) % backend.config().vocab_size);
  std::vector<TokenSampling> sampling(batch, TokenSampling{.sample = true});
  SampledTokens sampled;
  Clock::time_point start;
  for (int step = 0; step < steps + 3; ++step) {
    if (step == 3) start = Clock::now();
    ForwardBatch b;
    for (int s = 0; s < batch; ++s) {
      b.AddSequence(std::span<const int32_t>(&next[s], 1), context - 1 + step, tables[s]);
      sampling[s].output_position = uint64_t(step);
    }
    Check(backend.ForwardAndSample(b, sampling, &sampled), "decode step");
    next = sampled.token_ids;
  }
  return Seconds(start) / steps;
}

// The paged-decode kernel alone, Llama-3.2-1B's heads (32 q / 8 KV, head_dim 64), bf16 cache,
// `batch` sequences of `context` tokens in shuffled blocks: K/V GB/s (cudaEvent timing, best
// of 20 launches).
double AttentionGBs(int batch, int context, int num_sms) {
  const int heads = 32, kv_heads = 8, hd = 64, block_size = 16;
  const int blocks_per_seq = context / block_size;
  const int num_blocks = batch * blocks_per_seq;
  const size_t kv_bytes = size_t(num_blocks) * kv_heads * block_size * hd * 2;
  cuda::DeviceBuffer k, v, q, out, workspace, meta;
  Check(k.Allocate(kv_bytes), "K");
  Check(v.Allocate(kv_bytes), "V");
  Check(cudaMemset(k.data(), 0x3c, kv_bytes), "memset");  // bf16 0x3c3c = 0.0115
  Check(cudaMemset(v.data(), 0x3c, kv_bytes), "memset");
  Check(q.Allocate(size_t(batch) * heads * hd * sizeof(float)), "q");
  Check(cudaMemset(q.data(), 0, q.bytes()), "memset");
  Check(out.Allocate(size_t(batch) * heads * hd * 2), "out");
  const int splits = cuda::DecodeSplits(batch, kv_heads, num_sms);
  Check(workspace.Allocate(cuda::DecodeWorkspaceFloats(batch, heads, hd, splits) * sizeof(float)),
        "workspace");
  // qo_indptr [batch + 1], context_lens [batch], kv_indptr [batch + 1], kv_indices.
  std::vector<int32_t> host;
  for (int s = 0; s <= batch; ++s) host.push_back(s);
  for (int s = 0; s < batch; ++s) host.push_back(context);
  for (int s = 0; s <= batch; ++s) host.push_back(s * blocks_per_seq);
  std::vector<int32_t> blocks(num_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(1));
  host.insert(host.end(), blocks.begin(), blocks.end());
  Check(meta.Allocate(host.size() * sizeof(int32_t)), "tables");
  Check(cudaMemcpy(meta.data(), host.data(), host.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
        "tables");
  const int32_t* m = meta.as<int32_t>();
  const cuda::AttentionParams params{.q = q.as<float>(),
                                     .q_stride = heads * hd,
                                     .num_heads = heads,
                                     .scale = 0.125f,
                                     .qo_indptr = m,
                                     .context_lens = m + batch + 1,
                                     .kv_indptr = m + 2 * batch + 1,
                                     .kv_indices = m + 3 * batch + 2,
                                     .out = out.data(),
                                     .out_dtype = model::DType::kBF16,
                                     .out_stride = heads * hd};
  const cuda::PagedKv kv{.k = k.data(),
                         .v = v.data(),
                         .dtype = model::DType::kBF16,
                         .block_size = block_size,
                         .num_kv_heads = kv_heads,
                         .head_dim = hd};
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "event");
  Check(cudaEventCreate(&stop), "event");
  double best = 0;
  for (int run = 0; run < 21; ++run) {
    Check(cudaEventRecord(start), "event");
    Check(
        cuda::LaunchPagedDecode(params, kv, nullptr, batch, splits, workspace.as<float>(), nullptr),
        "paged decode");
    Check(cudaEventRecord(stop), "event");
    Check(cudaEventSynchronize(stop), "event");
    float ms = 0;
    Check(cudaEventElapsedTime(&ms, start, stop), "event");
    if (run > 0) best = std::max(best, 2.0 * double(kv_bytes) / (ms * 1e-3) / 1e9);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return best;
}

// Runs `command`, returns its stdout ("" on failure).
std::string RunCommand(const std::string& command, int* exit_code) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  *exit_code = pclose(pipe);
  return output;
}

double JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::atof(json.c_str() + at + key.size() + 3);
}

// The Hugging Face peer: its decode tokens/s at batch 1, or -1 with `why` set.
double HfDecodeTokS(const std::string& python, const std::string& model_dir, bool quick,
                    std::string* why) {
  const std::string script = "worker/backend/cuda/hf_generate.py";
  if (!std::filesystem::exists(script)) {
    *why = "hf_generate.py not found (run from the repository root, as scripts/bench does)";
    return -1;
  }
  int code = 0;
  const std::string command = python + " " + script + " --model '" + model_dir + "'" +
                              (quick ? " --new-tokens 32 --runs 1" : "") + " 2>&1";
  const std::string output = RunCommand(command, &code);
  const double tok_s = JsonNumber(output, "decode_tok_s");
  if (code != 0 || tok_s <= 0) {
    const size_t tail = output.size() > 400 ? output.size() - 400 : 0;
    *why = "hf_generate.py failed: " + output.substr(tail);
    return -1;
  }
  return tok_s;
}

bool HfAvailable(const std::string& python, std::string* why) {
  int code = 0;
  const std::string output = RunCommand(
      python +
          " -c 'import torch, transformers; assert torch.cuda.is_available(), \"torch sees no "
          "GPU\"; print(\"ok\", torch.__version__, transformers.__version__)' 2>&1",
      &code);
  if (code != 0 || output.rfind("ok", 0) != 0) {
    *why = "python3 with torch (seeing a GPU) and transformers is not available: " +
           output.substr(0, 300);
    return false;
  }
  return true;
}

}  // namespace

int Main(int argc, char** argv) {
  const BenchArgs args = ParseBenchArgs(
      argc, argv, {"--model", "--work-dir", "--hf", "--python"},
      "kvc_bench_cuda [--json] [--report FILE] [--quick] [--model DIR] [--work-dir DIR] "
      "[--hf auto|off] [--python PATH]");
  const bool quick = args.quick;
  if (absl::Status s = CudaDeviceStatus(); !s.ok()) {
    Fail("needs a CUDA GPU: " + std::string(s.message()));
  }
  const std::string device = CudaDeviceDescription();
  int num_sms = 0;
  Check(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, 0), "device");
  Progress("device: " + device);

  const std::string python = args.Value("--python").empty() ? "python3" : args.Value("--python");
  std::string hf_note;
  const bool want_hf = args.Value("--hf") != "off" && HfAvailable(python, &hf_note);
  if (args.Value("--hf") == "off") hf_note = "--hf off";

  // The weights: --model; else the preset, written to disk only when the peer needs files.
  std::string model_dir = args.Value("--model"), model_name;
  model::ModelWeights weights;
  if (model_dir.empty() && want_hf) {
    model_dir = args.Value("--work-dir").empty() ? "/tmp/kvc-bench-cuda-llama-3.2-1b-shape"
                                                 : args.Value("--work-dir");
    if (!std::filesystem::exists(std::filesystem::path(model_dir) / "config.json")) {
      Progress("writing the llama-3.2-1b-shape model to " + model_dir + " (for transformers)");
      make_model::MakeModelOptions options;
      options.config = model::Llama32_1BShapeConfig();
      options.init.seed = 1;
      Check(make_model::WriteModel(model_dir, options), "writing the model");
    }
  }
  if (!model_dir.empty()) {
    Progress("loading " + model_dir);
    model::LoadOptions options;
    options.prefault = true;
    absl::StatusOr<model::ModelWeights> loaded = model::LoadModel(model_dir, options);
    Check(loaded.status(), "loading the model");
    weights = *std::move(loaded);
    model_name = model_dir;
  } else {
    Progress("building the llama-3.2-1b-shape model in memory (random bf16 weights)");
    weights = model::MakeRandomWeights(model::Llama32_1BShapeConfig(), {.seed = 1});
    model_name = "llama-3.2-1b-shape (in memory, random bf16 weights)";
  }

  Progress("copy bandwidth");
  double copy_gb_s = CopyBandwidthGBs(size_t(quick ? 256 : 1024) << 20);

  const int kContext = 128, steps = quick ? 10 : 50;
  const int batches[4] = {1, 16, 64, 256};
  CudaBackendOptions options;
  options.kv_cache.num_blocks = 256 * ((kContext + steps + 4 + 15) / 16) + 2048 / 16;
  options.max_batch_sequences = 256;
  options.max_batch_tokens = 2048;
  options.log = [](const std::string& line) { Progress(line); };
  absl::StatusOr<std::unique_ptr<Backend>> created = CreateCudaBackend(weights, options);
  Check(created.status(), "creating the backend");
  Backend& backend = **created;

  double decode_tok_s[4] = {0, 0, 0, 0};
  double decode_gb_s_b1 = 0;
  for (int i = 0; i < 4; ++i) {
    Progress("decode, batch " + std::to_string(batches[i]));
    const double step_s = DecodeStepSeconds(backend, batches[i], kContext, steps);
    decode_tok_s[i] = batches[i] / step_s;
    if (i == 0) {
      decode_gb_s_b1 = DecodeBytes(weights, 1, kContext + steps / 2) / step_s / 1e9;
      copy_gb_s = std::max(copy_gb_s, CopyBandwidthGBs(size_t(quick ? 256 : 1024) << 20));
    }
  }
  const double decode_bw_fraction_b1 = decode_gb_s_b1 / copy_gb_s;

  Progress("prefill, prompt 2048");
  double prefill_tok_s = 0;
  {
    std::vector<int32_t> prompt(2048), table(2048 / 16);
    std::mt19937 rng(3);
    for (int32_t& t : prompt) t = int32_t(rng() % weights.config.vocab_size);
    std::iota(table.begin(), table.end(), 0);
    ForwardBatch batch;
    batch.AddSequence(prompt, 0, table);
    std::vector<float> logits;
    for (int run = 0; run < (quick ? 2 : 4); ++run) {
      const Clock::time_point start = Clock::now();
      Check(backend.Forward(batch, &logits), "prefill");
      if (run > 0) prefill_tok_s = std::max(prefill_tok_s, 2048 / Seconds(start));
    }
  }
  created->reset();  // frees the pool before the kernel benchmark's buffers

  const int contexts[4] = {1024, 2048, 4096, 8192};
  double attn_gb_s[4] = {0, 0, 0, 0}, attn_fraction_min = 1e30;
  for (int i = 0; i < 4; ++i) {
    Progress("paged-decode attention kernel, batch 64, context " + std::to_string(contexts[i]));
    attn_gb_s[i] = AttentionGBs(64, contexts[i], num_sms);
    attn_fraction_min = std::min(attn_fraction_min, attn_gb_s[i] / copy_gb_s);
  }

  double hf_tok_s = -1;
  if (want_hf) {
    Progress("Hugging Face transformers generate, batch 1");
    hf_tok_s = HfDecodeTokS(python, model_dir, quick, &hf_note);
  }
  const bool have_hf = hf_tok_s > 0;

  std::ostringstream table;
  char line[256];
  const auto row = [&](const std::string& name, double value, const char* unit) {
    std::snprintf(line, sizeof(line), "| %-52s | %12.2f | %-6s |\n", name.c_str(), value, unit);
    table << line;
  };
  table << "| figure | value | unit |\n|---|---:|---|\n";
  row("device-to-device copy (read + write)", copy_gb_s, "GB/s");
  for (int i = 0; i < 4; ++i) {
    row("decode, batch " + std::to_string(batches[i]) + " (context 128)", decode_tok_s[i], "tok/s");
  }
  row("decode batch 1: bytes read / time", decode_gb_s_b1, "GB/s");
  row("decode batch 1: fraction of copy bandwidth", decode_bw_fraction_b1, "ratio");
  for (int i = 0; i < 4; ++i) {
    row("paged-decode kernel, batch 64, context " + std::to_string(contexts[i]), attn_gb_s[i],
        "GB/s");
  }
  row("paged-decode kernel: lowest fraction of copy bandwidth", attn_fraction_min, "ratio");
  row("prefill, prompt 2048", prefill_tok_s, "tok/s");
  if (have_hf) {
    row("transformers generate, batch 1", hf_tok_s, "tok/s");
    row("speedup over transformers, batch 1", decode_tok_s[0] / hf_tok_s, "x");
  }
  const std::string notes =
      "Model: " + model_name + "; KV cache bf16, block 16. Decode steps sample on the device " +
      "(greedy; only token ids reach the host), replay CUDA graphs, and start at context 128 (" +
      std::to_string(steps) + " steps timed, mean wall time). Bytes per decode step: every " +
      "weight matrix once plus the K/V read. The kernel figures time the paged-decode kernel " +
      "and its merge over shuffled blocks (best of 20). " +
      (have_hf ? "transformers: greedy generate on the same weights (bf16), decode time per token "
                 "(128 new tokens minus 1), best of 3."
               : "transformers comparison skipped: " + hf_note) +
      "\n";

  if (args.json) {
    char hf[64] = "null", speedup[64] = "null";
    if (have_hf) {
      std::snprintf(hf, sizeof(hf), "%.3f", hf_tok_s);
      std::snprintf(speedup, sizeof(speedup), "%.4f", decode_tok_s[0] / hf_tok_s);
    }
    std::string quoted_device;
    for (char c : device) {
      if (c == '"' || c == '\\') quoted_device += '\\';
      quoted_device += c;
    }
    std::printf(
        "{\"device\": \"%s\", \"decode_tok_s_b1\": %.3f, \"decode_tok_s_b16\": %.3f, "
        "\"decode_tok_s_b64\": %.3f, \"decode_tok_s_b256\": %.3f, \"decode_gb_s_b1\": %.3f, "
        "\"copy_gb_s\": %.3f, \"decode_bw_fraction_b1\": %.4f, \"attn_gb_s_b64_ctx1024\": %.3f, "
        "\"attn_gb_s_b64_ctx2048\": %.3f, \"attn_gb_s_b64_ctx4096\": %.3f, "
        "\"attn_gb_s_b64_ctx8192\": %.3f, \"attn_bw_fraction_b64\": %.4f, "
        "\"prefill_tok_s_2k\": %.3f, \"hf_decode_tok_s_b1\": %s, \"speedup_vs_hf_b1\": %s}\n",
        quoted_device.c_str(), decode_tok_s[0], decode_tok_s[1], decode_tok_s[2], decode_tok_s[3],
        decode_gb_s_b1, copy_gb_s, decode_bw_fraction_b1, attn_gb_s[0], attn_gb_s[1], attn_gb_s[2],
        attn_gb_s[3], attn_fraction_min, prefill_tok_s, hf, speedup);
  } else {
    std::printf("%s\n%s", table.str().c_str(), notes.c_str());
  }
  if (!args.report.empty()) {
    std::ofstream out(args.report);
    std::string command = "scripts/bench cuda";
    for (int i = 1; i < argc; ++i) {
      if (std::string(argv[i]) == "--report") {
        ++i;
      } else {
        command += std::string(" ") + argv[i];
      }
    }
    char goals[256];
    std::snprintf(goals, sizeof(goals),
                  "Goals: batch-1 decode reads >= 80%% of the copy bandwidth (%.0f%%: %s); the "
                  "paged-decode kernel >= 85%% at batch 64, 1k-8k context (lowest %.0f%%: %s).",
                  100 * decode_bw_fraction_b1, decode_bw_fraction_b1 >= 0.8 ? "met" : "not met",
                  100 * attn_fraction_min, attn_fraction_min >= 0.85 ? "met" : "not met");
    out << "## cuda\n\n`" << command << "` (kvc_bench_cuda: CUDA backend) on " << device << ". "
        << goals << "\n\n"
        << table.str() << "\n"
        << notes;
  }
  return 0;
}

}  // namespace kvc::backend

int main(int argc, char** argv) { return kvc::backend::Main(argc, argv); }
