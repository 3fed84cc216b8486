// Test helpers: chains of seq hashes built with common/'s hashing, as workers report them.
#ifndef KVCLUSTER_KVINDEX_TEST_CHAINS_H_
#define KVCLUSTER_KVINDEX_TEST_CHAINS_H_

#include <cstdint>
#include <span>
#include <vector>

#include "common/block_hash.h"
#include "kvindex/prefix_index.h"

namespace kvc::kvindex::testing {

// `length` blocks after `parent` (a salt for a first block), local hashes `first_local`,
// first_local + 1, ...
inline std::vector<StoredBlock> ChainAfter(uint64_t parent, uint64_t first_local, size_t length) {
  std::vector<StoredBlock> blocks;
  for (size_t i = 0; i < length; ++i) {
    const uint64_t local = first_local + i;
    parent = ChainBlockHash(parent, local, kDefaultHashSeed);
    blocks.push_back({parent, local});
  }
  return blocks;
}

inline std::vector<uint64_t> SeqHashes(std::span<const StoredBlock> blocks) {
  std::vector<uint64_t> hashes;
  for (const StoredBlock& block : blocks) hashes.push_back(block.seq_hash);
  return hashes;
}

inline BlockSetDigest DigestOf(std::span<const uint64_t> hashes) {
  BlockSetDigest digest;
  for (uint64_t hash : hashes) digest.Add(hash);
  return digest;
}

}  // namespace kvc::kvindex::testing

#endif  // KVCLUSTER_KVINDEX_TEST_CHAINS_H_
