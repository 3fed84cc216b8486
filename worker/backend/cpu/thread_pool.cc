#include "worker/backend/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

namespace kvc::backend::cpu {
namespace {

// About 50-100 microseconds of pause instructions: longer than the gap between two loops of a
// step, short enough not to burn a core between steps.
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

void ThreadPool::Work(Loop* loop, int thread_index) {
  for (int64_t c;
       (c = loop->next.fetch_add(1, std::memory_order_relaxed) * loop->chunk) < loop->n;) {
    loop->fn(loop->ctx, thread_index, c, std::min(loop->n, c + loop->chunk));
  }
}

void ThreadPool::Run(Loop* loop) {
  if (num_threads_ == 1 || loop->max_threads <= 1 || loop->n <= loop->chunk) {
    Work(loop, 0);
    return;
  }
  loop_.store(loop);
  open_.store(true);
  {
    // Bumping under the mutex means a worker about to block cannot miss the notification.
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  Work(loop, 0);
  // Close, then wait only for workers that joined before the close. Sequentially consistent
  // operations order a worker's active_ increment and its read of open_ against these two.
  open_.store(false);
  int spins = 0;
  while (active_.load() != 0) {
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
      wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
    }
    seen = generation_.load();
    active_.fetch_add(1);
    if (open_.load()) {
      Loop* loop = loop_.load();
      if (thread_index < loop->max_threads) Work(loop, thread_index);
    }
    active_.fetch_sub(1);
  }
}

}  // namespace kvc::backend::cpu
