// A small fork-join pool for the CPU backend. ParallelFor(n, chunk, fn) calls
// fn(thread_index, begin, end) over [0, n) in chunks that threads take as they come; the caller
// is thread 0 and always takes part.
//
// Workers join a loop only if they arrive while it still has chunks: the caller never waits for
// a worker that the OS has not scheduled yet (other processes share the cores; a pool that
// waits for every worker turns each descheduled thread into a stall of the whole step). So fn
// must not assume that any thread but the caller runs it.
//
// A step runs a few hundred short loops, so workers spin briefly on an atomic generation
// counter before blocking on a condition variable: waking a blocked thread costs tens of
// microseconds.
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_THREAD_POOL_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace kvc::backend::cpu {

// Thread-safety: ParallelFor() must be called by one thread at a time (REQUIRES: external
// synchronization); the pool's own state is atomics plus mutex_.
class ThreadPool {
 public:
  // num_threads <= 0 means one per online CPU.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Uses at most `max_threads` threads (the caller and workers 1 .. max_threads - 1).
  template <typename F>
  void ParallelFor(int64_t n, int64_t chunk, F&& fn, int max_threads = 1 << 30) {
    Loop loop;
    loop.max_threads = max_threads;
    loop.fn = [](void* ctx, int thread_index, int64_t begin, int64_t end) {
      (*static_cast<std::remove_reference_t<F>*>(ctx))(thread_index, begin, end);
    };
    loop.ctx = &fn;
    loop.n = n;
    loop.chunk = chunk < 1 ? 1 : chunk;
    Run(&loop);
  }

 private:
  struct Loop {
    void (*fn)(void*, int, int64_t, int64_t);
    void* ctx;
    int64_t n;
    int64_t chunk;
    int max_threads;
    std::atomic<int64_t> next{0};
  };
  void Run(Loop* loop);
  static void Work(Loop* loop, int thread_index);
  void WorkerLoop(int thread_index);

  const int num_threads_;
  std::vector<std::thread> workers_;
  // The open loop. Set before open_ becomes true; stays valid while active_ > 0 (the caller
  // waits for active_ == 0 after closing).
  std::atomic<Loop*> loop_{nullptr};
  std::atomic<bool> open_{false};
  std::atomic<int> active_{0};  // workers inside the open loop
  std::atomic<uint64_t> generation_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;  // GUARDED_BY(mutex_)
};

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_THREAD_POOL_H_
