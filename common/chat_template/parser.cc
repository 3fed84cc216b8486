// Statements: {% if %}, {% for %}, {% set %}, {% macro %}, {% with %}, {% filter %},
// {% break %}, {% continue %}, {% generation %}, and the token helpers.
#include "common/chat_template/parser.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/chat_template/absl_view.h"
#include "common/chat_template/builtins.h"

namespace kvc::chat::internal {

absl::StatusOr<StmtList> ParseTemplate(const std::vector<Token>& tokens,
                                       std::string_view normalized_source) {
  return Parser(tokens, normalized_source).ParseAll();
}

const Token& Parser::Peek(size_t ahead) const {
  const size_t at = index_ + ahead;
  return at < tokens_.size() ? tokens_[at] : tokens_.back();
}

bool Parser::IsOperator(std::string_view op) const {
  return Current().kind == TokenKind::kOperator && Current().text == op;
}

bool Parser::IsName(std::string_view name) const {
  return Current().kind == TokenKind::kName && Current().text == name;
}

bool Parser::SkipOperator(std::string_view op) {
  if (!IsOperator(op)) return false;
  Advance();
  return true;
}

bool Parser::SkipName(std::string_view name) {
  if (!IsName(name)) return false;
  Advance();
  return true;
}

absl::Status Parser::Error(size_t offset, std::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat(
      "template syntax error at ", DescribeOffset(source_, offset), ": ", AsAbsl(message)));
}

std::string Parser::Describe(const Token& token) {
  switch (token.kind) {
    case TokenKind::kVariableEnd:
      return "end of print statement";
    case TokenKind::kBlockEnd:
      return "end of statement block";
    case TokenKind::kEnd:
      return "end of template";
    case TokenKind::kString:
      return "string";
    case TokenKind::kData:
      return "template data";
    default:
      return absl::StrCat("'", token.text, "'");
  }
}

absl::Status Parser::Unexpected(std::string_view expected) const {
  return Error(Current().offset,
               absl::StrCat("expected ", AsAbsl(expected), ", got ", Describe(Current())));
}

absl::Status Parser::ExpectOperator(std::string_view op) {
  if (SkipOperator(op)) return absl::OkStatus();
  return Unexpected(absl::StrCat("'", AsAbsl(op), "'"));
}

absl::Status Parser::ExpectName(std::string_view name) {
  if (SkipName(name)) return absl::OkStatus();
  return Unexpected(absl::StrCat("'", AsAbsl(name), "'"));
}

absl::Status Parser::ExpectBlockEnd() {
  if (Current().kind != TokenKind::kBlockEnd) return Unexpected("end of statement block");
  Advance();
  return absl::OkStatus();
}

absl::StatusOr<StmtList> Parser::ParseAll() {
  absl::StatusOr<StmtList> body = ParseBody({}, "", 0);
  if (!body.ok()) return body.status();
  if (Current().kind != TokenKind::kEnd) {
    return Error(Current().offset, absl::StrCat("unexpected tag '", Current().text, "'"));
  }
  return body;
}

absl::StatusOr<StmtList> Parser::ParseBody(std::initializer_list<std::string_view> end_names,
                                           std::string_view block, size_t block_offset) {
  DepthGuard guard(this);
  if (guard.too_deep()) return Error(Current().offset, "blocks nested too deeply");
  StmtList body;
  while (true) {
    const Token& token = Current();
    switch (token.kind) {
      case TokenKind::kData: {
        auto stmt = std::make_unique<Stmt>(Stmt{.kind = StmtKind::kData, .offset = token.offset});
        stmt->text = token.text;
        body.push_back(std::move(stmt));
        Advance();
        break;
      }
      case TokenKind::kVariableBegin: {
        auto stmt = std::make_unique<Stmt>(Stmt{.kind = StmtKind::kOutput, .offset = token.offset});
        Advance();
        absl::StatusOr<ExprPtr> expr = ParseTuple(/*with_condexpr=*/true,
                                                  /*explicit_parentheses=*/false, {});
        if (!expr.ok()) return expr.status();
        if (Current().kind != TokenKind::kVariableEnd) return Unexpected("end of print statement");
        Advance();
        stmt->expr = *std::move(expr);
        body.push_back(std::move(stmt));
        break;
      }
      case TokenKind::kBlockBegin: {
        const Token& name = Peek();
        if (name.kind != TokenKind::kName) {
          Advance();
          return Unexpected("a tag name");
        }
        for (std::string_view end_name : end_names) {
          if (name.text == end_name) {
            Advance();  // Leave Current() at the name.
            return body;
          }
        }
        if (absl::Status status = ParseStatement(&body); !status.ok()) return status;
        break;
      }
      case TokenKind::kEnd: {
        if (end_names.size() == 0) return body;
        std::vector<std::string> quoted;
        for (std::string_view end_name : end_names)
          quoted.push_back(absl::StrCat("'", AsAbsl(end_name), "'"));
        return Error(block_offset, absl::StrCat("unexpected end of template: the '", AsAbsl(block),
                                                "' block here is not closed (expected ",
                                                absl::StrJoin(quoted, " or "), ")"));
      }
      default:
        return Error(token.offset, absl::StrCat("unexpected ", Describe(token)));
    }
  }
}

