// A local cluster for `kvbench compare`, started and stopped with scripts/cluster (which
// knows how to start every backend): one router and N workers on loopback, their pids and
// logs in a run directory. The cluster is stopped, by those pids, when the object dies.
//
// Thread safety: a LocalCluster is used by one thread. StopClusterAt may be called from a
// signal-handling thread while another thread uses the cluster.
#ifndef KVCLUSTER_TOOLS_KVBENCH_CLUSTER_H_
#define KVCLUSTER_TOOLS_KVBENCH_CLUSTER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc::kvbench {

struct ClusterOptions {
  // scripts/cluster of the source tree kvbench was built from, unless set.
  std::string script;
  // Where scripts/cluster keeps pids and logs.
  std::string run_dir;
  int workers = 4;
  // scripts/cluster's --backend, --model and --kv-cache-memory; empty: its defaults.
  std::string backend;
  std::string model;
  std::string kv_cache_memory;
  // Passed through as --worker-flag / --router-flag, one per entry.
  std::vector<std::string> worker_flags;
  std::vector<std::string> router_flags;
};

// scripts/cluster in the source tree kvbench was built from.
std::string DefaultClusterScript();

// The build directory holding this program (the parent of its bin/), for KVC_BUILD_DIR.
std::string OwnBuildDir();

// Runs `argv` (argv[0] a path) with every signal unblocked; its stderr is ours. Returns its
// stdout, or INTERNAL with the exit status and that output.
absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& argv);

class LocalCluster {
 public:
  // Starts a cluster whose router uses `policy` and waits until every worker is ready.
  // FAILED_PRECONDITION (with the script's message) when it does not come up.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const ClusterOptions& options,
                                                             const std::string& policy);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  // Stops every process the start started; later calls do nothing.
  absl::Status Stop();

  const std::string& router() const { return router_; }
  pid_t router_pid() const { return router_pid_; }

 private:
  LocalCluster(const ClusterOptions& options) : options_(options) {}

  ClusterOptions options_;
  std::string router_;
  pid_t router_pid_ = 0;
  bool running_ = false;
};

// `scripts/cluster stop --run-dir DIR`: for signal handlers that must clean up.
absl::Status StopClusterAt(const std::string& script, const std::string& run_dir);

}  // namespace kvc::kvbench

#endif  // KVCLUSTER_TOOLS_KVBENCH_CLUSTER_H_
