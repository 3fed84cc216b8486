// Child processes for integration tests: start a program with arguments, wait for it to
// write its port file, stop it (SIGTERM, then SIGKILL) by pid. A Process stops its child when
// destroyed, so a failing test leaves nothing running.
#ifndef KVCLUSTER_TESTS_UTIL_PROCESS_H_
#define KVCLUSTER_TESTS_UTIL_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvc::testing {

// The folder holding the project's programs (build/bin).
std::string BinDir();

// A fresh temporary directory, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class Process {
 public:
  // Starts `argv` (argv[0] is the program path) with stdout and stderr going to `log_path`.
  static absl::StatusOr<Process> Start(const std::vector<std::string>& argv,
                                       const std::string& log_path);
  Process() = default;
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  ~Process();

  pid_t pid() const { return pid_; }
  // Sends SIGTERM and waits up to `grace` for exit, then SIGKILL. Returns the exit status
  // (as from waitpid) or -1 when it had to be killed.
  int Stop(absl::Duration grace = absl::Seconds(10));
  // SIGKILL at once.
  void Kill();
  // Waits for the process to exit on its own; returns its exit code (128 + signal when
  // killed by one), DEADLINE_EXCEEDED after `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();

 private:
  pid_t pid_ = -1;
};

// Waits until `path` holds a port number (the programs' --port-file) or the process exits.
absl::StatusOr<int> WaitForPortFile(const std::string& path, Process* process,
                                    absl::Duration timeout = absl::Seconds(60));

// Runs a program to completion; returns its exit code. Output goes to `log_path`.
absl::StatusOr<int> Run(const std::vector<std::string>& argv, const std::string& log_path,
                        absl::Duration timeout = absl::Seconds(120));

// Reads a whole file (for showing logs on failure).
std::string ReadFile(const std::string& path);

}  // namespace kvc::testing

#endif  // KVCLUSTER_TESTS_UTIL_PROCESS_H_
