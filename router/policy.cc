#include "router/policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

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
  // Position in a rotation that starts at a different worker every call: the last tie-break,
  // so that equal workers take turns.
  auto rotated = [&](size_t i) { return (i + n - turn % n) % n; };
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  switch (options_.kind) {
    case PolicyKind::kKv:
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const Scored& x = decision.ranked[a];
        const Scored& y = decision.ranked[b];
        if (x.cost != y.cost) return x.cost < y.cost;
        if (candidates[a].active_requests != candidates[b].active_requests) {
          return candidates[a].active_requests < candidates[b].active_requests;
        }
        if (candidates[a].cached_blocks != candidates[b].cached_blocks) {
          return candidates[a].cached_blocks < candidates[b].cached_blocks;
        }
        return rotated(a) < rotated(b);
      });
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
      std::sort(order.begin(), order.end(),
                [&](size_t a, size_t b) { return rotated(a) < rotated(b); });
      break;
    case PolicyKind::kRandom: {
      const size_t chosen = std::min(n - 1, static_cast<size_t>(random * n));
      std::rotate(order.begin(), order.begin() + chosen, order.end());
      break;
    }
    case PolicyKind::kLeastLoaded:
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (candidates[a].active_requests != candidates[b].active_requests) {
          return candidates[a].active_requests < candidates[b].active_requests;
        }
        if (candidates[a].active_tokens != candidates[b].active_tokens) {
          return candidates[a].active_tokens < candidates[b].active_tokens;
        }
        return rotated(a) < rotated(b);
      });
      break;
  }
  std::vector<Scored> ranked;
  ranked.reserve(n);
  for (size_t i : order) ranked.push_back(decision.ranked[i]);
  decision.ranked = std::move(ranked);
  return decision;
}

}  // namespace kvc::router
