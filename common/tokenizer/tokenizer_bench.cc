// kvc_bench_tokenizer: encode and decode throughput of the real Llama-3 and Qwen3 tokenizers
// (.cache/tokenizers, from scripts/fetch-tokenizers) on a few MB of English text (the license
// texts under /usr/share/common-licenses and /usr/share/doc), on one thread. The goal is
// >= 20 MB/s of encoding per core; tokenizer_mb_s is the slower tokenizer's figure, in MB per
// second of the thread's CPU time so that a busy machine does not distort it.
//
//   kvc_bench_tokenizer [--json] [--report FILE] [--text-mb N] [--text FILE] [--runs N]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/process_setup.h"
#include "common/tokenizer/tokenizer.h"

namespace {

constexpr double kGoalMbPerSecond = 20.0;
constexpr const char* kTokenizerNames[] = {"llama3", "qwen3"};

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// License and copyright texts in a fixed (sorted) order, repeated if need be, cut to `bytes`.
std::string EnglishText(size_t bytes) {
  std::vector<std::filesystem::path> files;
  std::error_code error;
  for (const char* root : {"/usr/share/common-licenses", "/usr/share/doc"}) {
    for (auto it = std::filesystem::recursive_directory_iterator(root, error);
         !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
      const std::filesystem::path& path = it->path();
      const bool license_dir = path.string().starts_with("/usr/share/common-licenses/");
      if (it->is_regular_file(error) && (license_dir || path.filename() == "copyright")) {
        files.push_back(path);
      }
    }
  }
  std::sort(files.begin(), files.end());
  std::string text;
  while (text.size() < bytes && !files.empty()) {
    for (const auto& file : files) {
      text += ReadAll(file);
      if (text.size() >= bytes) break;
    }
  }
  text.resize(std::min(text.size(), bytes));
  // Do not end inside a UTF-8 character, so the round-trip check is exact.
  while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) {
    text.pop_back();
  }
  if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xC0) text.pop_back();
  return text;
}

// Rates are MB of text per second of this thread's CPU time ("one core"), which stays
// meaningful when other work shares the machine; wall-clock rates are reported beside them.
struct Result {
  std::string name;
  double load_seconds = 0;
  double encode_mb_s = 0;       // median over the warm passes, CPU time
  double encode_wall_mb_s = 0;  // the same passes, wall clock
  double encode_cold_mb_s = 0;  // the first pass (empty word cache), CPU time
  double decode_mb_s = 0;       // median, in bytes of text produced, CPU time
  size_t tokens = 0;
  bool round_trip = false;
};

double ThreadCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return now.tv_sec + now.tv_nsec * 1e-9;
}

