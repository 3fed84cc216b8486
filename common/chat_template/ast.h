// The syntax tree of a parsed template. Built once by the parser, then only read: evaluations on
// many threads share one tree. Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_AST_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_AST_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/chat_template/value.h"

namespace kvc::chat::internal {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,      // literal
  kName,         // name
  kList,         // [children...]
  kTuple,        // (children...)
  kDict,         // {children[0]: children[1], ...}: keys and values alternate
  kGetAttr,      // children[0].name
  kGetItem,      // children[0][children[1]]
  kSlice,        // children[0][a:b:c]: children[1..3], null where left out
  kCall,         // children[0](children[1..], keyword...)
  kFilter,       // children[0] | name(children[1..], keyword...)
  kTest,         // children[0] is [not] name(children[1..], keyword...)
  kUnary,        // op children[0]; op is "not", "-" or "+"
  kBinary,       // children[0] op children[1]; op is an arithmetic operator, "~", "and", "or"
  kCompare,      // children[0] ops[0] children[1] ops[1] children[2] ... (chained)
  kConditional,  // children[1] if children[0] else children[2] (null: Undefined)
};

struct Expr {
  ExprKind kind;
  size_t offset = 0;  // In the normalized source, for error messages.
  Value literal;
  // The name, attribute, filter or test name, or the operator.
  std::string name;
  std::vector<std::string> ops;  // kCompare: "==", "!=", "<", "<=", ">", ">=", "in", "not in".
  bool negated = false;          // kTest: `is not`.
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

// Where `set`, `for` and `with` store a value.
struct AssignTarget {
  enum class Kind { kName, kTuple, kNamespaceAttr };
  Kind kind = Kind::kName;
  std::string name;                   // kName; the namespace variable for kNamespaceAttr.
  std::string attribute;              // kNamespaceAttr.
  std::vector<AssignTarget> targets;  // kTuple.
};

struct Stmt;
using StmtList = std::vector<std::unique_ptr<Stmt>>;

// A filter in `{% filter f(args) %}` or `{% set x | f %}`.
struct FilterCall {
  std::string name;
  size_t offset = 0;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> keyword;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // Null when required (Jinja passes Undefined for a missing one).
};

enum class StmtKind {
  kData,         // text
  kOutput,       // {{ expr }}
  kIf,           // if conditions[i]: bodies[i] ...; else: else_body
  kFor,          // for target in expr [if condition]: body; else: else_body
  kSet,          // set target = expr
  kSetBlock,     // set target [| filters]: body
  kMacro,        // macro name(params): body
  kWith,         // with assignments: body
  kFilterBlock,  // filter filters: body
  kBreak,
  kContinue,
  kGeneration,  // Hugging Face's {% generation %}: renders its body.
};

struct Stmt {
  StmtKind kind;
  size_t offset = 0;
  std::string text;   // kData; the macro's name.
  ExprPtr expr;       // kOutput, kFor (iterable), kSet.
  ExprPtr condition;  // kFor's `if`.
  AssignTarget target;
  std::vector<ExprPtr> conditions;  // kIf.
  std::vector<StmtList> bodies;     // kIf: one per condition.
  StmtList body;
  StmtList else_body;
  std::vector<MacroParam> params;                         // kMacro.
  std::vector<std::pair<AssignTarget, ExprPtr>> assigns;  // kWith.
  std::vector<FilterCall> filters;                        // kFilterBlock, kSetBlock.
};

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_AST_H_
