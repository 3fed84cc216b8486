// The paged attention kernels (decode with any split count, prefill) against a double-precision
// reference that reads the same cache through the same block tables. The cache is filled with
// random values everywhere, so reading a slot past a sequence's context, or another
// sequence's block, changes the result. Outputs stored as f32 must match within 2e-5 of the
// V scale (float accumulation); bf16 outputs within one bf16 unit (2^-8 relative) of it.
// Needs a GPU; skips otherwise.
#include "worker/backend/cuda/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cuda/cuda_test_util.h"

namespace kvc::backend::cuda {
namespace {

using model::DType;
using testing::Decode;
using testing::DeviceArray;
using testing::Encode;
using testing::RandomNormal;

struct Shape {
  int num_heads;
  int num_kv_heads;
  int head_dim;
  DType kv_dtype;
  int block_size;
  int sliding_window;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << s.num_heads << "q" << s.num_kv_heads << "kv_hd" << s.head_dim << "_"
      << model::DTypeName(s.kv_dtype) << "_bs" << s.block_size << "_w" << s.sliding_window;
}

// A batch of sequences over a random cache, with its host copy for the reference.
class Fixture {
 public:
  // Sequence s has context_lens[s] tokens, the last new_tokens[s] of them new.
  Fixture(const Shape& shape, std::vector<int32_t> context_lens, std::vector<int32_t> new_tokens)
      : shape_(shape), context_lens_(std::move(context_lens)), new_tokens_(std::move(new_tokens)) {
    const int seqs = int(context_lens_.size());
    kv_indptr_.push_back(0);
    qo_indptr_.push_back(0);
    for (int s = 0; s < seqs; ++s) {
      kv_indptr_.push_back(kv_indptr_.back() +
                           (context_lens_[s] + shape.block_size - 1) / shape.block_size);
      qo_indptr_.push_back(qo_indptr_.back() + new_tokens_[s]);
    }
    // Spare blocks too: the kernels must only read the tables' blocks.
    num_blocks_ = kv_indptr_.back() + 3;
    std::vector<int32_t> order(num_blocks_);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(5));
    kv_indices_.assign(order.begin(), order.begin() + kv_indptr_.back());
    const size_t pool =
        size_t(num_blocks_) * shape.num_kv_heads * shape.block_size * shape.head_dim;
    k_ = Decode(Encode(RandomNormal(pool, 1), shape.kv_dtype), shape.kv_dtype);
    v_ = Decode(Encode(RandomNormal(pool, 2), shape.kv_dtype), shape.kv_dtype);
    num_tokens_ = qo_indptr_.back();
    q_stride_ = shape.num_heads * shape.head_dim + 16;  // rows wider than the heads, as in qkv
    q_ = RandomNormal(size_t(num_tokens_) * q_stride_, 3);
  }

  // out[token][head][d] in double for every new token.
  std::vector<double> Reference() const {
    const Shape& sh = shape_;
    const int hd = sh.head_dim, group = sh.num_heads / sh.num_kv_heads;
    const double scale = 1.0 / std::sqrt(double(hd));
    std::vector<double> out(size_t(num_tokens_) * sh.num_heads * hd, 0.0);
    for (size_t s = 0; s < context_lens_.size(); ++s) {
      for (int i = 0; i < new_tokens_[s]; ++i) {
        const int token = qo_indptr_[s] + i;
        const int p = context_lens_[s] - new_tokens_[s] + i;
        const int first = sh.sliding_window > 0 ? std::max(0, p - sh.sliding_window + 1) : 0;
        for (int h = 0; h < sh.num_heads; ++h) {
          const int kvh = h / group;
          std::vector<double> scores;
          double max_score = -INFINITY;
          for (int j = first; j <= p; ++j) {
            double dot = 0;
            for (int d = 0; d < hd; ++d) {
              dot += double(q_[size_t(token) * q_stride_ + size_t(h) * hd + d]) *
                     k_[Offset(s, j, kvh) + d];
            }
            scores.push_back(dot * scale);
            max_score = std::max(max_score, scores.back());
          }
          double sum = 0;
          for (double& e : scores) sum += (e = std::exp(e - max_score));
          for (int j = first; j <= p; ++j) {
            for (int d = 0; d < hd; ++d) {
              out[(size_t(token) * sh.num_heads + h) * hd + d] +=
                  scores[j - first] / sum * v_[Offset(s, j, kvh) + d];
            }
          }
        }
      }
    }
    return out;
  }

