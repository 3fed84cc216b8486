#include "router/policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace kvc::router {

absl::StatusOr<PolicyKind> ParsePolicy(std::string_view name) {
  if (name == "kv") return PolicyKind::kKv;
  if (name == "round-robin") return PolicyKind::kRoundRobin;
  if (name == "random") return PolicyKind::kRandom;
  if (name == "least-loaded") return PolicyKind::kLeastLoaded;
  return absl::InvalidArgumentError(absl::StrCat("unknown policy '", std::string(name),
                                                 "' (kv, round-robin, random, least-loaded)"));
}

const char* PolicyName(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kKv:
      return "kv";
    case PolicyKind::kRoundRobin:
      return "round-robin";
    case PolicyKind::kRandom:
      return "random";
    case PolicyKind::kLeastLoaded:
      return "least-loaded";
  }
  return "unknown";
}

Decision Policy::Choose(std::span<const Candidate> candidates, uint32_t prompt_blocks,
                        uint32_t block_size, double random) const {
  KVC_CHECK(!candidates.empty(), "choosing among no workers");
  const size_t n = candidates.size();
  const uint64_t turn = rotation_.fetch_add(1, std::memory_order_relaxed);
  Decision decision;
  decision.ranked.reserve(n);
  for (const Candidate& c : candidates) {
    Scored s;
    s.worker = c.worker;
    s.matched_blocks = std::min(c.matched_blocks, prompt_blocks);
    s.prefill_blocks = prompt_blocks - s.matched_blocks;
    s.decode_load_blocks = static_cast<double>(c.active_tokens) / block_size;
    s.cost = options_.overlap_weight * s.prefill_blocks + s.decode_load_blocks;
    decision.ranked.push_back(s);
  }
  // Sort keys are computed once per candidate (the rotation takes a division) and compared as
  // tuples. The rotation position, a different starting worker every call, is the last
  // tie-break, so that equal workers take turns.
  struct Key {
    double cost;
    int64_t load_1;
    uint64_t load_2;
    size_t rotated;
    size_t index;
    bool operator<(const Key& o) const {
      return std::tie(cost, load_1, load_2, rotated) <
             std::tie(o.cost, o.load_1, o.load_2, o.rotated);
    }
  };
  std::vector<Key> keys(n);
  const size_t start = turn % n;
  for (size_t i = 0; i < n; ++i) {
    keys[i] = {0, 0, 0, i >= start ? i - start : i + n - start, i};
  }
  std::vector<size_t> order(n);
  auto sort_by_keys = [&] {
    std::sort(keys.begin(), keys.end());
    for (size_t i = 0; i < n; ++i) order[i] = keys[i].index;
  };
  switch (options_.kind) {
    case PolicyKind::kKv:
      for (Key& k : keys) {
        k.cost = decision.ranked[k.index].cost;
        k.load_1 = candidates[k.index].active_requests;
        k.load_2 = candidates[k.index].cached_blocks;
      }
      sort_by_keys();
      if (options_.temperature > 0 && n > 1) {
        // Softmax over -cost, scaled by the mean cost so the temperature is unit-free.
        double mean = 0;
        for (const Scored& s : decision.ranked) mean += s.cost;
        mean = std::max(mean / n, 1e-9);
        std::vector<double> weights(n);
        double total = 0;
        const double best = decision.ranked[order[0]].cost;
        for (size_t i = 0; i < n; ++i) {
          weights[i] = std::exp(-(decision.ranked[i].cost - best) / (options_.temperature * mean));
          total += weights[i];
        }
        double target = random * total;
        size_t chosen = order[0];
        for (size_t i = 0; i < n; ++i) {
          target -= weights[i];
          if (target < 0) {
            chosen = i;
            break;
          }
        }
        std::stable_partition(order.begin(), order.end(), [&](size_t i) { return i == chosen; });
      }
      break;
    case PolicyKind::kRoundRobin:
      for (size_t i = 0; i < n; ++i) order[i] = (start + i) % n;
      break;
    case PolicyKind::kRandom: {
      std::iota(order.begin(), order.end(), 0);
      const size_t chosen = std::min(n - 1, static_cast<size_t>(random * n));
      std::rotate(order.begin(), order.begin() + chosen, order.end());
      break;
    }
    case PolicyKind::kLeastLoaded:
      for (Key& k : keys) {
        k.load_1 = candidates[k.index].active_requests;
        k.load_2 = static_cast<uint64_t>(std::max<int64_t>(0, candidates[k.index].active_tokens));
      }
      sort_by_keys();
      break;
  }
  std::vector<Scored> ranked;
  ranked.reserve(n);
  for (size_t i : order) ranked.push_back(decision.ranked[i]);
  decision.ranked = std::move(ranked);
  return decision;
}

}  // namespace kvc::router
