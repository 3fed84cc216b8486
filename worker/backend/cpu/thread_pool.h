// A small fork-join pool for the CPU backend: Run(f) calls f(thread_index, num_threads) once
// on each of num_threads threads (the caller is thread 0) and returns when all are done.
//
// A forward step runs a few hundred short parallel regions, so workers spin briefly on an
// atomic generation counter before blocking on a condition variable: waking a blocked thread
// costs tens of microseconds, which would add up to milliseconds per decoded token.
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_THREAD_POOL_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace kvc::backend::cpu {

// Thread-safety: Run() must be called by one thread at a time (REQUIRES: external
// synchronization); the pool's own state is guarded by mutex_ and atomics.
class ThreadPool {
 public:
  // num_threads <= 0 means one per online CPU.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  template <typename F>
  void Run(F&& f) {
    RunImpl(
        [](void* ctx, int thread_index, int num_threads) {
          (*static_cast<std::remove_reference_t<F>*>(ctx))(thread_index, num_threads);
        },
        &f);
  }

 private:
  using Task = void (*)(void*, int, int);
  void RunImpl(Task task, void* ctx);
  void WorkerLoop(int thread_index);

  const int num_threads_;
  std::vector<std::thread> workers_;
  // The current task; written by Run() before generation_ is bumped (release), read by
  // workers after they observe the new generation (acquire).
  Task task_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // workers still running the current task
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;  // GUARDED_BY(mutex_)
};

// [begin, end) of `n` items for `thread_index` of `num_threads`, in multiples of `granule`.
struct Range {
  int64_t begin;
  int64_t end;
};
Range SplitRange(int64_t n, int thread_index, int num_threads, int64_t granule);

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_THREAD_POOL_H_
