#include "worker/model/safetensors.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/model/safetensors_writer.h"

namespace kvc::model {
namespace {

using ::testing::HasSubstr;

// A file image: length prefix + `header` + `data_bytes` bytes of data.
std::string Image(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((header.size() >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\x11');
}

void ExpectDataLoss(const std::string& image, const std::string& substring) {
  auto parsed = ParseSafetensors(image, "f.safetensors");
  ASSERT_FALSE(parsed.ok()) << substring;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss) << parsed.status();
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("f.safetensors"));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(substring));
}

TEST(SafetensorsTest, ParsesWriterOutput) {
  SafetensorsWriter writer;
  writer.Add("b", DType::kBF16, {3, 5}, [](int64_t n, void* out) { std::memset(out, 1, 2 * n); });
  writer.Add("a", DType::kF32, {2}, [](int64_t n, void* out) { std::memset(out, 2, 4 * n); });
  writer.Add("scalar", DType::kF16, {}, [](int64_t n, void* out) { std::memset(out, 3, 2 * n); });
  const std::string header = writer.EncodeHeader();
  EXPECT_EQ(header.size() % 8, 0u);  // keeps the data area 8-byte aligned
  const std::string image = header + std::string(writer.data_bytes(), '\0');
  auto layout = ParseSafetensors(image, "x");
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->tensors.size(), 3u);
  EXPECT_EQ(layout->data_start, header.size());
  EXPECT_EQ(layout->tensors[0].name, "b");
  EXPECT_EQ(layout->tensors[0].shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(layout->tensors[0].begin, header.size());
  EXPECT_EQ(layout->tensors[1].name, "a");
  EXPECT_EQ(layout->tensors[1].end - layout->tensors[1].begin, 8u);
  EXPECT_EQ(layout->tensors[2].shape.size(), 0u);
  EXPECT_EQ(layout->tensors[2].end, image.size());
}

TEST(SafetensorsTest, AcceptsOtherStandardDtypesAndMetadata) {
  auto layout =
      ParseSafetensors(Image(R"({"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[2],
                "data_offsets":[0,16]},"e":{"dtype":"U8","shape":[0],"data_offsets":[16,16]}})",
                             16),
                       "x");
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->tensors[0].element_size, 8u);
}

TEST(SafetensorsTest, RefusesMalformedFilesPrecisely) {
  ExpectDataLoss("abc", "too short");
  ExpectDataLoss(Image("{}", 0).substr(0, 9), "runs past the end");
  std::string huge = Image("{}", 0);
  huge[6] = 1;  // header length 2^48
  ExpectDataLoss(huge, "exceeds the limit");
  ExpectDataLoss(Image("", 0), "does not start with '{'");
  ExpectDataLoss(Image("{\"a\":", 0), "not valid JSON");
  ExpectDataLoss(Image(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1),
                 "tensor \"a\": unknown dtype \"Q4\"");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                 "needs 12 bytes but data_offsets [0, 8] span 8");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[-3],"data_offsets":[0,8]}})", 8),
                 "bad shape");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8),
                 "bad shape");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],
                           "data_offsets":[0,8]}})",
                       8),
                 "overflows");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
                 "data_offsets");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
                 "run past the data area (8 bytes): truncated?");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                           "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       12),
                 "tensor \"b\" [4, 12) overlaps tensor \"a\" [0, 8)");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                 "hole of 4 bytes before tensor \"a\"");
  ExpectDataLoss(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 9),
                 "1 bytes after the last tensor");
  ExpectDataLoss(Image(R"({"__metadata__":3})", 0), "__metadata__");
  ExpectDataLoss(Image(R"({"a":7})", 0), "not an object");
  ExpectDataLoss(Image("[1,2]", 0), "does not start with '{'");
}

