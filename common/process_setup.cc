#include "common/process_setup.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <fstream>

#include "absl/synchronization/mutex.h"

namespace kvc {
namespace {

sigset_t TerminationSignalSet() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

}  // namespace

void TuneMallocForServing() {
  // glibc returns freed heap memory to the kernel as soon as 128 KiB sit free at the top of
  // the heap, and serves blocks from 128 KiB up (a threshold that grows dynamically) with
  // mmap. A server that allocates and frees message buffers of tens of KiB per request then
  // pays page faults and zeroing on every request: with a 4096-token Route call that was a
  // quarter of the router's CPU time. Keep up to 128 MiB of freed heap, and map only
  // blocks of 16 MiB or more (a 4-million-token prompt) directly.
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  mallopt(M_MMAP_THRESHOLD, 16 << 20);
}

void PrepareServerProcess() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  TuneMallocForServing();
  const sigset_t signals = TerminationSignalSet();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

int WaitForTerminationSignal() {
  const sigset_t signals = TerminationSignalSet();
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  return signal_number;
}

std::string CpuModelName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

}  // namespace kvc