absl::Status Parser::ParseStatement(StmtList* out) {
  Advance();  // {%
  const Token& name = Current();
  auto stmt = std::make_unique<Stmt>(Stmt{.kind = StmtKind::kData, .offset = name.offset});
  const std::string tag = name.text;
  Advance();
  absl::Status status;
  if (tag == "if") {
    stmt->kind = StmtKind::kIf;
    status = ParseIf(stmt.get());
  } else if (tag == "for") {
    stmt->kind = StmtKind::kFor;
    status = ParseFor(stmt.get());
  } else if (tag == "set") {
    stmt->kind = StmtKind::kSet;
    status = ParseSet(stmt.get());
  } else if (tag == "macro") {
    stmt->kind = StmtKind::kMacro;
    status = ParseMacro(stmt.get());
  } else if (tag == "with") {
    stmt->kind = StmtKind::kWith;
    status = ParseWith(stmt.get());
  } else if (tag == "filter") {
    stmt->kind = StmtKind::kFilterBlock;
    status = ParseFilterChain(&stmt->filters);
    if (status.ok()) status = ExpectBlockEnd();
    if (status.ok()) {
      absl::StatusOr<StmtList> body = ParseBody({"endfilter"}, "filter", stmt->offset);
      if (!body.ok()) return body.status();
      stmt->body = *std::move(body);
      Advance();
      status = ExpectBlockEnd();
    }
  } else if (tag == "break" || tag == "continue") {
    if (loop_depth_ == 0) return Error(stmt->offset, absl::StrCat("'", tag, "' outside loop"));
    stmt->kind = tag == "break" ? StmtKind::kBreak : StmtKind::kContinue;
    status = ExpectBlockEnd();
  } else if (tag == "generation") {
    stmt->kind = StmtKind::kGeneration;
    status = ExpectBlockEnd();
    if (status.ok()) {
      absl::StatusOr<StmtList> body = ParseBody({"endgeneration"}, "generation", stmt->offset);
      if (!body.ok()) return body.status();
      stmt->body = *std::move(body);
      Advance();
      status = ExpectBlockEnd();
    }
  } else {
    static constexpr std::string_view kInnerTags[] = {
        "elif",     "else",    "endif",     "endfor",        "endset",
        "endmacro", "endwith", "endfilter", "endgeneration", "endraw"};
    for (std::string_view inner : kInnerTags) {
      if (tag == inner) {
        return Error(stmt->offset,
                     absl::StrCat("unexpected tag '", tag, "': no open block takes it here"));
      }
    }
    static constexpr std::string_view kUnsupportedTags[] = {
        "include", "extends", "import", "from", "block", "call", "do", "autoescape", "trans"};
    for (std::string_view unsupported : kUnsupportedTags) {
      if (tag == unsupported) {
        return Error(stmt->offset,
                     absl::StrCat("the Jinja tag '", tag, "' is not supported in chat templates"));
      }
    }
    return Error(stmt->offset, absl::StrCat("unknown tag '", tag, "'"));
  }
  if (!status.ok()) return status;
  out->push_back(std::move(stmt));
  return absl::OkStatus();
}

