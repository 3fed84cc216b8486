// The command line every kvc_bench_* program shares with scripts/bench: --json (one JSON
// object on stdout), --quick (a short run), --report FILE (a Markdown section for
// BENCHMARKS.md), plus flags of the program's own that take a value.
#ifndef KVCLUSTER_COMMON_BENCH_ARGS_H_
#define KVCLUSTER_COMMON_BENCH_ARGS_H_

#include <initializer_list>
#include <map>
#include <string>
#include <string_view>

namespace kvc {

struct BenchArgs {
  bool json = false;
  bool quick = false;
  std::string report;
  // The program's own flags ("--model" -> "DIR"), as given.
  std::map<std::string, std::string, std::less<>> values;

  std::string Value(std::string_view flag) const {
    auto it = values.find(flag);
    return it == values.end() ? std::string() : it->second;
  }
};

// Parses argv; prints `usage` and exits with code 2 on an argument it does not know or a
// value flag without its value.
BenchArgs ParseBenchArgs(int argc, char** argv, std::initializer_list<std::string_view> value_flags,
                         const char* usage);

}  // namespace kvc

#endif  // KVCLUSTER_COMMON_BENCH_ARGS_H_
