// Workloads for kvbench: the requests of a run, each with its prompt as token ids, the tokens
// to generate and, for open-loop runs, when to send it. Two sources: a Mooncake-format trace
// (kvindex/bench/trace.h maps hash ids to tokens) and synthetic chats in which groups of users
// share a system prompt. Also the hit rate an unlimited cache shared by every worker would
// reach on a workload, in the cluster's own units (see IdealHitRate).
//
// Thread safety: free functions with no shared state; a Workload is a plain value.
#ifndef KVCLUSTER_TOOLS_KVBENCH_WORKLOAD_H_
#define KVCLUSTER_TOOLS_KVBENCH_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc::kvbench {

struct BenchRequest {
  // When an open-loop run sends it, in seconds after the run starts.
  double arrival_s = 0;
  std::vector<uint32_t> prompt;
  // Tokens to generate; sent with ignore_eos so that exactly this many come back.
  uint32_t max_tokens = 1;
  // Where it came from, for the per-request results: "trace:LINE" or "g/u/t" (group, user,
  // turn).
  std::string label;
};

struct Workload {
  // One line saying what the requests are, for reports.
  std::string description;
  // In sending order; arrival_s never decreases.
  std::vector<BenchRequest> requests;
};

struct TraceOptions {
  std::string path;
  // Trace records are kept when their timestamp lies in [start_s, start_s + window_s)
  // (window_s 0: to the end), then the first max_requests of those (0: all).
  double start_s = 0;
  double window_s = 0;
  size_t max_requests = 0;
  // Replay speed: a request is sent (timestamp - first kept timestamp) / speed after the start.
  double speed = 1;
  // Token ids are drawn below this (the model's vocabulary size).
  uint32_t vocab_size = 0;
  // 0: each record's output_length (at least 1); otherwise the smaller of the two.
  uint32_t max_output_tokens = 0;
};

// INVALID_ARGUMENT for bad options or records, NOT_FOUND when the file is absent.
absl::StatusOr<Workload> MooncakeWorkload(const TraceOptions& options);

struct SharedPrefixOptions {
  // groups x users_per_group users; the users of a group share one system prompt.
  int groups = 4;
  int users_per_group = 8;
  // Each user asks `turns` questions; turn t's prompt is the group's system prompt followed
  // by the user's questions 0..t (a chat history without the answers).
  int turns = 1;
  uint32_t system_tokens = 512;
  uint32_t question_tokens = 64;
  uint32_t output_tokens = 16;
  uint32_t vocab_size = 0;
  uint64_t seed = 1;
  // Open-loop arrivals: a Poisson process at this many requests per second. 0: every request
  // is due at once (for closed-loop runs, which ignore arrival times).
  double rate = 0;
};

// Turn t of every user comes before turn t + 1 of any; within a turn, users are in a seeded
// random order. INVALID_ARGUMENT for bad options.
absl::StatusOr<Workload> SharedPrefixWorkload(const SharedPrefixOptions& options);

struct IdealHits {
  uint64_t prompt_tokens = 0;
  uint64_t cached_tokens = 0;
  double hit_rate() const { return prompt_tokens ? double(cached_tokens) / prompt_tokens : 0; }
};

// The hit rate of one cache without a size limit that every request sees, measured as the
// cluster measures it: a request finds the leading full blocks of `block_size` tokens that an
// earlier request's prompt filled, except that the block holding its last prompt token is
// always computed (as the worker's block manager does); hit rate = cached / prompt tokens.
IdealHits IdealHitRate(const Workload& workload, uint32_t block_size);

}  // namespace kvc::kvbench

#endif  // KVCLUSTER_TOOLS_KVBENCH_WORKLOAD_H_
