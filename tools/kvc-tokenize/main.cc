// kvc-tokenize: text to token ids and back with a Hugging Face tokenizer.json, for users and
// for tests (see kUsage). Reads stdin, writes stdout; errors go to stderr with exit status 1
// (2 for bad usage).
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/tokenizer/tokenizer.h"

namespace {

constexpr char kUsage[] = R"(usage: kvc-tokenize --tokenizer FILE [--decode] [flags] < input

Encodes UTF-8 text read from stdin into token ids, printed space-separated on one line; with
--decode, reads token ids and prints the text they stand for.

  --tokenizer FILE        tokenizer.json (Hugging Face byte-level BPE: Llama-3, Qwen2/3,
                          GPT-2 style); tokenizer_config.json beside it is read when present
  --decode                read ids (separated by spaces, newlines or commas) from stdin and
                          print their text, exactly, with no newline added
  --add-special-tokens    when encoding, add what the tokenizer adds around a text (e.g. BOS)
  --skip-special-tokens   when decoding, leave out special tokens (e.g. <|end_of_text|>)
  --help                  print this help

Encoding takes stdin byte for byte, a final newline included ("echo hi" encodes "hi\n"; use
printf or echo -n to leave it out). Any bytes encode; decoded text is always valid UTF-8, with
U+FFFD where the ids spell bytes that are not. An id not in the vocabulary is an error.
)";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "kvc-tokenize: %s\n(kvc-tokenize --help shows the flags)\n",
               message.c_str());
  return 2;
}

std::string ReadStdin() {
  std::ios::sync_with_stdio(false);
  std::cin >> std::noskipws;
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

// Splits `input` at spaces, newlines, tabs and commas into ids.
bool ParseIds(const std::string& input, std::vector<uint32_t>* ids, std::string* error) {
  size_t pos = 0;
  size_t index = 0;
  while (true) {
    pos = input.find_first_not_of(" \t\r\n,", pos);
    if (pos == std::string::npos) return true;
    const size_t end = std::min(input.find_first_of(" \t\r\n,", pos), input.size());
    const std::string item = input.substr(pos, end - pos);
    uint32_t id = 0;
    if (item.find_first_not_of("0123456789") != std::string::npos || !absl::SimpleAtoi(item, &id)) {
      *error = absl::StrCat("bad token id '", item, "' (item ", index,
                            "): expected an integer in [0, 4294967295]");
      return false;
    }
    ids->push_back(id);
    pos = end;
    ++index;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path;
  bool decode = false;
  bool add_special_tokens = false;
  bool skip_special_tokens = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--tokenizer") {
      if (i + 1 >= argc) return UsageError("--tokenizer needs a FILE");
      tokenizer_path = argv[++i];
    } else if (arg.starts_with("--tokenizer=")) {
      tokenizer_path = arg.substr(std::strlen("--tokenizer="));
    } else if (arg == "--decode") {
      decode = true;
    } else if (arg == "--add-special-tokens") {
      add_special_tokens = true;
    } else if (arg == "--skip-special-tokens") {
      skip_special_tokens = true;
    } else {
      return UsageError(absl::StrCat("unknown argument '", arg, "'"));
    }
  }
  if (tokenizer_path.empty()) return UsageError("--tokenizer FILE is required");
  if (decode && add_special_tokens) return UsageError("--add-special-tokens is for encoding");
  if (!decode && skip_special_tokens) return UsageError("--skip-special-tokens is for --decode");

  absl::StatusOr<std::unique_ptr<kvc::Tokenizer>> tokenizer =
      kvc::Tokenizer::FromFile(tokenizer_path);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "kvc-tokenize: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  const std::string input = ReadStdin();
  if (decode) {
    std::vector<uint32_t> ids;
    std::string error;
    if (!ParseIds(input, &ids, &error)) {
      std::fprintf(stderr, "kvc-tokenize: %s\n", error.c_str());
      return 1;
    }
    absl::StatusOr<std::string> text = (*tokenizer)->Decode(ids, skip_special_tokens);
    if (!text.ok()) {
      std::fprintf(stderr, "kvc-tokenize: %s\n", std::string(text.status().message()).c_str());
      return 1;
    }
    std::fwrite(text->data(), 1, text->size(), stdout);
  } else {
    const std::vector<uint32_t> ids = (*tokenizer)->Encode(input, add_special_tokens);
    std::string line;
    line.reserve(ids.size() * 7);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) line += ' ';
      absl::StrAppend(&line, ids[i]);
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}