absl::Status Parser::ParseIf(Stmt* stmt) {
  size_t block_offset = stmt->offset;
  while (true) {
    absl::StatusOr<ExprPtr> condition = ParseTuple(true, false, {});
    if (!condition.ok()) return condition.status();
    if (absl::Status status = ExpectBlockEnd(); !status.ok()) return status;
    absl::StatusOr<StmtList> body = ParseBody({"elif", "else", "endif"}, "if", block_offset);
    if (!body.ok()) return body.status();
    stmt->conditions.push_back(*std::move(condition));
    stmt->bodies.push_back(*std::move(body));
    block_offset = Current().offset;
    const std::string end = Current().text;
    Advance();
    if (end == "elif") continue;
    if (end == "else") {
      if (absl::Status status = ExpectBlockEnd(); !status.ok()) return status;
      absl::StatusOr<StmtList> else_body = ParseBody({"endif"}, "else", block_offset);
      if (!else_body.ok()) return else_body.status();
      stmt->else_body = *std::move(else_body);
      Advance();
    }
    return ExpectBlockEnd();
  }
}

absl::Status Parser::ParseFor(Stmt* stmt) {
  absl::StatusOr<AssignTarget> target = ParseAssignTarget(/*with_namespace=*/false);
  if (!target.ok()) return target.status();
  stmt->target = *std::move(target);
  if (absl::Status status = ExpectName("in"); !status.ok()) return status;
  absl::StatusOr<ExprPtr> iterable = ParseTuple(/*with_condexpr=*/false, false, {"recursive"});
  if (!iterable.ok()) return iterable.status();
  stmt->expr = *std::move(iterable);
  if (SkipName("if")) {
    absl::StatusOr<ExprPtr> condition = ParseExpression();
    if (!condition.ok()) return condition.status();
    stmt->condition = *std::move(condition);
  }
  if (IsName("recursive")) return Error(Current().offset, "recursive loops are not supported");
  if (absl::Status status = ExpectBlockEnd(); !status.ok()) return status;
  ++loop_depth_;
  absl::StatusOr<StmtList> body = ParseBody({"else", "endfor"}, "for", stmt->offset);
  --loop_depth_;
  if (!body.ok()) return body.status();
  stmt->body = *std::move(body);
  if (IsName("else")) {
    const size_t else_offset = Current().offset;
    Advance();
    if (absl::Status status = ExpectBlockEnd(); !status.ok()) return status;
    // A loop's else runs after the loop, so break and continue mean the enclosing loop there.
    absl::StatusOr<StmtList> else_body = ParseBody({"endfor"}, "else", else_offset);
    if (!else_body.ok()) return else_body.status();
    stmt->else_body = *std::move(else_body);
  }
  Advance();
  return ExpectBlockEnd();
}

absl::Status Parser::ParseSet(Stmt* stmt) {
  absl::StatusOr<AssignTarget> target = ParseAssignTarget(/*with_namespace=*/true);
  if (!target.ok()) return target.status();
  stmt->target = *std::move(target);
  if (SkipOperator("=")) {
    absl::StatusOr<ExprPtr> value = ParseTuple(true, false, {});
    if (!value.ok()) return value.status();
    stmt->expr = *std::move(value);
    return ExpectBlockEnd();
  }
  if (stmt->target.kind == AssignTarget::Kind::kTuple) return Unexpected("'='");
  stmt->kind = StmtKind::kSetBlock;
  if (absl::Status status = ParseFilterChain(&stmt->filters); !status.ok()) return status;
  if (absl::Status status = ExpectBlockEnd(); !status.ok()) return status;
  absl::StatusOr<StmtList> body = ParseBody({"endset"}, "set", stmt->offset);
  if (!body.ok()) return body.status();
  stmt->body = *std::move(body);
  Advance();
  return ExpectBlockEnd();
}

absl::Status Parser::ParseMacro(Stmt* stmt) {
  if (Current().kind != TokenKind::kName) return Unexpected("a macro name");
  stmt->text = Current().text;
  Advance();
  if (absl::Status status = ExpectOperator("("); !status.ok()) return status;
  while (!IsOperator(")")) {
    if (!stmt->params.empty()) {
      if (absl::Status status = ExpectOperator(","); !status.ok()) return status;
      if (IsOperator(")")) break;
    }
    if (Current().kind != TokenKind::kName) return Unexpected("a parameter name");
    MacroParam param{Current().text, nullptr};
    Advance();
    if (SkipOperator("=")) {
      absl::StatusOr<ExprPtr> default_value = ParseExpression();
      if (!default_value.ok()) return default_value.status();
      param.default_value = *std::move(default_value);
    } else if (!stmt->params.empty() && stmt->params.back().default_value != nullptr) {
      return Error(Current().offset, "non-default argument follows default argument");
    }
    stmt->params.push_back(std::move(param));
  }
  Advance();
  if (absl::Status status = ExpectBlockEnd(); !status.ok()) return status;
  const int outer_loop_depth = loop_depth_;
  loop_depth_ = 0;  // A macro body is its own function: no loop around it.
  absl::StatusOr<StmtList> body = ParseBody({"endmacro"}, "macro", stmt->offset);
  loop_depth_ = outer_loop_depth;
  if (!body.ok()) return body.status();
  stmt->body = *std::move(body);
  Advance();
  return ExpectBlockEnd();
}