  // Device inputs; out has num_tokens x num_heads x head_dim elements of out_dtype.
  struct Device {
    DeviceArray<float> q;
    DeviceArray<int32_t> qo_indptr, context_lens, kv_indptr, kv_indices;
    DeviceArray<uint8_t> k, v, out;
  };
  std::unique_ptr<Device> Upload(DType out_dtype) const {
    return std::unique_ptr<Device>(new Device{
        DeviceArray<float>(q_), DeviceArray<int32_t>(qo_indptr_),
        DeviceArray<int32_t>(context_lens_), DeviceArray<int32_t>(kv_indptr_),
        DeviceArray<int32_t>(kv_indices_), DeviceArray<uint8_t>(Encode(k_, shape_.kv_dtype)),
        DeviceArray<uint8_t>(Encode(v_, shape_.kv_dtype)),
        DeviceArray<uint8_t>(size_t(num_tokens_) * shape_.num_heads * shape_.head_dim *
                             model::DTypeSize(out_dtype))});
  }
  AttentionParams Params(const Device& d, DType out_dtype) const {
    return AttentionParams{.q = d.q.get(),
                           .q_stride = q_stride_,
                           .num_heads = shape_.num_heads,
                           .scale = 1.0f / std::sqrt(float(shape_.head_dim)),
                           .sliding_window = shape_.sliding_window,
                           .qo_indptr = d.qo_indptr.get(),
                           .context_lens = d.context_lens.get(),
                           .kv_indptr = d.kv_indptr.get(),
                           .kv_indices = d.kv_indices.get(),
                           .out = d.out.get(),
                           .out_dtype = out_dtype,
                           .out_stride = shape_.num_heads * shape_.head_dim};
  }
  PagedKv Kv(const Device& d) const {
    return PagedKv{.k = d.k.get(),
                   .v = d.v.get(),
                   .dtype = shape_.kv_dtype,
                   .block_size = shape_.block_size,
                   .num_kv_heads = shape_.num_kv_heads,
                   .head_dim = shape_.head_dim};
  }
  // Prefill tiles of every sequence with more than one new token, as the backend plans them.
  std::vector<PrefillTile> Tiles() const {
    const int per_tile = PrefillTokensPerTile(shape_.num_heads, shape_.num_kv_heads);
    std::vector<PrefillTile> tiles;
    for (size_t s = 0; s < new_tokens_.size(); ++s) {
      if (new_tokens_[s] == 1) continue;  // the decode kernel's
      for (int first = 0; first < new_tokens_[s]; first += per_tile) {
        tiles.push_back(PrefillTile{.seq = int32_t(s), .first_token = first});
      }
    }
    return tiles;
  }
  // Checks rows of `tokens` (all when empty) of the output against the reference.
  void Expect(const Device& d, DType out_dtype, const std::string& what,
              const std::vector<int>& tokens) const {
    const std::vector<double> expected = Reference();
    const std::vector<float> actual = Decode(d.out.ToHost(), out_dtype);
    const int row = shape_.num_heads * shape_.head_dim;
    // Outputs are convex combinations of V rows (|V| < ~5): an absolute bound on that scale.
    const double tol = out_dtype == DType::kF32 ? 2e-5 : 4.0 * testing::UlpTolerance(out_dtype);
    int failures = 0;
    for (int t : tokens) {
      for (int i = 0; i < row && failures < 5; ++i) {
        const double e = expected[size_t(t) * row + i], a = actual[size_t(t) * row + i];
        if (!(std::fabs(a - e) <= tol * std::max(1.0, std::fabs(e)))) {
          ADD_FAILURE() << what << " token " << t << " [" << i << "]: " << a << " vs " << e;
          ++failures;
        }
      }
    }
  }
  int num_tokens() const { return num_tokens_; }

 private:
  size_t Offset(size_t s, int position, int kv_head) const {
    const int32_t block = kv_indices_[kv_indptr_[s] + position / shape_.block_size];
    return ((size_t(block) * shape_.num_kv_heads + kv_head) * shape_.block_size +
            position % shape_.block_size) *
           shape_.head_dim;
  }

