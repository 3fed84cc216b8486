// Randomized robustness test of the safetensors parser: thousands of valid images are
// truncated, bit-flipped, re-lengthed and spliced with JSON-ish noise. The parser must never
// crash or read out of bounds (run under KVC_SANITIZE=ON to prove the latter), must refuse
// every truncated image, and whatever it accepts must satisfy the layout invariants.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "worker/model/safetensors.h"
#include "worker/model/safetensors_writer.h"

namespace kvc::model {
namespace {

std::string RandomValidImage(std::mt19937_64& rng) {
  SafetensorsWriter writer;
  const int tensors = int(rng() % 6);
  for (int t = 0; t < tensors; ++t) {
    const DType dtype = DType(rng() % 3);
    std::vector<int64_t> shape(rng() % 4);
    for (int64_t& d : shape) d = int64_t(rng() % 5);
    writer.Add("model.layers." + std::to_string(t) + ".w", dtype, shape,
               [](int64_t n, void* out) { std::memset(out, 0x5a, size_t(n) * 4); });
  }
  return writer.EncodeHeader() + std::string(writer.data_bytes(), '\x5a');
}

void SetLength(std::string& image, uint64_t length) {
  for (int i = 0; i < 8; ++i) image[size_t(i)] = char((length >> (8 * i)) & 0xff);
}

// Accepted layouts must describe memory inside the image, tiled exactly.
void CheckInvariants(const SafetensorsLayout& layout, const std::string& image) {
  uint64_t at = layout.data_start;
  ASSERT_LE(layout.data_start, image.size());
  for (const SafetensorsTensor& tensor : layout.tensors) {
    ASSERT_EQ(tensor.begin, at);
    ASSERT_LE(tensor.end, image.size());
    uint64_t bytes = tensor.element_size;
    for (int64_t d : tensor.shape) bytes *= uint64_t(d);
    ASSERT_EQ(tensor.end - tensor.begin, bytes);
    at = tensor.end;
  }
  ASSERT_EQ(at, image.size());
}

TEST(SafetensorsFuzzTest, MutatedImagesNeverCrash) {
  std::mt19937_64 rng(20240601);
  static constexpr char kJsonNoise[] = "{}[]\":,0123456789-eE.tfn \\";
  int accepted = 0, refused = 0;
  char templ[] = "/tmp/kvc_fuzz_XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(templ);
  for (int iteration = 0; iteration < 20000; ++iteration) {
    const std::string valid = RandomValidImage(rng);
    ASSERT_TRUE(ParseSafetensors(valid, "valid").ok());
    std::string image = valid;
    bool must_fail = false;
    switch (rng() % 6) {
      case 0:  // truncate anywhere
        image.resize(size_t(rng() % valid.size()));
        must_fail = true;
        break;
      case 1:  // flip bits anywhere
        for (int flips = 1 + int(rng() % 4); flips > 0; --flips) {
          image[size_t(rng() % image.size())] ^= char(1 << (rng() % 8));
        }
        break;
      case 2:  // JSON-ish noise inside the header
        for (int edits = 1 + int(rng() % 4); edits > 0; --edits) {
          const size_t at = 8 + size_t(rng() % (image.size() - 8));
          image[at] = kJsonNoise[rng() % (sizeof(kJsonNoise) - 1)];
        }
        break;
      case 3:  // a random header length
        SetLength(image, rng() % 3 == 0 ? rng() : rng() % (image.size() + 16));
        break;
      case 4: {  // delete a span of the header, keeping the length prefix consistent
        const size_t header = valid.size() - 8;
        const size_t at = 8 + size_t(rng() % header);
        const size_t count = 1 + size_t(rng() % 8);
        image.erase(at, count);
        uint64_t length = 0;
        for (int i = 7; i >= 0; --i) length = (length << 8) | uint8_t(valid[size_t(i)]);
        SetLength(image, length >= count ? length - count : 0);
        break;
      }
      default:  // pure noise
        image.resize(size_t(rng() % 256));
        for (char& c : image) c = char(rng());
        break;
    }
    auto parsed = ParseSafetensors(image, "fuzz.safetensors");
    if (iteration % 100 == 0) {  // the mmap path agrees with the in-memory parse
      const std::filesystem::path path = dir / "fuzz.safetensors";
      std::ofstream(path, std::ios::binary | std::ios::trunc) << image;
      auto opened = SafetensorsFile::Open(path);
      ASSERT_EQ(opened.ok(), parsed.ok()) << opened.status();
      if (opened.ok()) {
        for (const SafetensorsTensor& tensor : (*opened)->tensors()) {
          auto view = (*opened)->View(tensor);
          if (!view.ok()) continue;
          // Read every byte of the view: out-of-bounds would trip the sanitizers or fault.
          const char* bytes = static_cast<const char*>(view->data);
          char sum = 0;
          for (size_t i = 0; i < view->size_bytes(); ++i) sum ^= bytes[i];
          static_cast<void>(sum);
        }
      }
    }
    if (parsed.ok()) {
      ++accepted;
      ASSERT_FALSE(must_fail) << "accepted a truncated image";
      CheckInvariants(*parsed, image);
    } else {
      ++refused;
      ASSERT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss) << parsed.status();
      ASSERT_NE(parsed.status().message().find("fuzz.safetensors"), absl::string_view::npos);
    }
  }
  std::filesystem::remove_all(dir);
  EXPECT_GT(refused, 10000);
  EXPECT_GT(accepted, 0);  // some mutations (e.g. in padding) leave a valid file
}

}  // namespace
}  // namespace kvc::model
