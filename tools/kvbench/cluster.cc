#include "tools/kvbench/cluster.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace kvc::kvbench {

std::string DefaultClusterScript() { return KVC_SOURCE_DIR "/scripts/cluster"; }

std::string OwnBuildDir() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  return self.parent_path().parent_path().string();
}

absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe(out) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  posix_spawn_file_actions_addclose(&actions, out[1]);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // kvbench blocks SIGINT and SIGTERM to handle them on one thread; the child must not.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, args[0], &actions, &attributes, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  close(out[1]);
  if (spawned != 0) {
    close(out[0]);
    return absl::InternalError(absl::StrCat("cannot run ", argv[0]));
  }
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(out[0], buffer, sizeof(buffer))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    output.append(buffer, n);
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " ", argv.size() > 1 ? argv[1] : "",
                                            " exited with status ", status, ": ", output));
  }
  return output;
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const ClusterOptions& options,
                                                                  const std::string& policy) {
  std::unique_ptr<LocalCluster> cluster(new LocalCluster(options));
  ClusterOptions& o = cluster->options_;
  if (o.script.empty()) o.script = DefaultClusterScript();
  std::vector<std::string> argv = {o.script,   "start", "--workers", absl::StrCat(o.workers),
                                   "--policy", policy,  "--run-dir", o.run_dir};
  if (!o.backend.empty()) argv.insert(argv.end(), {"--backend", o.backend});
  if (!o.model.empty()) argv.insert(argv.end(), {"--model", o.model});
  if (!o.kv_cache_memory.empty()) argv.insert(argv.end(), {"--kv-cache-memory", o.kv_cache_memory});
  for (const std::string& flag : o.worker_flags) argv.insert(argv.end(), {"--worker-flag", flag});
  for (const std::string& flag : o.router_flags) argv.insert(argv.end(), {"--router-flag", flag});
  cluster->running_ = true;  // a failed start may have left processes behind
  absl::StatusOr<std::string> output = RunProgram(argv);
  if (!output.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the cluster did not start: ", output.status().message()));
  }
  for (absl::string_view line : absl::StrSplit(*output, '\n')) {
    if (absl::ConsumePrefix(&line, "ROUTER=")) cluster->router_ = std::string(line);
  }
  std::ifstream pid_file(std::filesystem::path(o.run_dir) / "router.pid");
  std::string pid_text;
  std::getline(pid_file, pid_text);
  int pid = 0;
  if (cluster->router_.empty() || !absl::SimpleAtoi(pid_text, &pid)) {
    return absl::FailedPreconditionError(
        absl::StrCat("scripts/cluster start printed no ROUTER= line or left no router.pid in ",
                     o.run_dir, ": ", *output));
  }
  cluster->router_pid_ = pid;
  return cluster;
}

absl::Status StopClusterAt(const std::string& script, const std::string& run_dir) {
  absl::StatusOr<std::string> output = RunProgram({script, "stop", "--run-dir", run_dir});
  return output.status();
}

absl::Status LocalCluster::Stop() {
  if (!running_) return absl::OkStatus();
  running_ = false;
  return StopClusterAt(options_.script, options_.run_dir);
}

LocalCluster::~LocalCluster() { (void)Stop(); }

}  // namespace kvc::kvbench
