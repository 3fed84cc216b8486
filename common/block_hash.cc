#include "common/block_hash.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <string>

#include "common/check.h"

namespace kvc {
namespace {

// The contract hashes little-endian bytes; on the (little-endian) hosts we build for, the
// in-memory representation already is that, so blocks are hashed without a copy.
static_assert(std::endian::native == std::endian::little,
              "block hashing assumes a little-endian host; add byte swapping to port it");

}  // namespace

uint64_t SaltHash(std::string_view model_identity, std::string_view lora_name,
                  std::string_view cache_salt, uint64_t seed) {
  std::string identity(model_identity);
  if (!lora_name.empty()) {
    identity += "\x1flora=";
    identity += lora_name;
  }
  if (!cache_salt.empty()) {
    identity += "\x1fsalt=";
    identity += cache_salt;
  }
  return XXH3_64bits_withSeed(identity.data(), identity.size(), seed);
}

uint64_t LocalBlockHash(std::span<const uint32_t> block_tokens, uint64_t seed) {
  return XXH3_64bits_withSeed(block_tokens.data(), block_tokens.size_bytes(), seed);
}

uint64_t ChainBlockHash(uint64_t parent_seq_hash, uint64_t local_hash, uint64_t seed) {
  uint64_t pair[2] = {parent_seq_hash, local_hash};
  return XXH3_64bits_withSeed(pair, sizeof(pair), seed);
}

namespace {

// Calls visit(local_hash, seq_hash) for each full block of `tokens`, in order.
template <typename Visit>
void VisitBlocks(std::span<const uint32_t> tokens, uint64_t salt_hash, const HashConfig& config,
                 Visit&& visit) {
  KVC_CHECK(config.block_size > 0, "block size must be positive");
  const size_t num_blocks = tokens.size() / config.block_size;
  uint64_t parent = salt_hash;
  for (size_t i = 0; i < num_blocks; ++i) {
    const uint64_t local =
        LocalBlockHash(tokens.subspan(i * config.block_size, config.block_size), config.seed);
    parent = ChainBlockHash(parent, local, config.seed);
    visit(local, parent);
  }
}

}  // namespace

BlockHashes HashBlocks(std::span<const uint32_t> tokens, uint64_t salt_hash,
                       const HashConfig& config) {
  BlockHashes hashes;
  const size_t num_blocks = tokens.size() / std::max<uint32_t>(config.block_size, 1);
  hashes.local.reserve(num_blocks);
  hashes.seq.reserve(num_blocks);
  VisitBlocks(tokens, salt_hash, config, [&](uint64_t local, uint64_t seq) {
    hashes.local.push_back(local);
    hashes.seq.push_back(seq);
  });
  return hashes;
}

void AppendSeqHashes(std::span<const uint32_t> tokens, uint64_t salt_hash, const HashConfig& config,
                     std::vector<uint64_t>* seq_hashes) {
  seq_hashes->reserve(seq_hashes->size() +
                      tokens.size() / std::max<uint32_t>(config.block_size, 1));
  VisitBlocks(tokens, salt_hash, config,
              [&](uint64_t, uint64_t seq) { seq_hashes->push_back(seq); });
}

}  // namespace kvc
