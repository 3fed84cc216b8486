#include "tools/kvc-make-model/make_model.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "common/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/kvc-make-model/tiny_tokenizer.h"
#include "worker/model/config.h"
#include "worker/model/dtype_convert.h"
#include "worker/model/loader.h"
#include "worker/model/tensor_specs.h"

namespace kvc::make_model {
namespace {

using model::DType;
using model::LoadModel;
using model::ModelWeights;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/kvc_make_model_test_XXXXXX";
    path_ = ::mkdtemp(templ);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteAll(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

MakeModelOptions TinyOptions() {
  MakeModelOptions options;
  options.config = FindPreset("tiny")->config;
  return options;
}

// Every tensor of the loaded model equals the in-memory random model bit for bit.
void ExpectMatchesInMemory(const ModelWeights& loaded, const model::InitOptions& init) {
  ModelWeights expected = model::MakeRandomWeights(loaded.config, init);
  ModelWeights got = loaded;
  for (const model::TensorSpec& spec : model::ExpectedTensors(loaded.config)) {
    const model::TensorView& a = model::SlotOf(got, spec);
    const model::TensorView& b = model::SlotOf(expected, spec);
    ASSERT_EQ(a.shape, spec.shape) << spec.name;
    ASSERT_EQ(a.dtype, loaded.config.dtype) << spec.name;
    ASSERT_EQ(std::memcmp(a.data, b.data, a.size_bytes()), 0) << spec.name;
  }
}

TEST(MakeModelTest, TinyModelLoadsAndEveryTensorChecks) {
  TempDir dir;
  MakeModelOptions options = TinyOptions();
  options.init.seed = 42;
  uint64_t last_written = 0, last_total = 0;
  options.progress = [&](uint64_t written, uint64_t total) {
    EXPECT_GE(written, last_written);
    last_written = written;
    last_total = total;
  };
  ASSERT_TRUE(WriteModel(dir.path(), options).ok());
  EXPECT_EQ(last_written, last_total);
  for (const char* file : {"config.json", "generation_config.json", "model.safetensors",
                           "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(std::filesystem::exists(dir.path() / file)) << file;
  }
  auto weights = LoadModel(dir.path());
  ASSERT_TRUE(weights.ok()) << weights.status();
  const model::ModelConfig& c = weights->config;
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.dtype, DType::kF32);
  EXPECT_EQ(c.bos_token_id, 510);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{511});
  ExpectMatchesInMemory(*weights, options.init);
}

TEST(MakeModelTest, OutputIsDeterministic) {
  TempDir a, b, c;
  MakeModelOptions options = TinyOptions();
  ASSERT_TRUE(WriteModel(a.path(), options).ok());
  ASSERT_TRUE(WriteModel(b.path(), options).ok());
  options.init.seed = 1;
  ASSERT_TRUE(WriteModel(c.path(), options).ok());
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json"}) {
    EXPECT_EQ(ReadAll(a.path() / file), ReadAll(b.path() / file)) << file;
  }
  EXPECT_NE(ReadAll(a.path() / "model.safetensors"), ReadAll(c.path() / "model.safetensors"));
}

TEST(MakeModelTest, ShardedOutputLoads) {
  TempDir dir;
  MakeModelOptions options = TinyOptions();
  options.shard_bytes = 100 << 10;
  ASSERT_TRUE(WriteModel(dir.path(), options).ok());
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "model.safetensors"));
  int shards = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    shards += entry.path().extension() == ".safetensors";
  }
  EXPECT_GE(shards, 4);
  const auto index = nlohmann::json::parse(ReadAll(dir.path() / "model.safetensors.index.json"));
  EXPECT_EQ(index["weight_map"]["model.embed_tokens.weight"],
            "model-00001-of-0000" + std::to_string(shards) + ".safetensors");
  auto weights = LoadModel(dir.path());
  ASSERT_TRUE(weights.ok()) << weights.status();
  ExpectMatchesInMemory(*weights, options.init);
  // Rewriting unsharded into the same directory removes the shards (a stale index would win).
  options.shard_bytes = 0;
  ASSERT_TRUE(WriteModel(dir.path(), options).ok());
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "model.safetensors.index.json"));
  EXPECT_TRUE(LoadModel(dir.path()).ok());
}

