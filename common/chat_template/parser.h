// Turns the lexer's tokens into a syntax tree, with Jinja's grammar and operator precedence.
// Unknown filters and tests are refused here, as Jinja refuses them when compiling.
// Internal to common/chat_template.
#ifndef KVCLUSTER_COMMON_CHAT_TEMPLATE_PARSER_H_
#define KVCLUSTER_COMMON_CHAT_TEMPLATE_PARSER_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/chat_template/ast.h"
#include "common/chat_template/lexer.h"

namespace kvc::chat::internal {

// INVALID_ARGUMENT with line and column for any syntax error.
absl::StatusOr<StmtList> ParseTemplate(const std::vector<Token>& tokens,
                                       std::string_view normalized_source);

// One parse. Statements are in parser.cc, expressions in parse_expression.cc.
// Thread-safety: not thread-safe; used by one ParseTemplate call.
class Parser {
 public:
  Parser(const std::vector<Token>& tokens, std::string_view source)
      : tokens_(tokens), source_(source) {}

  absl::StatusOr<StmtList> ParseAll();

 private:
  // Guards the recursion of nested expressions and blocks, so that no input overflows the stack.
  static constexpr int kMaxDepth = 200;

  class DepthGuard {
   public:
    explicit DepthGuard(Parser* parser) : parser_(parser) { ++parser_->depth_; }
    ~DepthGuard() { --parser_->depth_; }
    bool too_deep() const { return parser_->depth_ > kMaxDepth; }

   private:
    Parser* parser_;
  };

  const Token& Current() const { return tokens_[index_]; }
  const Token& Peek(size_t ahead = 1) const;
  void Advance() {
    if (Current().kind != TokenKind::kEnd) ++index_;
  }
  bool IsOperator(std::string_view op) const;
  bool IsName(std::string_view name) const;
  bool SkipOperator(std::string_view op);
  bool SkipName(std::string_view name);
  absl::Status Error(size_t offset, std::string_view message) const;
  absl::Status Unexpected(std::string_view expected) const;
  absl::Status ExpectOperator(std::string_view op);
  absl::Status ExpectName(std::string_view name);
  absl::Status ExpectBlockEnd();
  static std::string Describe(const Token& token);

  // Statements (parser.cc). ParseBody stops before `{% end_name` for one of `end_names`,
  // leaving Current() at that name; `block` names the enclosing tag for error messages.
  absl::StatusOr<StmtList> ParseBody(std::initializer_list<std::string_view> end_names,
                                     std::string_view block, size_t block_offset);
  absl::Status ParseStatement(StmtList* out);
  absl::Status ParseIf(Stmt* stmt);
  absl::Status ParseFor(Stmt* stmt);
  absl::Status ParseSet(Stmt* stmt);
  absl::Status ParseMacro(Stmt* stmt);
  absl::Status ParseWith(Stmt* stmt);
  absl::Status ParseFilterChain(std::vector<FilterCall>* filters);
  absl::StatusOr<AssignTarget> ParseAssignTarget(bool with_namespace);
  absl::StatusOr<AssignTarget> ParseTargetAtom();

  // Expressions (parse_expression.cc).
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parentheses,
                                     std::initializer_list<std::string_view> extra_end_names);
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr = true);
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node, size_t offset);
  absl::Status ParseCallArgs(std::vector<ExprPtr>* args,
                             std::vector<std::pair<std::string, ExprPtr>>* keyword);
  absl::StatusOr<std::string> ParseDottedName();
  absl::StatusOr<ExprPtr> ParseListOrDict(bool is_dict);

  const std::vector<Token>& tokens_;
  std::string_view source_;
  size_t index_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;  // For loops around the current statement (within its macro).
};

}  // namespace kvc::chat::internal

#endif  // KVCLUSTER_COMMON_CHAT_TEMPLATE_PARSER_H_
