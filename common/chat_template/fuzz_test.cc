// Random input for Parse and Apply: byte strings, soups of template tokens, random programs
// from a small grammar and mutations of the real templates. Whatever the input, the result is a
// status (OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED), never a crash, an escaped exception or an
// internal error. Seeds are fixed, so a failure reproduces; the iteration that failed is printed.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/chat_template/ast.h"
#include "common/chat_template/chat_template.h"
#include "common/chat_template/evaluator.h"
#include "common/chat_template/lexer.h"
#include "common/chat_template/parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc::chat {
namespace {

using ::testing::HasSubstr;

const nlohmann::ordered_json& Conversation() {
  static const auto* messages = new nlohmann::ordered_json(nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "hi {{ x }}"},
      {"role": "assistant", "content": "<think>\nr\n</think>\n\na",
       "tool_calls": [{"function": {"name": "f", "arguments": {"k": [1, 2.5, null]}}}]},
      {"role": "tool", "content": "result"},
      {"role": "user", "content": "é ☃ \u0000 end"}])"));
  return *messages;
}

// Parses and, when that succeeds, renders; fails the test on anything but the allowed codes.
// Returns how many renderings succeeded (0 to 2).
int Exercise(const std::string& source, uint32_t seed, const std::string& what) {
  SCOPED_TRACE(what + " (seed " + std::to_string(seed) + ")");
  absl::StatusOr<std::unique_ptr<ChatTemplate>> parsed = ChatTemplate::Parse(source, "<s>", "</s>");
  if (!parsed.ok()) {
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << parsed.status() << "\nsource: " << source;
    EXPECT_THAT(parsed.status().message(), HasSubstr("line ")) << "\nsource: " << source;
    return 0;
  }
  const nlohmann::ordered_json extra = {{"tools", nlohmann::ordered_json::array()},
                                        {"enable_thinking", seed % 2 == 0},
                                        {"n", static_cast<int>(seed % 7)}};
  int succeeded = 0;
  for (bool add_generation_prompt : {false, true}) {
    absl::StatusOr<std::string> rendered =
        (*parsed)->ApplyJson(Conversation(), add_generation_prompt, extra);
    if (rendered.ok()) {
      ++succeeded;
      continue;
    }
    const absl::StatusCode code = rendered.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kInvalidArgument ||
                code == absl::StatusCode::kResourceExhausted)
        << rendered.status() << "\nsource: " << source;
    EXPECT_FALSE(rendered.status().message().empty()) << "\nsource: " << source;
  }
  return succeeded;
}

TEST(ChatTemplateFuzz, RandomBytes) {
  std::mt19937 random(1);
  for (uint32_t i = 0; i < 3000; ++i) {
    std::string source(random() % 120, '\0');
    for (char& c : source) {
      // Mostly the characters that matter to the lexer, some arbitrary bytes.
      static constexpr char kInteresting[] = "{}%#-+ \n\t'\"\\()[].,|~=<>!*/:aeifnrx019";
      c = random() % 4 == 0 ? static_cast<char>(random())
                            : kInteresting[random() % (sizeof(kInteresting) - 1)];
    }
    Exercise(source, i, "random bytes");
    if (HasFailure()) return;
  }
}

