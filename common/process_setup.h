// Small pieces every program of the project needs: how a server sets up its process and waits
// for termination, and how benchmarks name the machine they ran on.
#ifndef KVCLUSTER_COMMON_PROCESS_SETUP_H_
#define KVCLUSTER_COMMON_PROCESS_SETUP_H_

#include <string>

namespace kvc {

// Call first in a server's main(), before any thread starts. Blocks SIGTERM and SIGINT (every
// thread started later inherits the mask, so WaitForTerminationSignal receives them), and
// turns off Abseil's lock-cycle detection, which Debian's build enables: it costs a graph
// lookup on every Mutex acquisition on the request path, and the lock order here is fixed by
// design. Also calls TuneMallocForServing.
void PrepareServerProcess();

// Keeps freed heap memory in the process instead of returning it to the kernel after every
// request (glibc's default), which costs page faults on each request's buffers; see the .cc.
void TuneMallocForServing();

// Blocks until SIGTERM or SIGINT arrives; returns the signal number.
// REQUIRES: PrepareServerProcess() was called.
int WaitForTerminationSignal();

// The CPU's model name from /proc/cpuinfo, or "unknown CPU".
std::string CpuModelName();

}  // namespace kvc

#endif  // KVCLUSTER_COMMON_PROCESS_SETUP_H_