TEST(MakeModelTest, EveryDtypeAndArchitectureLoads) {
  TempDir reference_dir;
  ASSERT_TRUE(WriteModel(reference_dir.path(), TinyOptions()).ok());
  auto reference = LoadModel(reference_dir.path());
  ASSERT_TRUE(reference.ok());
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (model::Architecture arch : {model::Architecture::kLlama, model::Architecture::kMistral,
                                     model::Architecture::kQwen2, model::Architecture::kQwen3}) {
      TempDir dir;
      MakeModelOptions options = TinyOptions();
      options.config.dtype = dtype;
      options.config.architecture = arch;
      options.config.attention_bias = arch == model::Architecture::kQwen2;
      options.config.qk_norm = arch == model::Architecture::kQwen3;
      ASSERT_TRUE(WriteModel(dir.path(), options).ok());
      auto weights = LoadModel(dir.path());
      ASSERT_TRUE(weights.ok()) << weights.status();
      EXPECT_EQ(weights->config.dtype, dtype);
      EXPECT_EQ(weights->config.architecture, arch);
      ExpectMatchesInMemory(*weights, options.init);
      // The same values up to the dtype's rounding, whatever the dtype.
      const model::TensorView& got = weights->layers[1].down_proj;
      const model::TensorView& want = reference->layers[1].down_proj;
      for (int64_t i = 0; i < got.numel(); i += 97) {
        const float expected = model::LoadAsFloat(want.data, want.dtype, i);
        EXPECT_NEAR(model::LoadAsFloat(got.data, got.dtype, i), expected,
                    std::abs(expected) / 128 + 1e-6);
      }
    }
  }
}

// Rewrites the header of `path` through `edit`, keeping the data area as it was.
void EditHeader(const std::filesystem::path& path,
                const std::function<void(nlohmann::ordered_json&)>& edit) {
  const std::string file = ReadAll(path);
  uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | uint8_t(file[size_t(i)]);
  auto header = nlohmann::ordered_json::parse(file.substr(8, length));
  edit(header);
  std::string json = header.dump();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((json.size() >> (8 * i)) & 0xff);
  WriteAll(path, out + json + file.substr(8 + length));
}

void ExpectLoadError(const std::filesystem::path& dir, absl::StatusCode code,
                     const std::vector<std::string>& substrings) {
  auto weights = LoadModel(dir);
  ASSERT_FALSE(weights.ok());
  EXPECT_EQ(weights.status().code(), code) << weights.status();
  for (const std::string& substring : substrings) {
    EXPECT_THAT(std::string(weights.status().message()), HasSubstr(substring));
  }
}

TEST(MakeModelTest, CorruptedFilesGivePreciseErrors) {
  TempDir dir;
  const std::filesystem::path weights = dir.path() / "model.safetensors";
  auto regenerate = [&] { ASSERT_TRUE(WriteModel(dir.path(), TinyOptions()).ok()); };

  regenerate();
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) - 1000);
  ExpectLoadError(dir.path(), absl::StatusCode::kDataLoss,
                  {"model.safetensors", "lm_head.weight", "truncated?"});
  std::filesystem::resize_file(weights, 100);
  ExpectLoadError(dir.path(), absl::StatusCode::kDataLoss,
                  {"model.safetensors", "runs past the end of the file"});

  regenerate();
  std::string bytes = ReadAll(weights);
  bytes[8] = '[';  // the header's opening brace
  WriteAll(weights, bytes);
  ExpectLoadError(dir.path(), absl::StatusCode::kDataLoss, {"model.safetensors", "'{'"});

  regenerate();
  bytes = ReadAll(weights);
  bytes[bytes.find("}}") + 1] = '!';  // breaks the JSON
  WriteAll(weights, bytes);
  ExpectLoadError(dir.path(), absl::StatusCode::kDataLoss, {"not valid JSON"});

  // A tensor deleted from the header leaves its bytes unaccounted for.
  regenerate();
  EditHeader(weights, [](auto& header) { header.erase("model.layers.0.mlp.up_proj.weight"); });
  ExpectLoadError(dir.path(), absl::StatusCode::kDataLoss, {"hole of 32768 bytes"});

  // A dtype changed in the header no longer matches the byte span.
  regenerate();
  EditHeader(weights,
             [](auto& header) { header["model.layers.1.mlp.down_proj.weight"]["dtype"] = "BF16"; });
  ExpectLoadError(dir.path(), absl::StatusCode::kDataLoss,
                  {"model.layers.1.mlp.down_proj.weight", "needs 16384 bytes"});

  // A consistent file whose dtype differs from config.json's torch_dtype.
  regenerate();
  MakeModelOptions f16 = TinyOptions();
  f16.config.dtype = DType::kF16;
  ASSERT_TRUE(WriteModel(dir.path(), f16).ok());
  WriteAll(dir.path() / "config.json", model::ModelConfigToJson(TinyOptions().config));
  ExpectLoadError(dir.path(), absl::StatusCode::kInvalidArgument,
                  {"model.safetensors", "model.embed_tokens.weight", "dtype F16, expected F32"});

  // A shape in the file that disagrees with config.json.
  regenerate();
  model::ModelConfig wider = TinyOptions().config;
  wider.intermediate_size = 256;
  WriteAll(dir.path() / "config.json", model::ModelConfigToJson(wider));
  ExpectLoadError(dir.path(), absl::StatusCode::kInvalidArgument,
                  {"model.layers.0.mlp.gate_proj.weight", "[128, 64], expected [256, 64]"});

  // A missing shard.
  MakeModelOptions sharded = TinyOptions();
  sharded.shard_bytes = 100 << 10;
  ASSERT_TRUE(WriteModel(dir.path(), sharded).ok());
  std::filesystem::remove(dir.path() / "model-00002-of-00006.safetensors");
  ExpectLoadError(dir.path(), absl::StatusCode::kNotFound, {"model-00002-of-00006.safetensors"});
}