TEST(ChatTemplateFuzz, TokenSoup) {
  static const std::vector<std::string> kTokens = {"{{",
                                                   "}}",
                                                   "{%",
                                                   "%}",
                                                   "{#",
                                                   "#}",
                                                   "{{-",
                                                   "-}}",
                                                   "{%-",
                                                   "-%}",
                                                   "{%+",
                                                   "+%}",
                                                   " ",
                                                   "\n",
                                                   "if",
                                                   "elif",
                                                   "else",
                                                   "endif",
                                                   "for",
                                                   "endfor",
                                                   "in",
                                                   "set",
                                                   "endset",
                                                   "macro",
                                                   "endmacro",
                                                   "raw",
                                                   "endraw",
                                                   "with",
                                                   "endwith",
                                                   "filter",
                                                   "endfilter",
                                                   "break",
                                                   "continue",
                                                   "generation",
                                                   "endgeneration",
                                                   "not",
                                                   "and",
                                                   "or",
                                                   "is",
                                                   "defined",
                                                   "none",
                                                   "true",
                                                   "loop",
                                                   "loop.index",
                                                   "loop.last",
                                                   "messages",
                                                   "message",
                                                   "m",
                                                   "x",
                                                   "ns",
                                                   "namespace(",
                                                   "range(",
                                                   "raise_exception(",
                                                   "strftime_now(",
                                                   "dict(",
                                                   "'a'",
                                                   "\"b\"",
                                                   "'%d'",
                                                   "1",
                                                   "0",
                                                   "-1",
                                                   "3",
                                                   "2.5",
                                                   "1e999",
                                                   "(",
                                                   ")",
                                                   "[",
                                                   "]",
                                                   "{",
                                                   "}",
                                                   ",",
                                                   ":",
                                                   ".",
                                                   "|",
                                                   "trim",
                                                   "tojson",
                                                   "length",
                                                   "join",
                                                   "map",
                                                   "select",
                                                   "selectattr",
                                                   "items",
                                                   "sort",
                                                   "first",
                                                   "default",
                                                   "upper",
                                                   "indent",
                                                   "string",
                                                   "int",
                                                   "=",
                                                   "==",
                                                   "!=",
                                                   "<",
                                                   ">",
                                                   "+",
                                                   "-",
                                                   "*",
                                                   "/",
                                                   "//",
                                                   "%",
                                                   "**",
                                                   "~",
                                                   "[::-1]",
                                                   ".content",
                                                   ".role",
                                                   ".split(",
                                                   ".strip(",
                                                   ".get(",
                                                   "odd",
                                                   "mapping",
                                                   "iterable",
                                                   "é",
                                                   "\xff",
                                                   "\\",
                                                   "'",
                                                   "\"",
                                                   "#"};
  std::mt19937 random(2);
  for (uint32_t i = 0; i < 4000; ++i) {
    std::string source;
    const size_t count = 1 + random() % 40;
    for (size_t t = 0; t < count; ++t) {
      source += kTokens[random() % kTokens.size()];
      if (random() % 3 == 0) source += ' ';
    }
    Exercise(source, i, "token soup");
    if (HasFailure()) return;
  }
}

// Random programs that mostly parse, so that the evaluator sees many shapes of values.
class ProgramGenerator {
 public:
  explicit ProgramGenerator(uint32_t seed) : random_(seed) {}

  std::string Program() {
    std::string out = "{% set x = " + Atom() + " %}{% set y = " + Atom() + " %}";
    const int statements = 1 + Pick(6);
    for (int i = 0; i < statements; ++i) out += Statement(0);
    return out;
  }

 private:
  int Pick(int n) { return static_cast<int>(random_() % n); }

  std::string Name() {
    // Mostly names that exist (set by the program or given to every template).
    static const char* kNames[] = {"x",         "y", "m",     "messages", "ns",
                                   "bos_token", "n", "tools", "messages", "undefined_thing"};
    return kNames[Pick(10)];
  }

  // A sub-expression in parentheses, so that precedence never makes the program invalid.
  std::string Sub(int depth) {
    std::string out(1, '(');
    out.append(Expr(depth + 1));
    out.push_back(')');
    return out;
  }

  std::string Expr(int depth) {
    if (depth > 3) return Atom();
    switch (Pick(14)) {
      case 0:
        return Sub(depth) + " " + Binary() + " " + Sub(depth);
      case 1:
        return Sub(depth) + "." + Attribute();
      case 2:
        return Sub(depth) + "[" + Expr(depth + 1) + "]";
      case 3:
        return Sub(depth) + "[" + Atom() + ":" + (Pick(2) ? Atom() : "") + (Pick(2) ? ":-1" : "") +
               "]";
      case 4:
        return Sub(depth) + " | " + Filter();
      case 5:
        return Sub(depth) + " is " + (Pick(2) ? "not " : "") + Test();
      case 6:
        return Sub(depth) + " if " + Sub(depth) + " else " + Sub(depth);
      case 7:
        return "[" + Expr(depth + 1) + ", " + Expr(depth + 1) + "]";
      case 8:
        return "{'k': " + Expr(depth + 1) + ", " + Atom() + ": 1}";
      case 9:
        return "not " + Sub(depth);
      case 10:
        return Sub(depth) + "." + Method();
      case 11:
        return Global();
      default:
        return Atom();
    }
  }

