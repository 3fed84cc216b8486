// A gRPC message allocator that places a unary call's request and response in one protobuf
// arena, reused from call to call. A Route answer holds a message per candidate worker and the
// request a 4096-token prompt: with the heap, parsing and building them cost dozens of
// allocations per call; with a recycled arena, usually none.
//
// Thread-safety: AllocateMessages and the holders' Release may run on any thread at once.
#ifndef KVCLUSTER_ROUTER_ARENA_ALLOCATOR_H_
#define KVCLUSTER_ROUTER_ARENA_ALLOCATOR_H_

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace kvc::router {

template <typename Request, typename Response>
class ArenaMessageAllocator final : public grpc::MessageAllocator<Request, Response> {
 public:
  ArenaMessageAllocator() = default;
  ~ArenaMessageAllocator() override {
    absl::MutexLock lock(&mutex_);
    for (Holder* holder : free_) delete holder;
  }
  ArenaMessageAllocator(const ArenaMessageAllocator&) = delete;
  ArenaMessageAllocator& operator=(const ArenaMessageAllocator&) = delete;

  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    Holder* holder = nullptr;
    {
      absl::MutexLock lock(&mutex_);
      if (!free_.empty()) {
        holder = free_.back();
        free_.pop_back();
      }
    }
    if (holder == nullptr) holder = new Holder(this);
    holder->CreateMessages();
    return holder;
  }

 private:
  // The arena's first block lives in the holder and survives Reset, so a call whose messages
  // fit in it allocates nothing. 64 KiB holds a 4096-token prompt and a 64-worker answer.
  static constexpr size_t kInitialBlockBytes = 64 << 10;
  // Holders kept for reuse; more than this many calls in flight allocate and free their own.
  static constexpr size_t kMaxFree = 256;

  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    explicit Holder(ArenaMessageAllocator* owner)
        : owner_(owner), block_(new char[kInitialBlockBytes]), arena_(Options(block_.get())) {}

    void CreateMessages() {
      this->set_request(google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }

    void Release() override {
      arena_.Reset();  // runs the messages' destructors; keeps the initial block
      owner_->Recycle(this);
    }

   private:
    static google::protobuf::ArenaOptions Options(char* block) {
      google::protobuf::ArenaOptions options;
      options.initial_block = block;
      options.initial_block_size = kInitialBlockBytes;
      options.start_block_size = 16 << 10;
      options.max_block_size = 256 << 10;
      return options;
    }

    ArenaMessageAllocator* const owner_;
    std::unique_ptr<char[]> block_;
    google::protobuf::Arena arena_;
  };

  void Recycle(Holder* holder) {
    {
      absl::MutexLock lock(&mutex_);
      if (free_.size() < kMaxFree) {
        free_.push_back(holder);
        return;
      }
    }
    delete holder;
  }

  absl::Mutex mutex_;
  std::vector<Holder*> free_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_ARENA_ALLOCATOR_H_
