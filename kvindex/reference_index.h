// A plain, obviously correct PrefixIndex for tests: per worker a std::set of the seq hashes it
// holds, and FindMatches walks the request for every worker. Slow by design; the radix tree is
// checked against it on random event sequences.
//
// It keeps no tree, so it cannot tell that a hash sits under another parent: it never reports
// inconsistent_stores, and tests feed both indexes only consistent hashes. Its IndexStats has
// blocks and block_worker_pairs; nodes and memory_bytes are 0.
//
// Thread safety: every method may be called from any thread (one mutex around everything).
#ifndef KVCLUSTER_KVINDEX_REFERENCE_INDEX_H_
#define KVCLUSTER_KVINDEX_REFERENCE_INDEX_H_

#include <memory>

#include "kvindex/prefix_index.h"

namespace kvc::kvindex {

std::unique_ptr<PrefixIndex> NewReferenceIndex(const PrefixIndexOptions& options = {});

}  // namespace kvc::kvindex

#endif  // KVCLUSTER_KVINDEX_REFERENCE_INDEX_H_
