// Every tunable of the router, with its default and what it does; kvc-router's flags map
// onto these one to one (see main.cc).
#ifndef KVCLUSTER_ROUTER_CONFIG_H_
#define KVCLUSTER_ROUTER_CONFIG_H_

#include <string>

#include "absl/time/time.h"
#include "common/block_hash.h"
#include "router/policy.h"

namespace kvc::router {

struct RouterConfig {
  // Hashing the workers must share; a worker reporting other values is refused.
  HashConfig hash;
  // Model identity mixed into the block-hash salt; must equal the workers' --model-identity.
  std::string model_identity;

  PolicyOptions policy;

  // How often each worker's load is polled (GetLoad); also the stale-stream check period.
  absl::Duration load_interval = absl::Milliseconds(500);
  // A worker whose event stream is down this long has its blocks dropped from the index.
  absl::Duration dead_after = absl::Seconds(10);
  // An event stream silent this long (no events, no heartbeats) is restarted.
  absl::Duration stream_timeout = absl::Seconds(5);
  // Reconnection backoff of a lost worker: doubles from min to max.
  absl::Duration reconnect_min = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(5);
  // How long a refused worker waits before being asked again (it may be redeployed).
  absl::Duration refused_retry = absl::Seconds(10);
  // Deadline of the GetInfo / GetLoad calls.
  absl::Duration rpc_timeout = absl::Seconds(2);
  // How often a DNS name given with --workers-dns is resolved again.
  absl::Duration dns_refresh = absl::Seconds(5);
  // Longest text prompt accepted, in bytes.
  int64_t max_prompt_bytes = 4 << 20;
};

}  // namespace kvc::router

#endif  // KVCLUSTER_ROUTER_CONFIG_H_