  std::string Atom() {
    switch (Pick(7)) {
      case 0:
        return std::to_string(Pick(7) - 2);
      case 1:
        return "2.5";
      case 2:
        return "'s<think>t</think>'";
      case 3:
        return "none";
      case 4:
        return "true";
      default:
        return Name();
    }
  }

  std::string Binary() {
    static const char* kOps[] = {"+",  "-",  "*", "/",  "//", "%",      "**",  "~",
                                 "==", "!=", "<", ">=", "in", "not in", "and", "or"};
    return kOps[Pick(16)];
  }

  std::string Attribute() {
    static const char* kAttributes[] = {"role", "content", "tool_calls", "index", "x", "items"};
    return kAttributes[Pick(6)];
  }

  std::string Method() {
    static const char* kMethods[] = {
        "split('</think>')", "strip()", "lstrip('\\n')",     "startswith('s')", "get('role')",
        "items()",           "upper()", "replace('s', 'S')", "join(['a'])",     "keys()"};
    return kMethods[Pick(10)];
  }

  std::string Filter() {
    static const char* kFilters[] = {"trim",
                                     "length",
                                     "tojson",
                                     "tojson(indent=2)",
                                     "string",
                                     "first",
                                     "last",
                                     "list",
                                     "reverse",
                                     "join(',')",
                                     "map(attribute='role')",
                                     "items",
                                     "selectattr('role', 'equalto', 'user')",
                                     "sort",
                                     "default('d')",
                                     "upper",
                                     "int",
                                     "unique",
                                     "sum",
                                     "dictsort",
                                     "indent(2)",
                                     "select('odd')",
                                     "max",
                                     "round(1)"};
    return kFilters[Pick(24)];
  }

  std::string Test() {
    static const char* kTests[] = {"defined", "none", "string",   "mapping", "iterable",
                                   "number",  "odd",  "sequence", "true",    "divisibleby(2)"};
    return kTests[Pick(10)];
  }

  std::string Global() {
    static const char* kGlobals[] = {"range(3)", "namespace(a=1)", "dict(k=2)",
                                     "strftime_now('%Y')", "raise_exception('stop')"};
    return kGlobals[Pick(10) == 0 ? 4 : Pick(4)];
  }

  std::string Statement(int depth) {
    if (depth > 2) return "{{ " + Expr(0) + " }}";
    switch (Pick(9)) {
      case 0:
        return "{% if " + Expr(0) + " %}" + Statement(depth + 1) + "{% elif " + Expr(0) +
               " %}t{% else %}" + Statement(depth + 1) + "{% endif %}";
      case 1:
        return "{%- for m in " + Expr(0) + (Pick(2) ? " if " + Expr(0) : "") + " -%}" +
               Statement(depth + 1) + (Pick(4) == 0 ? "{% break %}" : "") + "{% endfor %}";
      case 2:
        return "{% set " + Name() + " = " + Expr(0) + " %}";
      case 3:
        return "{% set ns = namespace(v=" + Expr(0) + ") %}{% set ns.v = " + Expr(0) + " %}";
      case 4:
        return "{% macro mac(a, b=" + Atom() + ") %}" + Statement(depth + 1) +
               "{% endmacro %}{{ mac(" + Expr(0) + ") }}";
      case 5:
        return "text\n  ";
      default:
        return "{{ " + Expr(0) + " }}";
    }
  }

  std::mt19937 random_;
};