TEST(MakeModelTest, TinyTokenizerIsStandardByteLevelBpe) {
  for (int vocab : {kMinTinyVocab, 512, 3000}) {
    const auto tokenizer = nlohmann::json::parse(TinyTokenizerJson(vocab));
    const auto& model = tokenizer["model"];
    EXPECT_EQ(model["type"], "BPE");
    EXPECT_EQ(tokenizer["pre_tokenizer"]["type"], "ByteLevel");
    EXPECT_EQ(tokenizer["decoder"]["type"], "ByteLevel");
    const auto& token_ids = model["vocab"];
    ASSERT_EQ(int(token_ids.size()), vocab - 2);
    std::set<int> ids;
    for (const auto& [token, id] : token_ids.items()) ids.insert(id.get<int>());
    EXPECT_EQ(int(ids.size()), vocab - 2);
    EXPECT_EQ(*ids.rbegin(), vocab - 3);
    for (int byte = 0; byte < 256; ++byte) {
      EXPECT_TRUE(token_ids.contains(ByteToUnicode((unsigned char)byte))) << byte;
    }
    EXPECT_EQ(token_ids["!"], 0);
    EXPECT_TRUE(token_ids.contains("Ġ"));  // the space byte
    for (const auto& merge : model["merges"]) {
      const std::string text = merge.get<std::string>();
      const size_t space = text.find(' ');
      ASSERT_NE(space, std::string::npos);
      EXPECT_TRUE(token_ids.contains(text.substr(0, space))) << text;
      EXPECT_TRUE(token_ids.contains(text.substr(space + 1))) << text;
      EXPECT_TRUE(token_ids.contains(text.substr(0, space) + text.substr(space + 1))) << text;
    }
    const auto& added = tokenizer["added_tokens"];
    ASSERT_EQ(added.size(), 2u);
    EXPECT_EQ(added[0]["content"], "<|begin_of_text|>");
    EXPECT_EQ(added[0]["id"], vocab - 2);
    EXPECT_EQ(added[1]["content"], "<|end_of_text|>");
    EXPECT_EQ(added[1]["special"], true);
  }
  EXPECT_EQ(ByteToUnicode(' '), "Ġ");
  EXPECT_EQ(ByteToUnicode('\n'), "Ċ");
  EXPECT_EQ(ByteToUnicode('a'), "a");
}

// The project's tokenizer (common/tokenizer) reads the built-in one like any HF tokenizer.
TEST(MakeModelTest, TinyTokenizerLoadsWithTheProjectTokenizer) {
  TempDir dir;
  ASSERT_TRUE(WriteModel(dir.path(), TinyOptions()).ok());
  auto tokenizer = Tokenizer::FromFile((dir.path() / "tokenizer.json").string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 512u);
  EXPECT_EQ((*tokenizer)->bos_id(), 510u);
  EXPECT_EQ((*tokenizer)->eos_id(), 511u);
  EXPECT_EQ((*tokenizer)->TokenToId("<|end_of_text|>"), 511u);
  EXPECT_TRUE((*tokenizer)->IsSpecial(510));
  const std::string text = "The worker sends the events, and the router learns 1024 things!";
  const std::vector<uint32_t> ids = (*tokenizer)->Encode(text, false);
  EXPECT_LT(ids.size(), text.size() / 2);  // the merges do compress English
  for (uint32_t id : ids) EXPECT_LT(id, 510u);
  auto decoded = (*tokenizer)->Decode(ids);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, text);
  const std::vector<uint32_t> with_special = (*tokenizer)->Encode("hi<|end_of_text|>", false);
  EXPECT_EQ(with_special.back(), 511u);
}

