#include "kvindex/radix_tree.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace kvc::kvindex::internal {
namespace {

// A node switches from a linear child list to a hash index above this many children, and
// back at half of it (hysteresis, so a node at the boundary does not flip back and forth).
constexpr size_t kChildIndexThreshold = 8;

// Length of the common prefix of a[0, n) and b[0, n). Requests run to thousands of blocks, so
// whole chunks are compared with memcmp (vectorized by libc, whatever the build's ISA) and only
// the chunk with the first difference element by element.
size_t CommonPrefix(const uint64_t* a, const uint64_t* b, size_t n) {
  constexpr size_t kChunk = 32;
  size_t i = 0;
  while (i + kChunk <= n && std::memcmp(a + i, b + i, kChunk * sizeof(uint64_t)) == 0) {
    i += kChunk;
  }
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

// Locations of hashes this far ahead are prefetched in loops over a chain: the location map
// is far larger than the cache, and each block would otherwise wait for its own miss.
constexpr size_t kPrefetchDistance = 8;

}  // namespace

RadixTree::RadixTree() {
  nodes_.emplace_back();
  nodes_[kRoot].in_use = true;
}

NodeId RadixTree::AllocNode() {
  if (!free_nodes_.empty()) {
    NodeId id = free_nodes_.back();
    free_nodes_.pop_back();
    nodes_[id].in_use = true;
    return id;
  }
  KVC_CHECK(nodes_.size() < kNoNode, "radix tree node ids exhausted");
  nodes_.emplace_back();
  nodes_.back().in_use = true;
  return static_cast<NodeId>(nodes_.size() - 1);
}

void RadixTree::FreeNode(NodeId id) {
  // Field by field rather than `= Node{}`, which trips GCC's uninitialized warning inside
  // InlinedVector's move. Heap memory is released now, not when the slot is reused.
  Node& node = nodes_[id];
  std::vector<uint64_t>().swap(node.seq_hashes);
  node.workers.clear();
  node.workers.shrink_to_fit();
  node.children.clear();
  node.children.shrink_to_fit();
  node.child_index.reset();
  node.parent = 0;
  node.start_depth = 0;
  node.in_use = false;
  free_nodes_.push_back(id);
}

size_t RadixTree::ChildCount(NodeId id) const {
  const Node& node = nodes_[id];
  return node.child_index ? node.child_index->size() : node.children.size();
}

NodeId RadixTree::FindChild(NodeId id, uint64_t first_seq_hash) const {
  const Node& node = nodes_[id];
  if (node.child_index) {
    auto it = node.child_index->find(first_seq_hash);
    return it == node.child_index->end() ? kNoNode : it->second;
  }
  for (const ChildRef& child : node.children) {
    if (child.first_seq_hash == first_seq_hash) return child.node;
  }
  return kNoNode;
}

NodeId RadixTree::OnlyChild(NodeId id) const {
  const Node& node = nodes_[id];
  if (node.child_index) return node.child_index->begin()->second;
  return node.children[0].node;
}

std::vector<NodeId> RadixTree::ChildrenOf(NodeId id) const {
  const Node& node = nodes_[id];
  std::vector<NodeId> children;
  children.reserve(ChildCount(id));
  if (node.child_index) {
    for (const auto& [first, child] : *node.child_index) children.push_back(child);
  } else {
    for (const ChildRef& child : node.children) children.push_back(child.node);
  }
  return children;
}

void RadixTree::AddChild(NodeId parent, NodeId child) {
  nodes_[child].parent = parent;
  Node& node = nodes_[parent];
  if (node.child_index) {
    node.child_index->emplace(nodes_[child].seq_hashes[0], child);
    return;
  }
  node.children.push_back({nodes_[child].seq_hashes[0], child});
  if (node.children.size() > kChildIndexThreshold) {
    node.child_index = std::make_unique<ChildIndex>();
    for (const ChildRef& c : node.children) node.child_index->emplace(c.first_seq_hash, c.node);
    node.children.clear();
    node.children.shrink_to_fit();
  }
}

void RadixTree::RemoveChild(NodeId parent, NodeId child) {
  Node& node = nodes_[parent];
  if (node.child_index) {
    node.child_index->erase(nodes_[child].seq_hashes[0]);
    if (node.child_index->size() <= kChildIndexThreshold / 2) {
      for (const auto& [first, c] : *node.child_index) node.children.push_back({first, c});
      node.child_index.reset();
    }
    return;
  }
  auto it = std::find_if(node.children.begin(), node.children.end(),
                         [child](const ChildRef& c) { return c.node == child; });
  KVC_CHECK(it != node.children.end(), "child missing from its parent");
  *it = node.children.back();
  node.children.pop_back();
}

void RadixTree::ReplaceChild(NodeId parent, NodeId from, NodeId to) {
  Node& node = nodes_[parent];
  nodes_[to].parent = parent;
  if (node.child_index) {
    (*node.child_index)[nodes_[to].seq_hashes[0]] = to;
    return;
  }
  auto it = std::find_if(node.children.begin(), node.children.end(),
                         [from](const ChildRef& c) { return c.node == from; });
  KVC_CHECK(it != node.children.end(), "child missing from its parent");
  KVC_CHECK(it->first_seq_hash == nodes_[to].seq_hashes[0], "replacement starts elsewhere");
  it->node = to;
}

// Points the locations of seq_hashes[begin, end) of `id` at `id`.
void RadixTree::Relocate(NodeId id, size_t begin, size_t end) {
  const Node& node = nodes_[id];
  for (size_t i = begin; i < end; ++i) {
    if (i + kPrefetchDistance < end) locations_.prefetch(node.seq_hashes[i + kPrefetchDistance]);
    auto it = locations_.find(node.seq_hashes[i]);
    KVC_CHECK(it != locations_.end(), "block missing from the location map");
    it->second.node = id;
  }
}

bool RadixTree::Holds(WorkerId worker, uint64_t seq_hash) const {
  auto it = locations_.find(seq_hash);
  return it != locations_.end() && Contains(nodes_[it->second.node].workers, worker);
}

void RadixTree::ReserveForInserts(size_t inserts) {
  if (inserts <= location_room_) return;
  // Rebuild the map here rather than let an insert rehash it inside an exclusive section: a
  // fresh copy has no erased slots, and past 25/32 full it gets twice the room (geometric
  // growth keeps the rebuilds amortized O(1) per insert).
  const size_t size = locations_.size();
  const size_t capacity = locations_.bucket_count();
  const size_t wanted = size + inserts > capacity / 32 * 25
                            ? 2 * (size + inserts)
                            : std::max(size + inserts, capacity - capacity / 8);
  absl::flat_hash_map<uint64_t, Location> rebuilt;
  rebuilt.reserve(wanted);
  rebuilt.insert(locations_.begin(), locations_.end());
  locations_.swap(rebuilt);
  const size_t rebuilt_capacity = locations_.bucket_count();
  location_room_ = rebuilt_capacity - rebuilt_capacity / 8 - size;
}

std::pair<NodeId, NodeId> RadixTree::Split(NodeId id, uint32_t k) {
  const size_t length = nodes_[id].seq_hashes.size();
  KVC_CHECK(k > 0 && k < length, "split point outside the node");
  // Whichever half becomes the new node has its blocks relocated (and, for a new bottom, its
  // children re-parented): pick the cheaper.
  const bool new_top = k <= length - k + ChildCount(id);
  const NodeId fresh = AllocNode();  // may move nodes_: take references after it
  Node& old = nodes_[id];
  Node& made = nodes_[fresh];
  made.workers = old.workers;
  if (new_top) {
    made.seq_hashes.assign(old.seq_hashes.begin(), old.seq_hashes.begin() + k);
    old.seq_hashes.erase(old.seq_hashes.begin(), old.seq_hashes.begin() + k);
    made.start_depth = old.start_depth;
    old.start_depth += k;
    ReplaceChild(old.parent, id, fresh);
    AddChild(fresh, id);
    Relocate(fresh, 0, k);
    return {fresh, id};
  }
  made.seq_hashes.assign(old.seq_hashes.begin() + k, old.seq_hashes.end());
  old.seq_hashes.resize(k);
  if (old.seq_hashes.capacity() > 2 * k) old.seq_hashes.shrink_to_fit();
  made.start_depth = old.start_depth + k;
  made.children = std::move(old.children);
  made.child_index = std::move(old.child_index);
  old.children.clear();
  for (NodeId child : ChildrenOf(fresh)) nodes_[child].parent = fresh;
  AddChild(id, fresh);
  Relocate(fresh, 0, nodes_[fresh].seq_hashes.size());
  return {id, fresh};
}

NodeId RadixTree::Isolate(NodeId id, uint32_t begin, uint32_t end) {
  if (end < nodes_[id].seq_hashes.size()) id = Split(id, end).first;
  if (begin > 0) id = Split(id, begin).second;
  return id;
}

NodeId RadixTree::MergeWithChild(NodeId id) {
  const NodeId child = OnlyChild(id);
  Node& top = nodes_[id];
  Node& bottom = nodes_[child];
  const size_t top_length = top.seq_hashes.size();
  if (top_length <= bottom.seq_hashes.size() + ChildCount(child)) {
    // The child survives: it takes the parent's blocks in front and the parent's place.
    bottom.seq_hashes.insert(bottom.seq_hashes.begin(), top.seq_hashes.begin(),
                             top.seq_hashes.end());
    bottom.start_depth = top.start_depth;
    const NodeId grandparent = top.parent;
    ReplaceChild(grandparent, id, child);
    Relocate(child, 0, top_length);
    FreeNode(id);
    return child;
  }
  top.seq_hashes.insert(top.seq_hashes.end(), bottom.seq_hashes.begin(), bottom.seq_hashes.end());
  top.children = std::move(bottom.children);
  top.child_index = std::move(bottom.child_index);
  bottom.children.clear();
  for (NodeId grandchild : ChildrenOf(id)) nodes_[grandchild].parent = id;
  Relocate(id, top_length, nodes_[id].seq_hashes.size());
  FreeNode(child);
  return id;
}

void RadixTree::Normalize(NodeId id) {
  while (id != kRoot && nodes_[id].workers.empty() && ChildCount(id) == 0) {
    const NodeId parent = nodes_[id].parent;
    const std::vector<uint64_t>& gone = nodes_[id].seq_hashes;
    for (size_t i = 0; i < gone.size(); ++i) {
      if (i + kPrefetchDistance < gone.size()) locations_.prefetch(gone[i + kPrefetchDistance]);
      locations_.erase(gone[i]);
    }
    RemoveChild(parent, id);
    FreeNode(id);
    id = parent;
  }
  if (id == kRoot) return;
  if (ChildCount(id) == 1 && nodes_[OnlyChild(id)].workers == nodes_[id].workers) {
    id = MergeWithChild(id);
  }
  const NodeId parent = nodes_[id].parent;
  if (parent != kRoot && ChildCount(parent) == 1 && nodes_[parent].workers == nodes_[id].workers) {
    MergeWithChild(parent);
  }
}

void RadixTree::ChangeWorkers(WorkerId worker, NodeId id, uint32_t begin, uint32_t end, bool add) {
  id = Isolate(id, begin, end);
  WorkerSet& workers = nodes_[id].workers;
  auto it = std::lower_bound(workers.begin(), workers.end(), worker);
  if (add) {
    KVC_CHECK(it == workers.end() || *it != worker, "worker already holds the blocks");
    workers.insert(it, worker);
  } else {
    KVC_CHECK(it != workers.end() && *it == worker, "worker does not hold the blocks");
    workers.erase(it);
  }
  Normalize(id);
}

size_t RadixTree::AppendChain(WorkerId worker, NodeId node, int64_t offset,
                              std::span<const uint64_t> seq_hashes, BlockSetDigest* digest,
                              bool* inconsistent) {
  NodeId target = node;
  const bool extend = node != kRoot && ChildCount(node) == 0 &&
                      offset + 1 == static_cast<int64_t>(nodes_[node].seq_hashes.size()) &&
                      nodes_[node].workers.size() == 1 && nodes_[node].workers[0] == worker;
  if (!extend) {
    if (node != kRoot && offset + 1 < static_cast<int64_t>(nodes_[node].seq_hashes.size())) {
      node = Split(node, static_cast<uint32_t>(offset + 1)).first;
    }
    target = AllocNode();
    Node& made = nodes_[target];
    made.workers.push_back(worker);
    made.start_depth = node == kRoot ? 0
                                     : nodes_[node].start_depth +
                                           static_cast<uint32_t>(nodes_[node].seq_hashes.size());
  }
  Node& made = nodes_[target];
  uint32_t depth = made.start_depth + static_cast<uint32_t>(made.seq_hashes.size());
  size_t appended = 0;
  made.seq_hashes.reserve(made.seq_hashes.size() + seq_hashes.size());
  for (size_t i = 0; i < seq_hashes.size(); ++i) {
    const uint64_t seq_hash = seq_hashes[i];
    if (i + kPrefetchDistance < seq_hashes.size()) {
      locations_.prefetch(seq_hashes[i + kPrefetchDistance]);
    }
    if (!locations_.try_emplace(seq_hash, Location{target, depth}).second) {
      *inconsistent = true;
      break;
    }
    if (location_room_ > 0) --location_room_;
    made.seq_hashes.push_back(seq_hash);
    digest->Add(seq_hash);
    ++depth;
    ++appended;
  }
  KVC_CHECK(appended > 0, "caller checks that the chain's first block is new");
  if (!extend) AddChild(node, target);
  return appended;
}

RadixTree::StoreOutcome RadixTree::Store(WorkerId worker, std::optional<uint64_t> parent,
                                         std::span<const uint64_t> seq_hashes,
                                         BlockSetDigest* digest) {
  StoreOutcome outcome;
  // The block before seq_hashes[i]: `offset` within `node` (the root with offset -1).
  NodeId node = kRoot;
  int64_t offset = -1;
  if (parent.has_value()) {
    auto it = locations_.find(*parent);
    KVC_CHECK(it != locations_.end(), "caller checks that the parent is held");
    node = it->second.node;
    offset = it->second.depth - nodes_[node].start_depth;
  }
  size_t i = 0;
  while (i < seq_hashes.size()) {
    NodeId next = kNoNode;
    uint32_t next_offset = 0;
    if (offset + 1 < static_cast<int64_t>(nodes_[node].seq_hashes.size())) {
      if (nodes_[node].seq_hashes[offset + 1] == seq_hashes[i]) {
        next = node;
        next_offset = static_cast<uint32_t>(offset + 1);
      }
    } else {
      next = FindChild(node, seq_hashes[i]);
    }
    if (next == kNoNode) {
      if (locations_.contains(seq_hashes[i])) {
        outcome.inconsistent = true;
        break;
      }
      const size_t appended =
          AppendChain(worker, node, offset, seq_hashes.subspan(i), digest, &outcome.inconsistent);
      outcome.added += appended;
      i += appended;
      break;
    }
    // Follow the event along this node as far as it agrees. Every hash is compared (not the
    // binary search lookups use): events come from outside, and a chain that skips a block
    // must not get the worker credited with blocks it never named.
    const Node& along = nodes_[next];
    const size_t run =
        CommonPrefix(along.seq_hashes.data() + next_offset, seq_hashes.data() + i,
                     std::min(seq_hashes.size() - i, along.seq_hashes.size() - next_offset));
    if (Contains(along.workers, worker)) {
      outcome.duplicates += run;
      node = next;
      offset = next_offset + run - 1;
    } else {
      for (size_t k = 0; k < run; ++k) digest->Add(seq_hashes[i + k]);
      ChangeWorkers(worker, next, next_offset, static_cast<uint32_t>(next_offset + run), true);
      outcome.added += run;
      const Location last = locations_.at(seq_hashes[i + run - 1]);
      node = last.node;
      offset = last.depth - nodes_[node].start_depth;
    }
    i += run;
  }
  outcome.applied = i;
  return outcome;
}

uint64_t RadixTree::Remove(WorkerId worker, std::span<const uint64_t> seq_hashes,
                           BlockSetDigest* digest) {
  uint64_t unknown = 0;
  size_t i = 0;
  while (i < seq_hashes.size()) {
    auto it = locations_.find(seq_hashes[i]);
    if (it == locations_.end() || !Contains(nodes_[it->second.node].workers, worker)) {
      ++unknown;
      ++i;
      continue;
    }
    const NodeId id = it->second.node;
    const std::vector<uint64_t>& hashes = nodes_[id].seq_hashes;
    const uint32_t offset = it->second.depth - nodes_[id].start_depth;
    // Evictions usually list a chain tail-first or head-first: take the whole stretch that
    // lies in this node as one range, so it costs one split/merge, not one per block.
    uint32_t begin = offset;
    uint32_t end = offset + 1;
    size_t j = i + 1;
    while (j < seq_hashes.size() && end < hashes.size() && hashes[end] == seq_hashes[j]) {
      ++end;
      ++j;
    }
    if (j == i + 1) {
      while (j < seq_hashes.size() && begin > 0 && hashes[begin - 1] == seq_hashes[j]) {
        --begin;
        ++j;
      }
    }
    for (uint32_t k = begin; k < end; ++k) digest->Remove(hashes[k]);
    ChangeWorkers(worker, id, begin, end, false);
    i = j;
  }
  return unknown;
}

void RadixTree::CollectRuns(WorkerId worker, std::vector<Run>* runs) const {
  std::vector<NodeId> stack = ChildrenOf(kRoot);
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    const Node& node = nodes_[id];
    if (Contains(node.workers, worker)) {
      runs->push_back({node.seq_hashes[0], static_cast<uint32_t>(node.seq_hashes.size())});
    }
    if (node.child_index) {
      for (const auto& [first, child] : *node.child_index) stack.push_back(child);
    } else {
      for (const ChildRef& child : node.children) stack.push_back(child.node);
    }
  }
}

void RadixTree::RemoveRun(WorkerId worker, const Run& run, BlockSetDigest* digest) {
  auto it = locations_.find(run.first_seq_hash);
  KVC_CHECK(it != locations_.end(), "collected run vanished");
  const NodeId id = it->second.node;
  const uint32_t begin = it->second.depth - nodes_[id].start_depth;
  KVC_CHECK(begin + run.length <= nodes_[id].seq_hashes.size(), "collected run was cut");
  for (uint32_t k = begin; k < begin + run.length; ++k) digest->Remove(nodes_[id].seq_hashes[k]);
  ChangeWorkers(worker, id, begin, begin + run.length, false);
}

}  // namespace kvc::kvindex::internal