  Shape shape_;
  std::vector<int32_t> context_lens_, new_tokens_, qo_indptr_, kv_indptr_, kv_indices_;
  int num_blocks_ = 0, num_tokens_ = 0, q_stride_ = 0;
  std::vector<float> q_, k_, v_;
};

class PagedAttentionTest : public ::testing::TestWithParam<Shape> {};

// Decode sequences of many lengths (1 token, within a block, across blocks, thousands), with
// split counts from 1 to the maximum: the splits must merge to the same attention.
TEST_P(PagedAttentionTest, DecodeMatchesReferenceForEverySplitCount) {
  KVC_REQUIRE_CUDA_DEVICE();
  const Shape& shape = GetParam();
  const std::vector<int32_t> contexts = {1, 2, 15, 16, 17, 100, 1000, 3001};
  const Fixture fixture(shape, contexts, std::vector<int32_t>(contexts.size(), 1));
  std::vector<int> all(fixture.num_tokens());
  std::iota(all.begin(), all.end(), 0);
  for (DType out_dtype : {DType::kF32, DType::kBF16}) {
    for (int splits : {1, 3, 8, kMaxDecodeSplits}) {
      auto d = fixture.Upload(out_dtype);
      const int items = int(contexts.size());
      DeviceArray<float> workspace(
          DecodeWorkspaceFloats(items, shape.num_heads, shape.head_dim, splits));
      ASSERT_EQ(LaunchPagedDecode(fixture.Params(*d, out_dtype), fixture.Kv(*d), nullptr, items,
                                  splits, workspace.get(), nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      fixture.Expect(
          *d, out_dtype,
          std::string("splits ") + std::to_string(splits) + " " + model::DTypeName(out_dtype), all);
    }
  }
}

// Prefill of fresh prompts and of chunks after cached tokens, several tiles per sequence, in
// one launch with a decode sequence beside them (taken by the decode kernel through seq_ids,
// as in a mixed step).
TEST_P(PagedAttentionTest, PrefillAndMixedDecodeMatchReference) {
  KVC_REQUIRE_CUDA_DEVICE();
  const Shape& shape = GetParam();
  // (context, new): fresh prompt; chunk after cached blocks; a decode; a short chunk.
  const Fixture fixture(shape, {150, 300, 41, 20}, {150, 77, 1, 3});
  const std::vector<PrefillTile> tiles = fixture.Tiles();
  const std::vector<int32_t> decode_seqs = {2};
  std::vector<int> all(fixture.num_tokens());
  std::iota(all.begin(), all.end(), 0);
  for (DType out_dtype : {DType::kF32, DType::kBF16}) {
    auto d = fixture.Upload(out_dtype);
    DeviceArray<PrefillTile> d_tiles(tiles);
    DeviceArray<int32_t> d_decode(decode_seqs);
    const int splits = 4;
    DeviceArray<float> workspace(DecodeWorkspaceFloats(1, shape.num_heads, shape.head_dim, splits));
    const AttentionParams params = fixture.Params(*d, out_dtype);
    ASSERT_EQ(LaunchPagedPrefill(params, fixture.Kv(*d), d_tiles.get(), int(tiles.size()), nullptr),
              cudaSuccess);
    ASSERT_EQ(LaunchPagedDecode(params, fixture.Kv(*d), d_decode.get(), 1, splits, workspace.get(),
                                nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    fixture.Expect(*d, out_dtype, std::string("mixed ") + model::DTypeName(out_dtype), all);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PagedAttentionTest,
    ::testing::Values(
        // Llama-3.2-1B's heads (group 4), bf16 cache.
        Shape{32, 8, 64, DType::kBF16, 16, 0},
        // Qwen3-0.6B's (group 2, head_dim 128), f16 cache, odd block size.
        Shape{16, 8, 128, DType::kF16, 5, 0},
        // MHA, f32 cache, head_dim 32, one-token blocks.
        Shape{4, 4, 32, DType::kF32, 1, 0},
        // The tiny preset (head_dim 16), group 2.
        Shape{4, 2, 16, DType::kBF16, 16, 0},
        // Group 12: more query heads than one block takes (chunks of 8 + 4); f32, hd 128.
        Shape{24, 2, 128, DType::kF32, 16, 0},
        // Group 3 (not a power of two), sliding window smaller than most contexts.
        Shape{6, 2, 64, DType::kBF16, 16, 37},
        // MQA with a window of 1 (each token sees only itself).
        Shape{8, 1, 64, DType::kBF16, 8, 1}),
    [](const ::testing::TestParamInfo<Shape>& info) {
      std::ostringstream os;
      PrintTo(info.param, &os);
      return os.str();
    });

TEST(PagedAttentionPlanTest, SplitsFillTheDeviceAndStayInRange) {
  EXPECT_EQ(DecodeSplits(1, 8, 132), 32);  // 8 blocks want 33 splits: capped
  EXPECT_EQ(DecodeSplits(64, 8, 132), 1);
  EXPECT_EQ(DecodeSplits(4, 8, 132), 9);
  EXPECT_EQ(DecodeSplits(0, 8, 132), 1);
  EXPECT_EQ(PrefillTokensPerTile(32, 8), 16);
  EXPECT_EQ(PrefillTokensPerTile(4, 4), 64);
  EXPECT_EQ(PrefillTokensPerTile(24, 2), 8);
  EXPECT_TRUE(PagedAttentionSupports(128, DType::kF32));
  EXPECT_FALSE(PagedAttentionSupports(80, DType::kBF16));
  EXPECT_FALSE(PagedAttentionSupports(256, DType::kBF16));
}

}  // namespace
}  // namespace kvc::backend::cuda
