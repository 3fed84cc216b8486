// A router and workers as real processes on loopback, for integration tests: each program
// runs from build/bin with its logs in the test's temporary directory.
#ifndef KVCLUSTER_TESTS_UTIL_CLUSTER_H_
#define KVCLUSTER_TESTS_UTIL_CLUSTER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tests/util/process.h"

namespace kvc::testing {

struct ClusterOptions {
  int num_workers = 3;
  std::vector<std::string> worker_flags;
  std::vector<std::string> router_flags;
};

class Cluster {
 public:
  // Generates the tiny model into `dir` (once) and starts the workers and the router.
  absl::Status Start(const std::string& dir, const ClusterOptions& options);

  const std::string& router_address() const { return router_address_; }
  const std::string& worker_address(int i) const { return worker_addresses_[i]; }
  const std::string& model_dir() const { return model_dir_; }
  Process& worker(int i) { return workers_[i]; }
  Process& router() { return router_; }

  // Starts worker i again on the same port (after it was killed).
  absl::Status RestartWorker(int i);
  absl::Status RestartRouter();
  // Starts one more worker with extra flags (not known to the router); returns its address.
  absl::StatusOr<std::string> StartExtraWorker(const std::vector<std::string>& flags);

  // The logs of every process, for failure messages.
  std::string Logs() const;

 private:
  absl::Status StartWorker(int i, int port);
  absl::Status StartRouter(int port);

  std::string dir_;
  std::string model_dir_;
  ClusterOptions options_;
  std::vector<Process> workers_;
  std::vector<std::string> worker_addresses_;
  Process router_;
  std::string router_address_;
  std::vector<Process> extra_;
};

}  // namespace kvc::testing

#endif  // KVCLUSTER_TESTS_UTIL_CLUSTER_H_