// Wall and CPU seconds of one call of `work`.
template <typename Work>
std::pair<double, double> Time(Work&& work) {
  const auto wall_start = Clock::now();
  const double cpu_start = ThreadCpuSeconds();
  work();
  return {SecondsSince(wall_start), ThreadCpuSeconds() - cpu_start};
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

bool Run(const std::string& name, const std::string& text, int runs, Result* result) {
  const std::string path = ".cache/tokenizers/" + name + "/tokenizer.json";
  if (!std::filesystem::exists(path)) return false;
  result->name = name;
  absl::StatusOr<std::unique_ptr<kvc::Tokenizer>> tokenizer;
  result->load_seconds = Time([&] { tokenizer = kvc::Tokenizer::FromFile(path); }).first;
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "bench tokenizer: %s\n", tokenizer.status().ToString().c_str());
    std::exit(1);
  }
  const double mb = text.size() / 1e6;
  std::vector<uint32_t> ids;
  std::vector<double> encode_cpu, encode_wall, decode_cpu;
  for (int run = 0; run <= runs; ++run) {
    const auto [wall, cpu] =
        Time([&] { ids = (*tokenizer)->Encode(text, /*add_special_tokens=*/false); });
    if (run == 0) {
      result->encode_cold_mb_s = mb / cpu;
    } else {
      encode_cpu.push_back(mb / cpu);
      encode_wall.push_back(mb / wall);
    }
  }
  std::string decoded;
  for (int run = 0; run < runs; ++run) {
    decode_cpu.push_back(mb / Time([&] { decoded = (*tokenizer)->Decode(ids).value(); }).second);
  }
  result->encode_mb_s = Median(encode_cpu);
  result->encode_wall_mb_s = Median(encode_wall);
  result->decode_mb_s = Median(decode_cpu);
  result->tokens = ids.size();
  result->round_trip = decoded == text;
  return true;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one_minute;
  in >> one_minute;
  return one_minute.empty() ? "unknown" : one_minute;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  std::string report_path;
  double text_mb = 4;
  int runs = 5;
  std::string text_file;  // instead of the license texts
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      json = true;
    } else if (arg == "--report" && i + 1 < argc) {
      report_path = argv[++i];
    } else if (arg == "--text-mb" && i + 1 < argc) {
      text_mb = std::atof(argv[++i]);
    } else if (arg == "--text" && i + 1 < argc) {
      text_file = argv[++i];
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(
          stderr,
          "usage: kvc_bench_tokenizer [--json] [--report FILE] [--text-mb N] "
          "[--text FILE] [--runs N]\n  encode/decode MB/s of .cache/tokenizers/{llama3,qwen3} on "
          "English text, one thread\n");
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  const std::string load_at_start = LoadAverage();
  const std::string text =
      text_file.empty() ? EnglishText(static_cast<size_t>(text_mb * 1e6)) : ReadAll(text_file);
  if (text.empty()) {
    std::fprintf(stderr, "bench tokenizer: no English text found under /usr/share\n");
    return 1;
  }
  std::vector<Result> results;
  for (const char* name : kTokenizerNames) {
    Result result;
    if (Run(name, text, runs, &result)) results.push_back(result);
  }
  if (results.empty()) {
    std::fprintf(stderr,
                 "bench tokenizer: no tokenizer files under .cache/tokenizers "
                 "(run scripts/fetch-tokenizers)\n");
    return 1;
  }
  double slowest = results[0].encode_mb_s;
  for (const Result& r : results) slowest = std::min(slowest, r.encode_mb_s);

  if (json) {
    std::string out =
        absl::StrFormat("{\"tokenizer_mb_s\": %.2f, \"text_bytes\": %d", slowest, text.size());
    for (const Result& r : results) {
      absl::StrAppendFormat(&out,
                            ", \"tokenizer_mb_s_%s\": %.2f, \"tokenizer_wall_mb_s_%s\": %.2f, "
                            "\"tokenizer_cold_mb_s_%s\": %.2f, \"detokenizer_mb_s_%s\": %.2f, "
                            "\"tokens_%s\": %d, \"round_trip_%s\": %s",
                            r.name, r.encode_mb_s, r.name, r.encode_wall_mb_s, r.name,
                            r.encode_cold_mb_s, r.name, r.decode_mb_s, r.name, r.tokens, r.name,
                            r.round_trip ? "true" : "false");
    }
    std::printf("%s}\n", out.c_str());
  } else {
    std::printf(
        "text: %.2f MB of %s, one thread, median of %d runs; "
        "MB/s per CPU-second unless marked wall\n",
        text.size() / 1e6, text_file.empty() ? "English license text" : text_file.c_str(), runs);
    std::printf("%-8s %12s %12s %12s %12s %10s %8s %10s\n", "name", "encode MB/s", "wall MB/s",
                "cold MB/s", "decode MB/s", "tokens", "load s", "roundtrip");
    for (const Result& r : results) {
      std::printf("%-8s %12.1f %12.1f %12.1f %12.1f %10zu %8.2f %10s\n", r.name.c_str(),
                  r.encode_mb_s, r.encode_wall_mb_s, r.encode_cold_mb_s, r.decode_mb_s, r.tokens,
                  r.load_seconds, r.round_trip ? "exact" : "DIFFERS");
    }
    std::printf("tokenizer_mb_s (slowest encode) = %.1f, goal >= %.0f\n", slowest,
                kGoalMbPerSecond);
  }

  if (!report_path.empty()) {
    std::string md = "## tokenizer\n\n";
    absl::StrAppendFormat(
        &md,
        "Command: `scripts/bench tokenizer` (build/bin/kvc_bench_tokenizer)  \n"
        "CPU: %s (%d cores, load average %s at start), one thread  \n"
        "Text: %.2f MB of %s; median of %d runs after a cold one  \n"
        "MB/s are per second of the encoding thread's CPU time (one core's worth, robust to other "
        "load on the machine); the wall-clock column shows what this run saw\n\n",
        kvc::CpuModelName(), std::thread::hardware_concurrency(), load_at_start, text.size() / 1e6,
        text_file.empty()
            ? "English license texts (/usr/share/common-licenses, /usr/share/doc/*/copyright)"
            : text_file,
        runs);
    md +=
        "| tokenizer | encode MB/s | goal | wall-clock encode MB/s | cold encode MB/s | "
        "decode MB/s | tokens | load s | round trip |\n|---|---|---|---|---|---|---|---|---|\n";
    for (const Result& r : results) {
      absl::StrAppendFormat(
          &md, "| %s | %.1f | >= %.0f %s | %.1f | %.1f | %.1f | %d | %.2f | %s |\n", r.name,
          r.encode_mb_s, kGoalMbPerSecond, r.encode_mb_s >= kGoalMbPerSecond ? "(met)" : "(MISSED)",
          r.encode_wall_mb_s, r.encode_cold_mb_s, r.decode_mb_s, r.tokens, r.load_seconds,
          r.round_trip ? "exact" : "differs");
    }
    absl::StrAppendFormat(&md, "\n`tokenizer_mb_s` = %.1f (the slower tokenizer)\n", slowest);
    std::ofstream out(report_path);
    out << md;
  }
  return 0;
}
