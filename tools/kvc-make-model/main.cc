// kvc-make-model: writes a deterministic random-weight model in Hugging Face layout, or only
// its config (--config-only) for the sim backend.
// See --help; make_model.h holds the logic, this file only reads flags.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tools/kvc-make-model/make_model.h"
#include "worker/model/config.h"
#include "worker/model/loader.h"

namespace {

using kvc::make_model::MakeModelOptions;
using kvc::model::Architecture;

constexpr char kUsage[] = R"(usage: kvc-make-model --out DIR [--preset NAME] [flags]

Writes a random-weight model in Hugging Face layout (config.json, generation_config.json,
model.safetensors or shards + model.safetensors.index.json, tokenizer.json,
tokenizer_config.json). Same flags and seed => byte-identical files.

  --out DIR              directory to write (created; old model*.safetensors removed)
  --preset NAME          tiny (default) | llama-3.2-1b-shape | qwen3-0.6b-shape |
                         llama-3.1-8b-shape
  --config-only          write only config.json and generation_config.json (and the
                         tokenizer when --tokenizer is given): a model's sizes without its
                         weights, which is all `kvc-worker --backend sim` reads; removes
                         weight and tokenizer files of an earlier run in DIR
  --arch NAME            llama | mistral | qwen2 | qwen3 (or the HF class name); qwen2 adds
                         q/k/v biases, qwen3 adds q/k RMSNorm
  --dtype NAME           f32 | bf16 | f16
  --layers N             number of decoder layers
  --hidden N             hidden size
  --heads N              attention heads
  --kv-heads N           key/value heads (GQA when < heads, MQA when 1)
  --head-dim N           per-head dimension (default for tiny: hidden / heads)
  --intermediate N       MLP intermediate size
  --vocab N              vocabulary size (must cover the tokenizer's ids)
  --max-position N       max_position_embeddings
  --rope-theta X         RoPE base
  --tie BOOL             tie_word_embeddings: true | false
  --attention-bias BOOL  llama/qwen3 "attention_bias" (q/k/v/o biases)
  --seed N               weight seed (default 0)
  --output-scale X       standard deviation of the logits at init (default 8): large enough
                         that greedy decoding is stable against rounding
  --shard-size SIZE      split weights into shards of at most SIZE (e.g. 500MB, 2GiB);
                         default: one file
  --tokenizer FILE       copy this tokenizer.json (and tokenizer_config.json beside it);
                         default: tiny writes a built-in byte-level BPE tokenizer, the other
                         presets use .cache/tokenizers/{llama3,qwen3}/tokenizer.json
                         (from scripts/fetch-tokenizers)
  --verify               load the written model back (LoadModel, every tensor checked,
                         pages read in; with --config-only the config is parsed and
                         checked) and report
  --quiet                no progress output
  --help                 this text
)";

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "kvc-make-model: %s\n", message.c_str());
  std::exit(2);
}

int ParseInt(const std::string& flag, const std::string& value) {
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed) || parsed <= 0) {
    Fail(absl::StrCat(flag, ": expected a positive integer, got \"", value, "\""));
  }
  return parsed;
}

bool ParseBool(const std::string& flag, const std::string& value) {
  if (value == "true" || value == "1") return true;
  if (value == "false" || value == "0") return false;
  Fail(absl::StrCat(flag, ": expected true or false, got \"", value, "\""));
}

