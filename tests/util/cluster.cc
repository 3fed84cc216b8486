#include "tests/util/cluster.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvc::testing {

absl::Status Cluster::Start(const std::string& dir, const ClusterOptions& options) {
  dir_ = dir;
  options_ = options;
  model_dir_ = dir + "/tiny";
  if (!std::filesystem::exists(model_dir_ + "/config.json")) {
    auto made = Run({BinDir() + "/kvc-make-model", "--out", model_dir_, "--quiet"},
                    dir + "/make-model.log");
    if (!made.ok() || *made != 0) {
      return absl::InternalError("kvc-make-model failed: " + ReadFile(dir + "/make-model.log"));
    }
  }
  workers_.resize(options.num_workers);
  worker_addresses_.resize(options.num_workers);
  for (int i = 0; i < options.num_workers; ++i) {
    if (absl::Status status = StartWorker(i, 0); !status.ok()) return status;
  }
  return StartRouter(0);
}

absl::Status Cluster::StartWorker(int i, int port) {
  const std::string port_file = absl::StrCat(dir_, "/worker", i, ".port");
  std::filesystem::remove(port_file);
  std::vector<std::string> argv = {BinDir() + "/kvc-worker",
                                   "--model",
                                   model_dir_,
                                   "--listen",
                                   absl::StrCat("127.0.0.1:", port),
                                   "--port-file",
                                   port_file,
                                   "--kv-cache-memory",
                                   "1MiB",
                                   "--threads",
                                   "1",
                                   "--heartbeat-interval",
                                   "100ms"};
  argv.insert(argv.end(), options_.worker_flags.begin(), options_.worker_flags.end());
  auto process = Process::Start(argv, absl::StrCat(dir_, "/worker", i, ".log"));
  if (!process.ok()) return process.status();
  workers_[i] = std::move(*process);
  auto bound = WaitForPortFile(port_file, &workers_[i]);
  if (!bound.ok()) return absl::InternalError(absl::StrCat("worker ", i, ": ", Logs()));
  worker_addresses_[i] = absl::StrCat("127.0.0.1:", *bound);
  return absl::OkStatus();
}

absl::Status Cluster::StartRouter(int port) {
  const std::string port_file = dir_ + "/router.port";
  std::filesystem::remove(port_file);
  std::vector<std::string> argv = {BinDir() + "/kvc-router",
                                   "--model",
                                   model_dir_,
                                   "--workers",
                                   absl::StrJoin(worker_addresses_, ","),
                                   "--listen",
                                   absl::StrCat("127.0.0.1:", port),
                                   "--port-file",
                                   port_file,
                                   "--http-listen",
                                   "127.0.0.1:0",
                                   "--http-port-file",
                                   dir_ + "/router-http.port",
                                   "--load-interval",
                                   "100ms",
                                   "--reconnect-max",
                                   "500ms"};
  argv.insert(argv.end(), options_.router_flags.begin(), options_.router_flags.end());
  auto process = Process::Start(argv, dir_ + "/router.log");
  if (!process.ok()) return process.status();
  router_ = std::move(*process);
  auto bound = WaitForPortFile(port_file, &router_);
  if (!bound.ok()) return absl::InternalError("router: " + Logs());
  router_address_ = absl::StrCat("127.0.0.1:", *bound);
  return absl::OkStatus();
}

absl::Status Cluster::RestartWorker(int i) {
  workers_[i].Kill();
  const int port = std::stoi(worker_addresses_[i].substr(worker_addresses_[i].rfind(':') + 1));
  return StartWorker(i, port);
}

absl::Status Cluster::RestartRouter() {
  router_.Stop();
  const int port = std::stoi(router_address_.substr(router_address_.rfind(':') + 1));
  return StartRouter(port);
}

absl::StatusOr<std::string> Cluster::StartExtraWorker(const std::vector<std::string>& flags) {
  const std::string port_file = absl::StrCat(dir_, "/extra", extra_.size(), ".port");
  std::vector<std::string> argv = {BinDir() + "/kvc-worker",
                                   "--model",
                                   model_dir_,
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--port-file",
                                   port_file,
                                   "--kv-cache-memory",
                                   "1MiB",
                                   "--threads",
                                   "1"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto process = Process::Start(argv, absl::StrCat(dir_, "/extra", extra_.size(), ".log"));
  if (!process.ok()) return process.status();
  extra_.push_back(std::move(*process));
  auto bound = WaitForPortFile(port_file, &extra_.back());
  if (!bound.ok()) return bound.status();
  return absl::StrCat("127.0.0.1:", *bound);
}

std::string Cluster::Logs() const {
  std::string out;
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    if (entry.path().extension() == ".log") {
      absl::StrAppend(&out, "\n--- ", entry.path().filename().string(), "\n",
                      ReadFile(entry.path().string()));
    }
  }
  return out;
}

}  // namespace kvc::testing
