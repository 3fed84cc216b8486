// Internal to kvindex: the path-compressed radix tree behind NewPrefixIndex().
//
// A node holds a run of consecutive blocks (their seq hashes, contiguous) and ONE set of
// workers that is uniform over the run: every worker in the set holds every block of the run.
// Where workers differ along a run the node is split; a node whose only child has the same set
// is merged into it. So a lookup compares the request's hashes against contiguous arrays and
// intersects worker sets once per node, not once per block. Children are found by their first
// seq hash (a short inline list, or a hash index once a node has many children).
//
// Because seq hashes chain, a block's hash identifies its whole path, so a writer-side flat
// map seq_hash -> (node, depth) locates any block for events. Depth never changes, so only the
// node id needs updating when blocks move between nodes; splits and merges move the smaller
// side, which keeps updates amortized.
//
// Canonical form, kept after every public call: no node but the root has an empty run; no
// node but the root is both workerless and childless; no node but the root has exactly one
// child with an equal worker set. Nodes with no workers may remain when a descendant is held
// (a worker removed an inner block).
//
// Thread safety: none of its own. PrefixIndex wraps it in a reader-writer lock; const methods
// only read. One exception, relied on to keep rehashing out of lookups' way: FindMatches never
// reads the location map, so ReserveForInserts (which touches nothing else) may run while
// FindMatches calls are in progress.
#ifndef KVCLUSTER_KVINDEX_RADIX_TREE_H_
#define KVCLUSTER_KVINDEX_RADIX_TREE_H_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "common/block_hash.h"
#include "kvindex/prefix_index.h"

namespace kvc::kvindex::internal {

using NodeId = uint32_t;
inline constexpr NodeId kRoot = 0;  // the root holds no blocks; first blocks are its children
inline constexpr NodeId kNoNode = UINT32_MAX;

// Worker sets are sorted.
template <typename Set>
bool Contains(const Set& set, WorkerId worker) {
  return std::binary_search(set.begin(), set.end(), worker);
}

class RadixTree {
 public:
  struct StoreOutcome {
    uint64_t added = 0;         // blocks the worker did not hold before
    uint64_t duplicates = 0;    // blocks it already held
    size_t applied = 0;         // leading blocks of the request processed
    bool inconsistent = false;  // stopped at a hash that sits elsewhere in the tree
  };
  // A run of blocks inside one node, named by its first block.
  struct Run {
    uint64_t first_seq_hash = 0;
    uint32_t length = 0;
  };

  RadixTree();
  RadixTree(const RadixTree&) = delete;
  RadixTree& operator=(const RadixTree&) = delete;

  bool Holds(WorkerId worker, uint64_t seq_hash) const;

  // Makes room in the location map so that the next `inserts` new blocks cause no rehash.
  // Rehashing millions of entries takes tens of milliseconds; done here, it need not hold up
  // lookups (see the thread-safety note above).
  void ReserveForInserts(size_t inserts);

  // Stores the chain `seq_hashes` after `parent` (a first block when absent) for `worker`.
  // REQUIRES: the worker holds `parent`. Newly held blocks are added to *digest.
  StoreOutcome Store(WorkerId worker, std::optional<uint64_t> parent,
                     std::span<const uint64_t> seq_hashes, BlockSetDigest* digest);
  // Drops the worker from each listed block it holds (removed from *digest); returns how many
  // listed blocks it did not hold.
  uint64_t Remove(WorkerId worker, std::span<const uint64_t> seq_hashes, BlockSetDigest* digest);

  // Appends the runs the worker holds. They stay valid while only RemoveRun(worker, ...) runs.
  void CollectRuns(WorkerId worker, std::vector<Run>* runs) const;
  // REQUIRES: the worker holds the whole run.
  void RemoveRun(WorkerId worker, const Run& run, BlockSetDigest* digest);

  // See PrefixIndex::FindMatches. Workers w with hidden[w] != 0 are left out.
  // REQUIRES: hidden.size() exceeds every worker id in the tree.
  void FindMatches(std::span<const uint64_t> seq_hashes, std::span<const uint8_t> hidden,
                   std::vector<WorkerMatch>* matches) const;

  uint64_t num_nodes() const { return nodes_.size() - free_nodes_.size(); }
  uint64_t num_blocks() const { return locations_.size(); }
  uint64_t MemoryBytes() const;
  absl::Status CheckConsistency() const;

 private:
  using WorkerSet = absl::InlinedVector<WorkerId, 4>;  // sorted, unique
  using ChildIndex = absl::flat_hash_map<uint64_t, NodeId>;
  struct ChildRef {
    uint64_t first_seq_hash;
    NodeId node;
  };
  struct Node {
    std::vector<uint64_t> seq_hashes;
    WorkerSet workers;
    // Children live in `children` until there are many, then in `child_index` (keyed by the
    // child's first seq hash) and `children` is empty. The first hash is kept beside the id so
    // that finding a child reads no child node (a cache miss each).
    absl::InlinedVector<ChildRef, 2> children;
    std::unique_ptr<ChildIndex> child_index;
    NodeId parent = 0;
    uint32_t start_depth = 0;  // depth of seq_hashes[0]; the root's children start at 0
    bool in_use = false;
  };
  struct Location {
    NodeId node;
    uint32_t depth;
  };

  NodeId AllocNode();
  void FreeNode(NodeId id);

  size_t ChildCount(NodeId id) const;
  NodeId FindChild(NodeId id, uint64_t first_seq_hash) const;
  NodeId OnlyChild(NodeId id) const;
  void AddChild(NodeId parent, NodeId child);
  void RemoveChild(NodeId parent, NodeId child);
  // `to` takes `from`'s place; both must start with the same seq hash.
  void ReplaceChild(NodeId parent, NodeId from, NodeId to);
  std::vector<NodeId> ChildrenOf(NodeId id) const;
  void Relocate(NodeId id, size_t begin, size_t end);

  // Appends a new chain after the block at `offset` of `node` (-1 with the root).
  size_t AppendChain(WorkerId worker, NodeId node, int64_t offset,
                     std::span<const uint64_t> seq_hashes, BlockSetDigest* digest,
                     bool* inconsistent);
  // Splits at offset k; returns {top, bottom}.
  std::pair<NodeId, NodeId> Split(NodeId id, uint32_t k);
  // Splits so that one node covers exactly [begin, end) of `id`; returns it.
  NodeId Isolate(NodeId id, uint32_t begin, uint32_t end);
  // Merges `id` with its only child (equal worker sets); returns the surviving node.
  NodeId MergeWithChild(NodeId id);
  // Restores canonical form around a node whose worker set just changed.
  void Normalize(NodeId id);
  void ChangeWorkers(WorkerId worker, NodeId id, uint32_t begin, uint32_t end, bool add);

  std::vector<Node> nodes_;  // index 0 is the root, which holds no blocks
  std::vector<NodeId> free_nodes_;
  absl::flat_hash_map<uint64_t, Location> locations_;
  // Inserts the map surely takes without rehashing (absl rehashes when it runs out of room,
  // counting erased slots as used); only ever an underestimate. See ReserveForInserts.
  size_t location_room_ = 0;
};

}  // namespace kvc::kvindex::internal

#endif  // KVCLUSTER_KVINDEX_RADIX_TREE_H_
