#include "common/block_hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <set>
#include <vector>

namespace kvc {
namespace {

// The expected values below were computed once with an independent XXH3 implementation
// (the Python xxhash package), following DESIGN.md's formulas; a change to the scheme must
// fail here before it silently splits a cluster into non-matching halves.
constexpr std::string_view kModel = "kvcluster/test-model";

std::vector<uint32_t> Iota(size_t n) {
  std::vector<uint32_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), 0u);
  return tokens;
}

TEST(BlockHashTest, SaltHashIsPinned) {
  EXPECT_EQ(SaltHash(kModel, "", "", kDefaultHashSeed), 0xf29bf0b902af5161ull);
  EXPECT_EQ(SaltHash(kModel, "adapter-a", "", kDefaultHashSeed), 0xe9e54d2c5b8f176bull);
  EXPECT_EQ(SaltHash(kModel, "", "user-42", kDefaultHashSeed), 0xe1c9476ecea26ed2ull);
}

TEST(BlockHashTest, BlockHashesArePinned) {
  const uint64_t salt = SaltHash(kModel, "", "", kDefaultHashSeed);
  // 40 tokens at block size 16: two full blocks, the partial third is not hashed.
  const BlockHashes hashes = HashBlocks(Iota(40), salt, HashConfig{});
  ASSERT_EQ(hashes.seq.size(), 2u);
  EXPECT_EQ(hashes.local[0], 0xd47a8f41c833328aull);
  EXPECT_EQ(hashes.seq[0], 0x1f1828cd9303422dull);
  EXPECT_EQ(hashes.local[1], 0xd43939178abd00dbull);
  EXPECT_EQ(hashes.seq[1], 0xde0ffcd46e240c4full);
}

TEST(BlockHashTest, BlockSizeEightIsPinned) {
  const uint64_t salt = SaltHash(kModel, "", "", kDefaultHashSeed);
  std::vector<uint32_t> tokens(32);
  for (uint32_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = static_cast<uint32_t>((uint64_t{i} * 2654435761u) % 128256u);
  }
  const BlockHashes hashes = HashBlocks(tokens, salt, HashConfig{.block_size = 8});
  const std::vector<uint64_t> expected_local = {0xf9fca857d5b02888ull, 0x15317c875a5a6445ull,
                                                0xedee5d8ca438b6afull, 0x723bfd5746e05975ull};
  const std::vector<uint64_t> expected_seq = {0xad3d863f9facc37eull, 0x22b50947e8ec187bull,
                                              0xfebec399d364d783ull, 0xe4777e2c797c60cbull};
  EXPECT_EQ(hashes.local, expected_local);
  EXPECT_EQ(hashes.seq, expected_seq);
}

TEST(BlockHashTest, AppendSeqHashesMatchesHashBlocks) {
  const uint64_t salt = SaltHash(kModel, "", "", kDefaultHashSeed);
  const std::vector<uint32_t> tokens = Iota(1000);
  std::vector<uint64_t> seq = {42};  // appends after what is there
  AppendSeqHashes(tokens, salt, HashConfig{}, &seq);
  const BlockHashes hashes = HashBlocks(tokens, salt, HashConfig{});
  ASSERT_EQ(seq.size(), 1 + 1000 / 16);
  EXPECT_EQ(std::vector<uint64_t>(seq.begin() + 1, seq.end()), hashes.seq);
}

TEST(BlockHashTest, ChainDependsOnEveryEarlierBlock) {
  const uint64_t salt = SaltHash(kModel, "", "", kDefaultHashSeed);
  std::vector<uint32_t> tokens = Iota(64);
  const BlockHashes before = HashBlocks(tokens, salt, HashConfig{});
  tokens[3] = 99999;  // inside block 0
  const BlockHashes after = HashBlocks(tokens, salt, HashConfig{});
  EXPECT_NE(before.local[0], after.local[0]);
  EXPECT_EQ(before.local[1], after.local[1]);  // position-independent
  for (size_t i = 0; i < before.seq.size(); ++i) EXPECT_NE(before.seq[i], after.seq[i]);
}

TEST(BlockHashTest, DifferentSaltsNeverShareBlocks) {
  const std::vector<uint32_t> tokens = Iota(16 * 64);
  std::set<uint64_t> seen;
  size_t total = 0;
  for (const auto& [model, lora, salt] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"model-a", "", ""},
           {"model-b", "", ""},
           {"model-a", "lora-1", ""},
           {"model-a", "", "tenant-1"},
           {"model-a", "lora-1", "tenant-1"},
           // The separators keep concatenations apart.
           {"model-alora=x", "", ""},
           {"model-a", "x", ""}}) {
    const BlockHashes hashes =
        HashBlocks(tokens, SaltHash(model, lora, salt, kDefaultHashSeed), HashConfig{});
    seen.insert(hashes.seq.begin(), hashes.seq.end());
    total += hashes.seq.size();
  }
  EXPECT_EQ(seen.size(), total);
}

TEST(BlockHashTest, DifferentBlockSizesAndSeedsNeverCollide) {
  const std::vector<uint32_t> tokens = Iota(16 * 64);
  std::set<uint64_t> seen;
  size_t total = 0;
  for (const HashConfig config :
       {HashConfig{.block_size = 16}, HashConfig{.block_size = 32}, HashConfig{.block_size = 8},
        HashConfig{.block_size = 64}, HashConfig{.block_size = 16, .seed = 7}}) {
    const BlockHashes hashes = HashBlocks(tokens, SaltHash(kModel, "", "", config.seed), config);
    seen.insert(hashes.seq.begin(), hashes.seq.end());
    total += hashes.seq.size();
  }
  EXPECT_EQ(seen.size(), total);
}

TEST(BlockHashTest, DigestIsOrderIndependentAndReversible) {
  BlockSetDigest forward, backward;
  const std::vector<uint64_t> hashes = {11, 0xffffffffffffffffull, 42, 7};
  for (uint64_t h : hashes) forward.Add(h);
  for (auto it = hashes.rbegin(); it != hashes.rend(); ++it) backward.Add(*it);
  EXPECT_EQ(forward, backward);
  forward.Remove(42);
  BlockSetDigest without;
  for (uint64_t h : {11ull, 0xffffffffffffffffull, 7ull}) without.Add(h);
  EXPECT_EQ(forward, without);
  EXPECT_EQ(forward.num_blocks, 3u);
}

}  // namespace
}  // namespace kvc
