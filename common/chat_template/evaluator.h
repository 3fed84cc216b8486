// Runs a parsed template over template values: statements write the output, expressions compute
// values with Jinja's semantics (default Undefined, scoping of loops and macros, loop controls).
// Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_EVALUATOR_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_EVALUATOR_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/chat_template/ast.h"
#include "common/chat_template/value.h"

namespace kvc::chat::internal {

// Bounds on one evaluation, so that no template (nor fuzzed input) loops forever, exhausts
// memory or overflows the stack. Real chat templates stay far below each of them.
struct EvalLimits {
  int64_t max_output_bytes = int64_t{64} << 20;
  int64_t max_steps = 10'000'000;  // Statements plus expressions evaluated.
  int max_call_depth = 64;         // Nested macro calls.
};

// Variables of one scope: the template's globals, a loop iteration, a macro call, a with block.
// Lookups fall through to the parent. Not thread-safe; one evaluation owns its scopes.
class Scope {
 public:
  explicit Scope(const Scope* parent) : parent_(parent) {}

  const Value* Find(std::string_view name) const;
  void Set(std::string_view name, Value value);

 private:
  const Scope* parent_;
  std::vector<std::pair<std::string, Value>> vars_;  // A handful per scope: linear is fastest.
};

// One evaluation of one template. Thread-safety: not thread-safe; each Apply makes its own,
// while the syntax tree it reads is shared.
class Evaluator {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  Evaluator(std::string_view source, Clock clock, EvalLimits limits = {})
      : source_(source), clock_(std::move(clock)), limits_(limits) {}
  ~Evaluator() { ReleaseNamespaces(); }

  // Renders `program` with `root` holding the template's variables. Errors: INVALID_ARGUMENT
  // with line and column for a runtime error, with the template's own message for
  // raise_exception; RESOURCE_EXHAUSTED when a limit is hit.
  absl::StatusOr<std::string> Render(const StmtList& program, Scope* root);

  // Used by the built-in filters, tests and functions.
  absl::StatusOr<Value> Eval(const Expr& expr, Scope& scope);
  absl::StatusOr<Value> Call(const Value& callee, CallArgs& args);
  absl::StatusOr<Value> Filter(std::string_view name, Value input, CallArgs& args);
  absl::StatusOr<bool> Test(std::string_view name, const Value& input, CallArgs& args);
  // Jinja's getattr and getitem: missing attributes and items are Undefined; only an Undefined
  // object itself is an error.
  absl::StatusOr<Value> GetAttr(const Value& object, std::string_view name);
  absl::StatusOr<Value> GetItem(const Value& object, const Value& key);
  std::chrono::system_clock::time_point Now() const { return clock_(); }
  // For results that grow (string repetition, joins): RESOURCE_EXHAUSTED past the output limit.
  absl::Status CheckSize(size_t bytes) const;
  // raise_exception(message): the error Apply returns, with the message as it stands.
  absl::Status Raise(std::string message);
  // Namespaces are the only mutable values, so the only way to make a reference cycle
  // (`set ns.self = ns`); Render empties every namespace it made when done, which breaks them.
  void TrackNamespace(const Value& namespace_value) { namespaces_.push_back(namespace_value); }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> ExecList(const StmtList& body, Scope& scope, std::string* out);
  absl::StatusOr<Flow> Exec(const Stmt& stmt, Scope& scope, std::string* out);
  absl::StatusOr<Flow> ExecFor(const Stmt& stmt, Scope& scope, std::string* out);
  absl::Status ExecMacro(const Stmt& stmt, Scope& scope);
  absl::Status Assign(const AssignTarget& target, Value value, Scope& scope);
  absl::StatusOr<Value> ApplyFilters(const std::vector<FilterCall>& filters, Value value,
                                     Scope& scope);
  absl::StatusOr<Value> EvalImpl(const Expr& expr, Scope& scope);
  absl::StatusOr<Value> EvalCompare(const Expr& expr, Scope& scope);
  absl::StatusOr<Value> EvalSlice(const Expr& expr, Scope& scope);
  absl::Status EvalArgs(const Expr& expr, size_t first, Scope& scope, CallArgs* args);
  absl::Status Step();
  void ReleaseNamespaces();
  absl::Status Append(std::string_view text, std::string* out) const;

  std::string_view source_;
  Clock clock_;
  EvalLimits limits_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  Scope* root_ = nullptr;
  // Where the first error arose (innermost expression), for the message Render returns.
  std::optional<size_t> error_offset_;
  bool raised_ = false;
  std::vector<Value> namespaces_;
};

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_EVALUATOR_H_