TEST(ChatTemplateFuzz, RandomPrograms) {
  int rendered = 0;
  for (uint32_t i = 0; i < 3000; ++i) {
    rendered += Exercise(ProgramGenerator(i).Program(), i, "random program");
    if (HasFailure()) return;
  }
  // The generator is only useful if a fair share of its programs get through to the end
  // (about one in ten with these seeds; most others stop at a runtime type error).
  EXPECT_GT(rendered, 300) << "of 6000 renderings";
}

TEST(ChatTemplateFuzz, MutatedRealTemplates) {
  std::vector<std::string> sources;
  for (const char* path : {".cache/tokenizers/llama3/tokenizer_config.json",
                           ".cache/tokenizers/qwen3/tokenizer_config.json"}) {
    std::ifstream in(path);
    if (!in) continue;
    std::stringstream text;
    text << in.rdbuf();
    sources.push_back(nlohmann::json::parse(text.str())["chat_template"].get<std::string>());
  }
  if (sources.empty())
    GTEST_SKIP() << "no templates in .cache/tokenizers (run scripts/fetch-tokenizers)";
  std::mt19937 random(3);
  for (uint32_t i = 0; i < 2000; ++i) {
    std::string source = sources[i % sources.size()];
    const int edits = 1 + random() % 4;
    for (int e = 0; e < edits && !source.empty(); ++e) {
      const size_t at = random() % source.size();
      const size_t length = 1 + random() % 12;
      switch (random() % 3) {
        case 0:
          source.erase(at, length);
          break;
        case 1:
          source.insert(at, source.substr(random() % source.size(), length));
          break;
        default:
          source[at] = "{}%#-|.()[]'\"x "[random() % 15];
      }
    }
    Exercise(source, i, "mutated template");
    if (HasFailure()) return;
  }
}

// The step bound stops a template that would otherwise run for hours, at the statement it
// reached, with RESOURCE_EXHAUSTED.
TEST(ChatTemplateLimits, StepBoundStopsLongLoops) {
  const std::string source = internal::NormalizeSource(
      "{% for a in range(100000) %}{% for b in range(100000) %}"
      "{% endfor %}{% endfor %}");
  absl::StatusOr<std::vector<internal::Token>> tokens = internal::Tokenize(source);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  absl::StatusOr<internal::StmtList> program = internal::ParseTemplate(*tokens, source);
  ASSERT_TRUE(program.ok()) << program.status();
  internal::EvalLimits limits;
  limits.max_steps = 100000;
  internal::Evaluator evaluator(
      source, [] { return std::chrono::system_clock::now(); }, limits);
  internal::Scope root(nullptr);
  absl::StatusOr<std::string> rendered = evaluator.Render(*program, &root);
  EXPECT_EQ(rendered.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(rendered.status().message(), HasSubstr("more than 100000 steps"));
}

// A namespace that holds itself is a reference cycle; rendering empties the namespaces it made,
// so that nothing leaks (LeakSanitizer checks the rest under scripts/test --sanitize).
TEST(ChatTemplateLimits, NamespaceCyclesAreBroken) {
  const std::string source = internal::NormalizeSource(
      "{% set ns = namespace(n=1) %}{% set ns.self = ns %}{% set ns.list = [ns, {'k': ns}] %}"
      "{{ ns.self.self.n }}");
  absl::StatusOr<std::vector<internal::Token>> tokens = internal::Tokenize(source);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  absl::StatusOr<internal::StmtList> program = internal::ParseTemplate(*tokens, source);
  ASSERT_TRUE(program.ok()) << program.status();
  internal::Scope root(nullptr);
  {
    internal::Evaluator evaluator(source, [] { return std::chrono::system_clock::now(); });
    absl::StatusOr<std::string> rendered = evaluator.Render(*program, &root);
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(*rendered, "1");
  }
  const internal::Value* ns = root.Find("ns");
  ASSERT_NE(ns, nullptr);
  ASSERT_TRUE(ns->is_namespace());
  EXPECT_TRUE(ns->dict().entries.empty());
}

}  // namespace
}  // namespace kvc::chat