absl::Status Parser::ParseWith(Stmt* stmt) {
  while (Current().kind != TokenKind::kBlockEnd) {
    if (!stmt->assigns.empty()) {
      if (absl::Status status = ExpectOperator(","); !status.ok()) return status;
    }
    absl::StatusOr<AssignTarget> target = ParseAssignTarget(/*with_namespace=*/false);
    if (!target.ok()) return target.status();
    if (absl::Status status = ExpectOperator("="); !status.ok()) return status;
    absl::StatusOr<ExprPtr> value = ParseExpression();
    if (!value.ok()) return value.status();
    stmt->assigns.emplace_back(*std::move(target), *std::move(value));
  }
  Advance();
  absl::StatusOr<StmtList> body = ParseBody({"endwith"}, "with", stmt->offset);
  if (!body.ok()) return body.status();
  stmt->body = *std::move(body);
  Advance();
  return ExpectBlockEnd();
}

absl::Status Parser::ParseFilterChain(std::vector<FilterCall>* filters) {
  // `{% filter f | g %}` starts without a pipe; `{% set x | f %}` with one.
  bool first = true;
  while (Current().kind != TokenKind::kBlockEnd) {
    if (!(first && Current().kind == TokenKind::kName) && !SkipOperator("|")) {
      return Unexpected("'|' or end of statement block");
    }
    first = false;
    FilterCall filter;
    filter.offset = Current().offset;
    absl::StatusOr<std::string> name = ParseDottedName();
    if (!name.ok()) return name.status();
    filter.name = *std::move(name);
    if (!IsKnownFilter(filter.name)) {
      return Error(filter.offset, absl::StrCat("no filter named '", filter.name, "'"));
    }
    if (SkipOperator("(")) {
      if (absl::Status status = ParseCallArgs(&filter.args, &filter.keyword); !status.ok()) {
        return status;
      }
    }
    filters->push_back(std::move(filter));
  }
  return absl::OkStatus();
}

absl::StatusOr<AssignTarget> Parser::ParseTargetAtom() {
  if (SkipOperator("(")) {
    AssignTarget tuple{.kind = AssignTarget::Kind::kTuple};
    while (!IsOperator(")")) {
      if (!tuple.targets.empty()) {
        if (absl::Status status = ExpectOperator(","); !status.ok()) return status;
        if (IsOperator(")")) break;
      }
      absl::StatusOr<AssignTarget> inner = ParseTargetAtom();
      if (!inner.ok()) return inner.status();
      tuple.targets.push_back(*std::move(inner));
    }
    Advance();
    return tuple;
  }
  if (Current().kind != TokenKind::kName) return Unexpected("a variable name");
  AssignTarget target{.kind = AssignTarget::Kind::kName, .name = Current().text};
  Advance();
  return target;
}

absl::StatusOr<AssignTarget> Parser::ParseAssignTarget(bool with_namespace) {
  if (with_namespace && Current().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
      Peek().text == "." && Peek(2).kind == TokenKind::kName) {
    AssignTarget target{.kind = AssignTarget::Kind::kNamespaceAttr,
                        .name = Current().text,
                        .attribute = Peek(2).text};
    Advance();
    Advance();
    Advance();
    return target;
  }
  absl::StatusOr<AssignTarget> first = ParseTargetAtom();
  if (!first.ok()) return first.status();
  if (!IsOperator(",")) return first;
  AssignTarget tuple{.kind = AssignTarget::Kind::kTuple};
  tuple.targets.push_back(*std::move(first));
  while (SkipOperator(",")) {
    if (IsName("in") || IsOperator("=") || Current().kind == TokenKind::kBlockEnd) break;
    absl::StatusOr<AssignTarget> next = ParseTargetAtom();
    if (!next.ok()) return next.status();
    tuple.targets.push_back(*std::move(next));
  }
  return tuple;
}

}  // namespace kvc::chat::internal
