// Command-line glue shared by the programs: flags are declared with absl flags (names with
// underscores), and users may type them with dashes as well (--kv-cache-memory).
#ifndef KVCLUSTER_COMMON_FLAGS_H_
#define KVCLUSTER_COMMON_FLAGS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvc {

// Rewrites "--some-flag[=value]" to "--some_flag[=value]" in place (argument values and
// everything after a bare "--" are left alone). Call before absl::ParseCommandLine.
void NormalizeFlagNames(int argc, char** argv);

// Parses a byte count such as "512MiB", "2GiB", "1.5GB", "4096". Binary (KiB, MiB, GiB, TiB)
// and decimal (KB, MB, GB, TB) suffixes; INVALID_ARGUMENT otherwise.
absl::StatusOr<uint64_t> ParseByteSize(std::string_view text);

// "1.50 GiB" and the like, for logs.
std::string FormatBytes(uint64_t bytes);

}  // namespace kvc

#endif  // KVCLUSTER_COMMON_FLAGS_H_
