#include "common/bench_args.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace kvc {

BenchArgs ParseBenchArgs(int argc, char** argv, std::initializer_list<std::string_view> value_flags,
                         const char* usage) {
  BenchArgs args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool takes_value = arg == "--report" || std::find(value_flags.begin(), value_flags.end(),
                                                            arg) != value_flags.end();
    if (arg == "--json") {
      args.json = true;
    } else if (arg == "--quick") {
      args.quick = true;
    } else if (takes_value && i + 1 < argc) {
      if (arg == "--report") {
        args.report = argv[++i];
      } else {
        args.values[std::string(arg)] = argv[++i];
      }
    } else {
      std::fprintf(stderr, "unknown or incomplete argument '%s'\nusage: %s\n", argv[i], usage);
      std::exit(2);
    }
  }
  return args;
}

}  // namespace kvc
