// The read side of RadixTree: lookups, memory accounting and the invariant check.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "kvindex/radix_tree.h"

namespace kvc::kvindex::internal {
namespace {

// How many leading elements of ours[0, limit) and theirs[0, limit) agree, for two stretches of
// seq hashes at the same depths whose first elements are known to agree. Because each seq hash
// commits to every block before it, agreement is monotone: if the hashes at some depth agree,
// so do all before it (or 64-bit hashes collided, which the whole cluster already rules out).
// So a binary search finds the first difference in O(log n) probes, and a request that follows
// a node to its end costs one probe, however long the node.
size_t AgreedPrefix(const uint64_t* ours, const uint64_t* theirs, size_t limit) {
  if (limit == 0 || ours[limit - 1] == theirs[limit - 1]) return limit;
  size_t low = 1;           // ours[low - 1] agrees
  size_t high = limit - 1;  // ours[high] differs
  // Each probe of a cold node is a cache miss; the last few cache lines are cheaper to stream
  // through in order than to probe at random.
  constexpr size_t kScanWindow = 64;
  while (high - low > kScanWindow) {
    const size_t middle = (low + high + 1) / 2;
    if (ours[middle - 1] == theirs[middle - 1]) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  while (low < high && ours[low] == theirs[low]) ++low;
  return low;
}

}  // namespace

void RadixTree::FindMatches(std::span<const uint64_t> seq_hashes, std::span<const uint8_t> hidden,
                            std::vector<WorkerMatch>* matches) const {
  matches->clear();
  if (seq_hashes.empty()) return;
  NodeId id = FindChild(kRoot, seq_hashes[0]);
  if (id == kNoNode) return;
  // Every worker that matches at all holds the first node, so *matches starts as that node's
  // (sorted) worker set and each entry gets its count when the worker drops out: the result
  // comes out sorted with no sort. `active` lists indices of entries still matching.
  for (WorkerId worker : nodes_[id].workers) matches->push_back({worker, 0});
  thread_local std::vector<uint32_t> active;  // reused, so a lookup does not allocate
  thread_local std::vector<uint32_t> still_active;
  active.resize(matches->size());
  for (uint32_t i = 0; i < active.size(); ++i) active[i] = i;
  WorkerMatch* entries = matches->data();
  size_t position = 0;  // depth of the node's first block
  while (!active.empty()) {
    const Node& node = nodes_[id];
    const size_t length = node.seq_hashes.size();
    const size_t limit = std::min(length, seq_hashes.size() - position);
    const size_t agreed = AgreedPrefix(node.seq_hashes.data(), seq_hashes.data() + position, limit);
    if (agreed < length || position + length == seq_hashes.size()) {
      for (uint32_t i : active)
        entries[i].matched_blocks = static_cast<uint32_t>(position + agreed);
      break;
    }
    position += length;
    const NodeId child = FindChild(id, seq_hashes[position]);
    if (child == kNoNode) {
      for (uint32_t i : active) entries[i].matched_blocks = static_cast<uint32_t>(position);
      break;
    }
    // Workers the child lacks stop here; the rest go on.
    const WorkerSet& holders = nodes_[child].workers;
    still_active.clear();
    auto holder = holders.begin();
    for (uint32_t i : active) {
      const WorkerId worker = entries[i].worker;
      while (holder != holders.end() && *holder < worker) ++holder;
      if (holder != holders.end() && *holder == worker) {
        still_active.push_back(i);
      } else {
        entries[i].matched_blocks = static_cast<uint32_t>(position);
      }
    }
    active.swap(still_active);
    id = child;
  }
  std::erase_if(*matches, [hidden](const WorkerMatch& match) { return hidden[match.worker] != 0; });
}

uint64_t RadixTree::MemoryBytes() const {
  uint64_t bytes = sizeof(*this) + nodes_.capacity() * sizeof(Node) +
                   free_nodes_.capacity() * sizeof(NodeId) +
                   locations_.bucket_count() * (sizeof(std::pair<uint64_t, Location>) + 1);
  for (const Node& node : nodes_) {
    bytes += node.seq_hashes.capacity() * sizeof(uint64_t);
    if (node.workers.capacity() > 4) bytes += node.workers.capacity() * sizeof(WorkerId);
    if (node.children.capacity() > 2) bytes += node.children.capacity() * sizeof(ChildRef);
    if (node.child_index) {
      bytes += sizeof(ChildIndex) +
               node.child_index->bucket_count() * (sizeof(std::pair<uint64_t, NodeId>) + 1);
    }
  }
  return bytes;
}

absl::Status RadixTree::CheckConsistency() const {
  size_t blocks_seen = 0;
  size_t nodes_seen = 1;
  std::vector<NodeId> stack = {kRoot};
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    const Node& node = nodes_[id];
    const std::string where = absl::StrCat("node ", id, ": ");
    if (!node.in_use) return absl::InternalError(where + "reachable but free");
    if (!std::is_sorted(node.workers.begin(), node.workers.end()) ||
        std::adjacent_find(node.workers.begin(), node.workers.end()) != node.workers.end()) {
      return absl::InternalError(where + "worker set not sorted and unique");
    }
    if (node.child_index && !node.children.empty()) {
      return absl::InternalError(where + "children in both list and index");
    }
    const std::vector<NodeId> children = ChildrenOf(id);
    if (id != kRoot) {
      if (node.seq_hashes.empty()) return absl::InternalError(where + "empty run");
      if (node.workers.empty() && children.empty()) {
        return absl::InternalError(where + "workerless leaf");
      }
      if (children.size() == 1 && nodes_[children[0]].workers == node.workers) {
        return absl::InternalError(where + "unmerged single child");
      }
    }
    for (size_t k = 0; k < node.seq_hashes.size(); ++k) {
      auto it = locations_.find(node.seq_hashes[k]);
      if (it == locations_.end() || it->second.node != id ||
          it->second.depth != node.start_depth + k) {
        return absl::InternalError(where + "location map disagrees");
      }
    }
    blocks_seen += node.seq_hashes.size();
    const uint32_t child_depth =
        id == kRoot ? 0 : node.start_depth + static_cast<uint32_t>(node.seq_hashes.size());
    for (NodeId child : children) {
      const Node& c = nodes_[child];
      if (c.parent != id || c.start_depth != child_depth || c.seq_hashes.empty()) {
        return absl::InternalError(where + "child has wrong parent or depth");
      }
      if (FindChild(id, c.seq_hashes[0]) != child) {
        return absl::InternalError(where + "child not found by its first hash");
      }
      stack.push_back(child);
      ++nodes_seen;
    }
  }
  if (blocks_seen != locations_.size()) return absl::InternalError("stray location entries");
  if (nodes_seen != num_nodes()) return absl::InternalError("unreachable nodes");
  return absl::OkStatus();
}

}  // namespace kvc::kvindex::internal