Architecture ParseArch(const std::string& value) {
  static const std::map<std::string, Architecture> kNames = {
      {"llama", Architecture::kLlama},     {"LlamaForCausalLM", Architecture::kLlama},
      {"mistral", Architecture::kMistral}, {"MistralForCausalLM", Architecture::kMistral},
      {"qwen2", Architecture::kQwen2},     {"Qwen2ForCausalLM", Architecture::kQwen2},
      {"qwen3", Architecture::kQwen3},     {"Qwen3ForCausalLM", Architecture::kQwen3}};
  auto it = kNames.find(value);
  if (it == kNames.end()) Fail(absl::StrCat("--arch: unknown architecture \"", value, "\""));
  return it->second;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  bool quiet = false;
  bool verify = false;
  bool config_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs("\npresets:\n", stdout);
      for (const auto& preset : kvc::make_model::Presets()) {
        std::printf("  %-20s %s\n", preset.name.c_str(), preset.description.c_str());
      }
      return 0;
    }
    if (arg == "--quiet") {
      quiet = true;
      continue;
    }
    if (arg == "--verify") {
      verify = true;
      continue;
    }
    if (arg == "--config-only") {
      config_only = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0)
      Fail(absl::StrCat("unexpected argument \"", arg, "\"; see --help"));
    std::string value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      Fail(absl::StrCat(arg, " needs a value"));
    }
    flags[arg] = value;
  }
  static const char* const kKnown[] = {
      "--out",    "--preset",       "--arch",       "--dtype",    "--layers",
      "--hidden", "--heads",        "--kv-heads",   "--head-dim", "--intermediate",
      "--vocab",  "--max-position", "--rope-theta", "--tie",      "--attention-bias",
      "--seed",   "--output-scale", "--shard-size", "--tokenizer"};
  for (const auto& [flag, value] : flags) {
    if (std::find(std::begin(kKnown), std::end(kKnown), flag) == std::end(kKnown)) {
      Fail(absl::StrCat("unknown flag ", flag, "; see --help"));
    }
  }
  if (!flags.count("--out")) Fail("--out DIR is required; see --help");

  auto preset = kvc::make_model::FindPreset(flags.count("--preset") ? flags["--preset"] : "tiny");
  if (!preset.ok()) Fail(std::string(preset.status().message()));
  MakeModelOptions options;
  options.config_only = config_only;
  if (config_only) {
    for (const char* flag : {"--seed", "--output-scale", "--shard-size"}) {
      if (flags.count(flag)) Fail(absl::StrCat(flag, " has no effect with --config-only"));
    }
  }
  kvc::model::ModelConfig& config = options.config;
  config = preset->config;
  if (flags.count("--arch")) {
    config.architecture = ParseArch(flags["--arch"]);
    config.qk_norm = config.architecture == Architecture::kQwen3;
    config.attention_bias = config.architecture == Architecture::kQwen2;
    config.o_proj_bias = false;
  }
  if (flags.count("--attention-bias")) {
    if (config.architecture == Architecture::kQwen2 ||
        config.architecture == Architecture::kMistral) {
      Fail("--attention-bias applies to llama and qwen3 only");
    }
    config.attention_bias = config.o_proj_bias =
        ParseBool("--attention-bias", flags["--attention-bias"]);
  }
  if (flags.count("--dtype")) {
    auto dtype = kvc::model::ParseDTypeName(flags["--dtype"]);
    if (!dtype.ok()) Fail(absl::StrCat("--dtype: ", dtype.status().message()));
    config.dtype = *dtype;
  }
  const bool head_dim_given = flags.count("--head-dim") > 0;
  if (flags.count("--layers")) config.num_layers = ParseInt("--layers", flags["--layers"]);
  if (flags.count("--hidden")) config.hidden_size = ParseInt("--hidden", flags["--hidden"]);
  if (flags.count("--heads")) config.num_heads = ParseInt("--heads", flags["--heads"]);
  if (flags.count("--kv-heads")) config.num_kv_heads = ParseInt("--kv-heads", flags["--kv-heads"]);
  if (head_dim_given) {
    config.head_dim = ParseInt("--head-dim", flags["--head-dim"]);
  } else if (flags.count("--hidden") || flags.count("--heads")) {
    if (config.hidden_size % config.num_heads != 0) {
      Fail("--hidden must be a multiple of --heads unless --head-dim is given");
    }
    config.head_dim = config.hidden_size / config.num_heads;
  }
  if (flags.count("--intermediate")) {
    config.intermediate_size = ParseInt("--intermediate", flags["--intermediate"]);
  }
  if (flags.count("--max-position")) {
    config.max_position_embeddings = ParseInt("--max-position", flags["--max-position"]);
  }
  if (flags.count("--tie")) config.tie_word_embeddings = ParseBool("--tie", flags["--tie"]);
  if (flags.count("--rope-theta") && !absl::SimpleAtod(flags["--rope-theta"], &config.rope_theta)) {
    Fail("--rope-theta: expected a number");
  }
  if (flags.count("--output-scale") &&
      !absl::SimpleAtod(flags["--output-scale"], &options.init.output_scale)) {
    Fail("--output-scale: expected a number");
  }
  if (flags.count("--seed") && !absl::SimpleAtoi(flags["--seed"], &options.init.seed)) {
    Fail("--seed: expected a non-negative integer");
  }
  if (flags.count("--shard-size")) {
    auto size = kvc::make_model::ParseByteSize(flags["--shard-size"]);
    if (!size.ok()) Fail(absl::StrCat("--shard-size: ", size.status().message()));
    options.shard_bytes = *size;
  }
  if (flags.count("--tokenizer")) {
    options.tokenizer = flags["--tokenizer"];
  } else if (!preset->default_tokenizer.empty() && !config_only) {
    auto path = kvc::make_model::FindRepoFile(preset->default_tokenizer);
    if (!path.ok()) {
      Fail(absl::StrCat("preset ", preset->name, " needs its tokenizer: ", path.status().message(),
                        "\nrun scripts/fetch-tokenizers, or pass --tokenizer FILE"));
    }
    options.tokenizer = *path;
  }
  if (flags.count("--vocab")) {
    config.vocab_size = ParseInt("--vocab", flags["--vocab"]);
    if (options.tokenizer.empty() && !config_only) {  // the built-in tokenizer's specials
      config.bos_token_id = config.vocab_size - 2;
      config.eos_token_ids = {config.vocab_size - 1};
    }
  }
  uint64_t last_report = 0;
  if (!quiet) {
    options.progress = [&last_report](uint64_t written, uint64_t total) {
      if (written != total && written - last_report < (64u << 20)) return;
      last_report = written;
      std::fprintf(stderr, "\rkvc-make-model: %7.1f / %.1f MB (%3d%%)", written / 1e6, total / 1e6,
                   total ? int(written * 100 / total) : 100);
      if (written == total) std::fputc('\n', stderr);
    };
  }
  if (auto status = kvc::make_model::WriteModel(flags["--out"], options); !status.ok()) {
    Fail(std::string(status.message()));
  }
  if (!quiet) {
    std::fprintf(stderr, "kvc-make-model: wrote %s (%s, %s, %d layers%s)\n", flags["--out"].c_str(),
                 kvc::model::ArchitectureName(config.architecture),
                 kvc::model::DTypeName(config.dtype), config.num_layers,
                 config_only ? ", config only" : "");
  }
  if (verify && config_only) {
    auto parsed = kvc::model::LoadModelConfig(flags["--out"]);
    if (!parsed.ok()) Fail(absl::StrCat("verify: ", parsed.status().message()));
    if (auto status = kvc::model::ValidateModelConfig(parsed->config); !status.ok()) {
      Fail(absl::StrCat("verify: ", status.message()));
    }
    std::fprintf(stderr, "kvc-make-model: verify ok: config of %d layers, vocab %d parses back\n",
                 parsed->config.num_layers, parsed->config.vocab_size);
  } else if (verify) {
    kvc::model::LoadOptions load;
    load.prefault = true;
    if (!quiet) {
      load.progress = [](uint64_t loaded, uint64_t total) {
        std::fprintf(stderr, "\rkvc-make-model: verify %7.1f / %.1f MB", loaded / 1e6, total / 1e6);
        if (loaded == total) std::fputc('\n', stderr);
      };
    }
    auto weights = kvc::model::LoadModel(flags["--out"], load);
    if (!weights.ok()) Fail(absl::StrCat("verify: ", weights.status().message()));
    std::fprintf(stderr, "kvc-make-model: verify ok: %zu layers load with every tensor checked\n",
                 weights->layers.size());
  }
  return 0;
}
