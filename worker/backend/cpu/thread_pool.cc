#include "worker/backend/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

namespace kvc::backend::cpu {
namespace {

// About 50-100 microseconds of pause instructions: longer than the gap between two parallel
// regions of a step, short enough not to burn a core between steps.
constexpr int kSpinIterations = 4000;

}  // namespace

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads
                                   : std::max(1, int(std::thread::hardware_concurrency()))) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunImpl(Task task, void* ctx) {
  if (num_threads_ == 1) {
    task(ctx, 0, 1);
    return;
  }
  task_ = task;
  ctx_ = ctx;
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  {
    // Bumping under the mutex means a worker that checked the generation and is about to
    // wait cannot miss the notification.
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  task(ctx, 0, num_threads_);
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (++spins < kSpinIterations) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::WorkerLoop(int thread_index) {
  uint64_t seen = 0;
  while (true) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
      _mm_pause();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock,
                 [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
    }
    seen = generation_.load(std::memory_order_acquire);
    task_(ctx_, thread_index, num_threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

Range SplitRange(int64_t n, int thread_index, int num_threads, int64_t granule) {
  const int64_t granules = (n + granule - 1) / granule;
  const int64_t per = granules / num_threads;
  const int64_t extra = granules % num_threads;
  const int64_t first = thread_index * per + std::min<int64_t>(thread_index, extra);
  const int64_t count = per + (thread_index < extra ? 1 : 0);
  return {std::min(n, first * granule), std::min(n, (first + count) * granule)};
}

}  // namespace kvc::backend::cpu