TEST(MakeModelTest, CopiesAGivenTokenizer) {
  TempDir source, dir;
  WriteAll(source.path() / "tokenizer.json", TinyTokenizerJson(300));
  WriteAll(source.path() / "tokenizer_config.json", "{\"bos_token\": \"x\"}\n");
  MakeModelOptions options = TinyOptions();
  options.tokenizer = source.path() / "tokenizer.json";
  ASSERT_TRUE(WriteModel(dir.path(), options).ok());
  EXPECT_EQ(ReadAll(dir.path() / "tokenizer.json"), TinyTokenizerJson(300));
  EXPECT_EQ(ReadAll(dir.path() / "tokenizer_config.json"), "{\"bos_token\": \"x\"}\n");
  EXPECT_EQ(*MaxTokenId(options.tokenizer), 299);

  options.config.vocab_size = 299;  // too small for the tokenizer's ids
  options.config.bos_token_id = 1;
  options.config.eos_token_ids = {2};
  auto status = WriteModel(dir.path(), options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("token id 299, outside vocab_size 299"));
}

TEST(MakeModelTest, PresetsHaveThePublishedShapes) {
  auto count = [](const model::ModelConfig& config) {
    int64_t params = 0;
    for (const auto& spec : model::ExpectedTensors(config)) params += spec.numel();
    return params;
  };
  auto llama = FindPreset("llama-3.2-1b-shape");
  ASSERT_TRUE(llama.ok());
  EXPECT_EQ(count(llama->config), 1235814400);  // Llama-3.2-1B
  EXPECT_TRUE(llama->config.rope_scaling.has_value());
  EXPECT_EQ(llama->config.rope_scaling->factor, 32.0);
  auto llama8b = FindPreset("llama-3.1-8b-shape");
  ASSERT_TRUE(llama8b.ok());
  EXPECT_EQ(count(llama8b->config), 8030261248);  // Llama-3.1-8B
  EXPECT_FALSE(llama8b->config.tie_word_embeddings);
  EXPECT_EQ(llama8b->config.KvBytesPerToken(DType::kBF16), 131072u);
  auto qwen = FindPreset("qwen3-0.6b-shape");
  ASSERT_TRUE(qwen.ok());
  EXPECT_EQ(count(qwen->config), 596049920);  // Qwen3-0.6B
  EXPECT_TRUE(qwen->config.qk_norm);
  EXPECT_FALSE(FindPreset("huge").ok());
  for (const Preset& preset : Presets()) {
    EXPECT_TRUE(model::ValidateModelConfig(preset.config).ok()) << preset.name;
    // What WriteModel puts in config.json parses back to the preset.
    auto parsed = model::ParseModelConfig(model::ModelConfigToJson(preset.config),
                                          model::GenerationConfigToJson(preset.config));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->config.head_dim, preset.config.head_dim);
    EXPECT_EQ(parsed->config.eos_token_ids, preset.config.eos_token_ids);
  }
}

TEST(MakeModelTest, ConfigOnlyWritesTheSizesWithoutWeights) {
  TempDir dir;
  // An earlier full model in the same directory: its weights and tokenizer must go.
  ASSERT_TRUE(WriteModel(dir.path(), TinyOptions()).ok());
  MakeModelOptions options;
  options.config = FindPreset("llama-3.1-8b-shape")->config;
  options.config_only = true;
  ASSERT_TRUE(WriteModel(dir.path(), options).ok());
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    files.insert(entry.path().filename().string());
  }
  EXPECT_EQ(files, (std::set<std::string>{"config.json", "generation_config.json"}));
  auto parsed = model::LoadModelConfig(dir.path());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->config.num_layers, 32);
  EXPECT_EQ(parsed->config.intermediate_size, 14336);
  EXPECT_EQ(parsed->config.KvBytesPerToken(DType::kBF16), 131072u);
  EXPECT_EQ(parsed->config.eos_token_ids, options.config.eos_token_ids);
  EXPECT_EQ(LoadModel(dir.path()).status().code(), absl::StatusCode::kNotFound);

  // With a tokenizer, it is copied beside the config.
  TempDir source;
  WriteAll(source.path() / "tokenizer.json", TinyTokenizerJson(300));
  options.tokenizer = source.path() / "tokenizer.json";
  ASSERT_TRUE(WriteModel(dir.path(), options).ok());
  EXPECT_EQ(ReadAll(dir.path() / "tokenizer.json"), TinyTokenizerJson(300));
}

TEST(MakeModelTest, ParsesByteSizes) {
  EXPECT_EQ(*ParseByteSize("123"), 123u);
  EXPECT_EQ(*ParseByteSize("64K"), 65536u);
  EXPECT_EQ(*ParseByteSize("500MB"), 500000000u);
  EXPECT_EQ(*ParseByteSize("2GiB"), 2ull << 30);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("12XB").ok());
  EXPECT_FALSE(ParseByteSize("MB").ok());
}

}  // namespace
}  // namespace kvc::make_model
