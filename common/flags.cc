#include "common/flags.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvc {

void NormalizeFlagNames(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) return;
    if (arg[0] != '-') continue;
    char* name = arg + (arg[1] == '-' ? 2 : 1);
    for (char* c = name; *c != '\0' && *c != '='; ++c) {
      if (*c == '-') *c = '_';
    }
  }
}

absl::StatusOr<uint64_t> ParseByteSize(std::string_view text) {
  static constexpr std::pair<std::string_view, double> kSuffixes[] = {
      {"kib", 1024.0},
      {"mib", 1024.0 * 1024},
      {"gib", 1024.0 * 1024 * 1024},
      {"tib", 1024.0 * 1024 * 1024 * 1024},
      {"kb", 1e3},
      {"mb", 1e6},
      {"gb", 1e9},
      {"tb", 1e12},
      {"b", 1.0}};
  // Debian's Abseil has its own string_view type, distinct from std::string_view.
  const absl::string_view input(text.data(), text.size());
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(input));
  absl::string_view number = lower;
  double scale = 1.0;
  for (const auto& [suffix, factor] : kSuffixes) {
    if (number.size() > suffix.size() &&
        absl::EndsWith(number, absl::string_view(suffix.data(), suffix.size()))) {
      number.remove_suffix(suffix.size());
      scale = factor;
      break;
    }
  }
  double value = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(number), &value) || !(value >= 0) ||
      !std::isfinite(value * scale) || value * scale > 1.8e19) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", input, "' is not a byte size (examples: 4096, 512MiB, 2GiB, 1.5GB)"));
  }
  return static_cast<uint64_t>(value * scale);
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.2f %s", value, kUnits[unit]);
}

}  // namespace kvc
