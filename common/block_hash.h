// Block hashing: the one implementation of DESIGN.md's contract, shared by workers (which
// report blocks) and the router (which looks them up). Any change here changes every hash in
// a running cluster, so block_hash_test.cc pins exact values.
//
//   local_hash(block) = XXH3_64(little-endian uint32 token ids of the block, seed)
//   seq_hash(0)       = XXH3_64(le64(salt_hash) || le64(local_hash(0)), seed)
//   seq_hash(i)       = XXH3_64(le64(seq_hash(i-1)) || le64(local_hash(i)), seed)
//   salt_hash         = XXH3_64(salt identity string, seed), see SaltHash()
//
// Only full blocks are hashed. All functions are pure and thread-safe.
#ifndef KVCLUSTER_COMMON_BLOCK_HASH_H_
#define KVCLUSTER_COMMON_BLOCK_HASH_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvc {

inline constexpr uint64_t kDefaultHashSeed = 1337;
inline constexpr uint32_t kDefaultBlockSize = 16;
// Name and version of the scheme above, exchanged in HashConfig.scheme.
inline constexpr std::string_view kHashScheme = "xxh3-64-chain-v1";

// The parameters both sides must agree on.
struct HashConfig {
  uint32_t block_size = kDefaultBlockSize;
  uint64_t seed = kDefaultHashSeed;
};

// The salt every sequence's chain starts from. The identity string is the model identity,
// then "\x1flora=" + lora_name when a LoRA adapter is named, then "\x1fsalt=" + cache_salt
// when a per-request salt is given; so a model with neither hashes its plain identity.
uint64_t SaltHash(std::string_view model_identity, std::string_view lora_name,
                  std::string_view cache_salt, uint64_t seed);

// Hash of one block's token ids, independent of its position.
uint64_t LocalBlockHash(std::span<const uint32_t> block_tokens, uint64_t seed);

// Hash of a block given the seq hash before it (the salt hash for the first block).
uint64_t ChainBlockHash(uint64_t parent_seq_hash, uint64_t local_hash, uint64_t seed);

// The hashes of every full block of a token sequence.
struct BlockHashes {
  std::vector<uint64_t> local;
  std::vector<uint64_t> seq;
};

// Hashes the full blocks of `tokens` (a trailing partial block is ignored).
BlockHashes HashBlocks(std::span<const uint32_t> tokens, uint64_t salt_hash,
                       const HashConfig& config);

// Only the seq hashes, the router's lookup key. Appends to *seq_hashes.
void AppendSeqHashes(std::span<const uint32_t> tokens, uint64_t salt_hash, const HashConfig& config,
                     std::vector<uint64_t>* seq_hashes);

// An order-independent summary of a set of seq hashes, kept identically by a worker (over its
// prefix cache) and by the router (over what it indexed for that worker), so that a heartbeat
// proves the two sets are equal. digest is the wrapping sum of the members' seq hashes.
// Not thread-safe; callers own their instance.
struct BlockSetDigest {
  uint64_t num_blocks = 0;
  uint64_t digest = 0;

  void Add(uint64_t seq_hash) {
    ++num_blocks;
    digest += seq_hash;
  }
  void Remove(uint64_t seq_hash) {
    --num_blocks;
    digest -= seq_hash;
  }
  void Clear() { *this = BlockSetDigest{}; }
  friend bool operator==(const BlockSetDigest&, const BlockSetDigest&) = default;
};

}  // namespace kvc

#endif  // KVCLUSTER_COMMON_BLOCK_HASH_H_