class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/kvc_safetensors_test_XXXXXX";
    path_ = ::mkdtemp(templ);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void WriteString(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(SafetensorsTest, FileViewsPointIntoTheMapping) {
  TempDir dir;
  SafetensorsWriter writer;
  writer.Add("w", DType::kF32, {2, 2}, [](int64_t n, void* out) {
    for (int64_t i = 0; i < n; ++i) static_cast<float*>(out)[i] = float(i) + 0.5f;
  });
  ASSERT_TRUE(writer.Write(dir.path() / "model.safetensors").ok());
  auto checkpoint = SafetensorsCheckpoint::Open(dir.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto view = (*checkpoint)->Get("w", std::vector<int64_t>{2, 2}, DType::kF32);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(static_cast<const float*>(view->data)[3], 3.5f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data) % 8, 0u);

  auto missing = (*checkpoint)->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("model.safetensors: missing tensor \"nope\""));
  auto shape = (*checkpoint)->Get("w", std::vector<int64_t>{4});
  EXPECT_THAT(std::string(shape.status().message()),
              HasSubstr("model.safetensors: tensor \"w\" has shape [2, 2], expected [4]"));
  auto dtype = (*checkpoint)->Get("w", std::nullopt, DType::kBF16);
  EXPECT_THAT(std::string(dtype.status().message()),
              HasSubstr("tensor \"w\" has dtype F32, expected BF16"));

  int progress_calls = 0;
  uint64_t last = 0;
  (*checkpoint)->Prefault([&](uint64_t loaded, uint64_t total) {
    ++progress_calls;
    EXPECT_GE(loaded, last);
    EXPECT_EQ(total, (*checkpoint)->total_bytes());
    last = loaded;
  });
  EXPECT_GE(progress_calls, 2);
  EXPECT_EQ(last, (*checkpoint)->total_bytes());
}

TEST(SafetensorsTest, RefusesUnusableOrMisalignedTensors) {
  TempDir dir;
  WriteString(dir.path() / "model.safetensors",
              Image(R"({"i":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},
                        "f":{"dtype":"F32","shape":[1],"data_offsets":[6,10]},
                        "h":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}})",
                    10));
  auto checkpoint = SafetensorsCheckpoint::Open(dir.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->Get("i").status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string((*checkpoint)->Get("f").status().message()), HasSubstr("not aligned"));
}

TEST(SafetensorsTest, ShardedIndexIsValidated) {
  TempDir dir;
  for (const char* name :
       {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    SafetensorsWriter writer;
    writer.Add(std::string("t_") + name[10], DType::kF32, {1},
               [](int64_t n, void* out) { std::memset(out, 0, 4 * n); });
    ASSERT_TRUE(writer.Write(dir.path() / name).ok());
  }
  auto write_index = [&](const std::string& weight_map) {
    WriteString(dir.path() / "model.safetensors.index.json",
                R"({"metadata":{"total_size":8},"weight_map":)" + weight_map + "}");
  };
  write_index(R"({"t_1":"model-00001-of-00002.safetensors",
                  "t_2":"model-00002-of-00002.safetensors"})");
  auto checkpoint = SafetensorsCheckpoint::Open(dir.path());
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->num_files(), 2u);
  EXPECT_EQ((*checkpoint)->FileOf("t_2"), "model-00002-of-00002.safetensors");
  EXPECT_TRUE((*checkpoint)->Get("t_1").ok());

  write_index(R"({"t_1":"model-00002-of-00002.safetensors"})");
  auto wrong = SafetensorsCheckpoint::Open(dir.path());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(wrong.status().message()),
              HasSubstr("maps tensor \"t_1\" to model-00002-of-00002.safetensors"));
  write_index(R"({"t_1":"../model-00001-of-00002.safetensors"})");
  EXPECT_THAT(std::string(SafetensorsCheckpoint::Open(dir.path()).status().message()),
              HasSubstr("bad file name"));
  write_index(R"({"t_1":"model-00009-of-00009.safetensors"})");
  EXPECT_EQ(SafetensorsCheckpoint::Open(dir.path()).status().code(), absl::StatusCode::kNotFound);
  write_index("[]");
  EXPECT_THAT(std::string(SafetensorsCheckpoint::Open(dir.path()).status().message()),
              HasSubstr("weight_map"));
}

}  // namespace
}  // namespace kvc::model
