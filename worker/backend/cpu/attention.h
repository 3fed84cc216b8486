// Paged attention and KV writes for the CPU backend. Kernels take raw pointers and a plain
// block table; they never allocate.
//
// KV layout of one layer: K and V each [num_blocks][num_kv_heads][block_size][head_dim], so the
// keys of one KV head within a block are contiguous (one sequential read per block and head).
// Position p of a sequence lives in block block_table[p / block_size], slot p % block_size.
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_ATTENTION_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_ATTENTION_H_

#include <cstdint>

#include "worker/model/model.h"

namespace kvc::backend::cpu {

struct PagedKvLayer {
  void* k = nullptr;
  void* v = nullptr;
  model::DType dtype = model::DType::kBF16;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// Stores one token's k and v ([num_kv_heads * head_dim] each) at `position`.
void WriteKv(const PagedKvLayer& kv, const int32_t* block_table, int position, const float* k,
             const float* v);

// Causal attention of one query token at `position` for the `group_size` query heads that share
// KV head `kv_head` (GQA; group_size 1 is MHA), over positions [first_position, position]
// (first_position > 0 under a sliding window).
// q and out: [group_size][head_dim]. scratch: group_size * (position + 1 - first_position) floats.
// The arithmetic depends only on (q, position, cache contents), never on the rest of the batch.
void AttendGroup(const PagedKvLayer& kv, const int32_t* block_table, int first_position,
                 int position, int kv_head, const float* q, int group_size, float scale,
                 float* scratch, float* out);

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_ATTENTION_H_
