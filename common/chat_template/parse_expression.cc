// Expressions, lowest precedence first, as Jinja's parser has them:
// conditional < or < and < not < comparisons < + - < ~ < * / // % < ** < unary - +
// < filters and tests < postfix (.attr, [item], (call)) < primary.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/parser.h"

namespace kvc::chat::internal {
namespace {

ExprPtr MakeExpr(ExprKind kind, size_t offset) {
  return std::make_unique<Expr>(Expr{.kind = kind, .offset = offset});
}

ExprPtr MakeBinary(std::string op, ExprPtr left, ExprPtr right, size_t offset) {
  ExprPtr node = MakeExpr(ExprKind::kBinary, offset);
  node->name = std::move(op);
  node->children.push_back(std::move(left));
  node->children.push_back(std::move(right));
  return node;
}

}  // namespace

absl::StatusOr<ExprPtr> Parser::ParseTuple(
    bool with_condexpr, bool explicit_parentheses,
    std::initializer_list<std::string_view> extra_end_names) {
  const size_t offset = Current().offset;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty() && !SkipOperator(",")) break;
    const Token& token = Current();
    bool at_end = token.kind == TokenKind::kVariableEnd || token.kind == TokenKind::kBlockEnd ||
                  (token.kind == TokenKind::kOperator && token.text == ")");
    for (std::string_view name : extra_end_names) at_end = at_end || IsName(name);
    if (at_end) break;
    absl::StatusOr<ExprPtr> item = ParseExpression(with_condexpr);
    if (!item.ok()) return item.status();
    items.push_back(*std::move(item));
    if (IsOperator(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items.front());
    if (!explicit_parentheses) return Unexpected("an expression");
  }
  ExprPtr tuple = MakeExpr(ExprKind::kTuple, offset);
  tuple->children = std::move(items);
  return tuple;
}

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  DepthGuard guard(this);
  if (guard.too_deep()) return Error(Current().offset, "expression nested too deeply");
  if (!with_condexpr) return ParseOr();
  absl::StatusOr<ExprPtr> node = ParseOr();
  if (!node.ok()) return node;
  ExprPtr result = *std::move(node);
  while (IsName("if")) {
    const size_t offset = Current().offset;
    Advance();
    absl::StatusOr<ExprPtr> condition = ParseOr();
    if (!condition.ok()) return condition;
    ExprPtr otherwise;
    if (SkipName("else")) {
      absl::StatusOr<ExprPtr> else_value = ParseExpression();
      if (!else_value.ok()) return else_value;
      otherwise = *std::move(else_value);
    }
    ExprPtr conditional = MakeExpr(ExprKind::kConditional, offset);
    conditional->children.push_back(*std::move(condition));
    conditional->children.push_back(std::move(result));
    conditional->children.push_back(std::move(otherwise));
    result = std::move(conditional);
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  absl::StatusOr<ExprPtr> left = ParseAnd();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsName("or")) {
    const size_t offset = Current().offset;
    Advance();
    absl::StatusOr<ExprPtr> right = ParseAnd();
    if (!right.ok()) return right;
    result = MakeBinary("or", std::move(result), *std::move(right), offset);
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  absl::StatusOr<ExprPtr> left = ParseNot();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsName("and")) {
    const size_t offset = Current().offset;
    Advance();
    absl::StatusOr<ExprPtr> right = ParseNot();
    if (!right.ok()) return right;
    result = MakeBinary("and", std::move(result), *std::move(right), offset);
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (IsName("not")) {
    DepthGuard guard(this);
    if (guard.too_deep()) return Error(Current().offset, "expression nested too deeply");
    ExprPtr node = MakeExpr(ExprKind::kUnary, Current().offset);
    node->name = "not";
    Advance();
    absl::StatusOr<ExprPtr> operand = ParseNot();
    if (!operand.ok()) return operand;
    node->children.push_back(*std::move(operand));
    return node;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  const size_t offset = Current().offset;
  absl::StatusOr<ExprPtr> first = ParseMath1();
  if (!first.ok()) return first;
  ExprPtr node;
  while (true) {
    std::string op;
    const Token& token = Current();
    if (token.kind == TokenKind::kOperator &&
        (token.text == "==" || token.text == "!=" || token.text == "<" || token.text == "<=" ||
         token.text == ">" || token.text == ">=")) {
      op = token.text;
      Advance();
    } else if (IsName("in")) {
      op = "in";
      Advance();
    } else if (IsName("not") && Peek().kind == TokenKind::kName && Peek().text == "in") {
      op = "not in";
      Advance();
      Advance();
    } else {
      break;
    }
    absl::StatusOr<ExprPtr> operand = ParseMath1();
    if (!operand.ok()) return operand;
    if (node == nullptr) {
      node = MakeExpr(ExprKind::kCompare, offset);
      node->children.push_back(*std::move(first));
    }
    node->ops.push_back(std::move(op));
    node->children.push_back(*std::move(operand));
  }
  if (node == nullptr) return first;
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  absl::StatusOr<ExprPtr> left = ParseConcat();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsOperator("+") || IsOperator("-")) {
    const std::string op = Current().text;
    const size_t offset = Current().offset;
    Advance();
    absl::StatusOr<ExprPtr> right = ParseConcat();
    if (!right.ok()) return right;
    result = MakeBinary(op, std::move(result), *std::move(right), offset);
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
  absl::StatusOr<ExprPtr> left = ParseMath2();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsOperator("~")) {
    const size_t offset = Current().offset;
    Advance();
    absl::StatusOr<ExprPtr> right = ParseMath2();
    if (!right.ok()) return right;
    result = MakeBinary("~", std::move(result), *std::move(right), offset);
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  absl::StatusOr<ExprPtr> left = ParsePow();
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsOperator("*") || IsOperator("/") || IsOperator("//") || IsOperator("%")) {
    const std::string op = Current().text;
    const size_t offset = Current().offset;
    Advance();
    absl::StatusOr<ExprPtr> right = ParsePow();
    if (!right.ok()) return right;
    result = MakeBinary(op, std::move(result), *std::move(right), offset);
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  absl::StatusOr<ExprPtr> left = ParseUnary(/*with_filter=*/true);
  if (!left.ok()) return left;
  ExprPtr result = *std::move(left);
  while (IsOperator("**")) {
    const size_t offset = Current().offset;
    Advance();
    absl::StatusOr<ExprPtr> right = ParseUnary(/*with_filter=*/true);
    if (!right.ok()) return right;
    result = MakeBinary("**", std::move(result), *std::move(right), offset);
  }
  return result;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  DepthGuard guard(this);
  if (guard.too_deep()) return Error(Current().offset, "expression nested too deeply");
  ExprPtr node;
  if (IsOperator("-") || IsOperator("+")) {
    node = MakeExpr(ExprKind::kUnary, Current().offset);
    node->name = Current().text;
    Advance();
    absl::StatusOr<ExprPtr> operand = ParseUnary(/*with_filter=*/false);
    if (!operand.ok()) return operand;
    node->children.push_back(*std::move(operand));
  } else {
    absl::StatusOr<ExprPtr> primary = ParsePrimary();
    if (!primary.ok()) return primary;
    absl::StatusOr<ExprPtr> postfix = ParsePostfix(*std::move(primary));
    if (!postfix.ok()) return postfix;
    node = *std::move(postfix);
  }
  if (!with_filter) return node;
  return ParseFilterExpr(std::move(node));
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& token = Current();
  const size_t offset = token.offset;
  switch (token.kind) {
    case TokenKind::kName: {
      ExprPtr node = MakeExpr(ExprKind::kLiteral, offset);
      if (token.text == "true" || token.text == "True") {
        node->literal = Value::Bool(true);
      } else if (token.text == "false" || token.text == "False") {
        node->literal = Value::Bool(false);
      } else if (token.text == "none" || token.text == "None") {
        node->literal = Value::None();
      } else {
        node->kind = ExprKind::kName;
        node->name = token.text;
      }
      Advance();
      return node;
    }
    case TokenKind::kString: {
      std::string text;
      while (Current().kind == TokenKind::kString) {  // Adjacent literals concatenate.
        text += Current().text;
        Advance();
      }
      ExprPtr node = MakeExpr(ExprKind::kLiteral, offset);
      node->literal = Value::String(std::move(text));
      return node;
    }
    case TokenKind::kInteger:
    case TokenKind::kFloat: {
      ExprPtr node = MakeExpr(ExprKind::kLiteral, offset);
      node->literal =
          token.kind == TokenKind::kInteger ? Value::Int(token.integer) : Value::Float(token.real);
      Advance();
      return node;
    }
    case TokenKind::kOperator:
      if (token.text == "(") {
        Advance();
        absl::StatusOr<ExprPtr> inner =
            ParseTuple(/*with_condexpr=*/true, /*explicit_parentheses=*/true, {});
        if (!inner.ok()) return inner;
        if (absl::Status status = ExpectOperator(")"); !status.ok()) return status;
        return inner;
      }
      if (token.text == "[" || token.text == "{") return ParseListOrDict(token.text == "{");
      break;
    default:
      break;
  }
  return Unexpected("an expression");
}

absl::StatusOr<ExprPtr> Parser::ParseListOrDict(bool is_dict) {
  ExprPtr node = MakeExpr(is_dict ? ExprKind::kDict : ExprKind::kList, Current().offset);
  Advance();
  const std::string_view close = is_dict ? "}" : "]";
  while (!IsOperator(close)) {
    if (!node->children.empty()) {
      if (absl::Status status = ExpectOperator(","); !status.ok()) return status;
      if (IsOperator(close)) break;
    }
    absl::StatusOr<ExprPtr> item = ParseExpression();
    if (!item.ok()) return item;
    node->children.push_back(*std::move(item));
    if (is_dict) {
      if (absl::Status status = ExpectOperator(":"); !status.ok()) return status;
      absl::StatusOr<ExprPtr> value = ParseExpression();
      if (!value.ok()) return value;
      node->children.push_back(*std::move(value));
    }
  }
  Advance();
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    const size_t offset = Current().offset;
    if (SkipOperator(".")) {
      const Token& token = Current();
      if (token.kind == TokenKind::kName) {
        ExprPtr attr = MakeExpr(ExprKind::kGetAttr, offset);
        attr->name = token.text;
        attr->children.push_back(std::move(node));
        node = std::move(attr);
      } else if (token.kind == TokenKind::kInteger) {
        ExprPtr item = MakeExpr(ExprKind::kGetItem, offset);
        ExprPtr index = MakeExpr(ExprKind::kLiteral, token.offset);
        index->literal = Value::Int(token.integer);
        item->children.push_back(std::move(node));
        item->children.push_back(std::move(index));
        node = std::move(item);
      } else {
        return Unexpected("an attribute name");
      }
      Advance();
    } else if (SkipOperator("[")) {
      absl::StatusOr<ExprPtr> subscript = ParseSubscript(std::move(node), offset);
      if (!subscript.ok()) return subscript;
      node = *std::move(subscript);
    } else if (SkipOperator("(")) {
      ExprPtr call = MakeExpr(ExprKind::kCall, offset);
      call->children.push_back(std::move(node));
      if (absl::Status status = ParseCallArgs(&call->children, &call->keyword); !status.ok()) {
        return status;
      }
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node, size_t offset) {
  // One of: [index], [start:stop], [start:stop:step] with any part left out.
  std::vector<ExprPtr> parts;
  bool is_slice = false;
  for (int part = 0; part < 3; ++part) {
    if (IsOperator(":") || IsOperator("]")) {
      parts.push_back(nullptr);
    } else {
      absl::StatusOr<ExprPtr> expr = ParseExpression();
      if (!expr.ok()) return expr;
      parts.push_back(*std::move(expr));
    }
    if (part < 2 && SkipOperator(":")) {
      is_slice = true;
      continue;
    }
    break;
  }
  if (IsOperator(",")) return Error(Current().offset, "tuple subscripts are not supported");
  if (absl::Status status = ExpectOperator("]"); !status.ok()) return status;
  ExprPtr result = MakeExpr(is_slice ? ExprKind::kSlice : ExprKind::kGetItem, offset);
  result->children.push_back(std::move(node));
  if (!is_slice && parts.front() == nullptr) return Error(offset, "expected a subscript");
  for (ExprPtr& part : parts) result->children.push_back(std::move(part));
  while (is_slice && result->children.size() < 4) result->children.push_back(nullptr);
  return result;
}

absl::Status Parser::ParseCallArgs(std::vector<ExprPtr>* args,
                                   std::vector<std::pair<std::string, ExprPtr>>* keyword) {
  // The opening parenthesis is consumed.
  bool first = true;
  while (!IsOperator(")")) {
    if (!first) {
      if (absl::Status status = ExpectOperator(","); !status.ok()) return status;
      if (IsOperator(")")) break;
    }
    first = false;
    if (IsOperator("*") || IsOperator("**")) {
      return Error(Current().offset, "*args and **kwargs in calls are not supported");
    }
    if (Current().kind == TokenKind::kName && Peek().kind == TokenKind::kOperator &&
        Peek().text == "=") {
      std::string name = Current().text;
      Advance();
      Advance();
      absl::StatusOr<ExprPtr> value = ParseExpression();
      if (!value.ok()) return value.status();
      keyword->emplace_back(std::move(name), *std::move(value));
      continue;
    }
    if (!keyword->empty()) {
      return Error(Current().offset, "positional argument follows keyword argument");
    }
    absl::StatusOr<ExprPtr> value = ParseExpression();
    if (!value.ok()) return value.status();
    args->push_back(*std::move(value));
  }
  Advance();
  return absl::OkStatus();
}

absl::StatusOr<std::string> Parser::ParseDottedName() {
  if (Current().kind != TokenKind::kName) return Unexpected("a name");
  std::string name = Current().text;
  Advance();
  while (IsOperator(".") && Peek().kind == TokenKind::kName) {
    Advance();
    name += "." + Current().text;
    Advance();
  }
  return name;
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    const size_t offset = Current().offset;
    if (SkipOperator("|")) {
      const size_t name_offset = Current().offset;
      absl::StatusOr<std::string> name = ParseDottedName();
      if (!name.ok()) return name.status();
      if (!IsKnownFilter(*name)) {
        return Error(name_offset, absl::StrCat("no filter named '", *name, "'"));
      }
      ExprPtr filter = MakeExpr(ExprKind::kFilter, name_offset);
      filter->name = *std::move(name);
      filter->children.push_back(std::move(node));
      if (SkipOperator("(")) {
        if (absl::Status status = ParseCallArgs(&filter->children, &filter->keyword);
            !status.ok()) {
          return status;
        }
      }
      node = std::move(filter);
    } else if (IsName("is")) {
      Advance();
      ExprPtr test = MakeExpr(ExprKind::kTest, offset);
      test->negated = SkipName("not");
      const size_t name_offset = Current().offset;
      absl::StatusOr<std::string> name = ParseDottedName();
      if (!name.ok()) return name.status();
      if (!IsKnownTest(*name)) {
        return Error(name_offset, absl::StrCat("no test named '", *name, "'"));
      }
      test->name = *std::move(name);
      test->children.push_back(std::move(node));
      const Token& next = Current();
      if (SkipOperator("(")) {
        if (absl::Status status = ParseCallArgs(&test->children, &test->keyword); !status.ok()) {
          return status;
        }
      } else if ((next.kind == TokenKind::kName || next.kind == TokenKind::kString ||
                  next.kind == TokenKind::kInteger || next.kind == TokenKind::kFloat ||
                  (next.kind == TokenKind::kOperator && (next.text == "[" || next.text == "{"))) &&
                 !IsName("else") && !IsName("or") && !IsName("and")) {
        // `x is divisibleby 3`: one argument without parentheses.
        if (IsName("is")) return Error(next.offset, "tests cannot be chained with 'is'");
        absl::StatusOr<ExprPtr> arg = ParsePrimary();
        if (!arg.ok()) return arg;
        absl::StatusOr<ExprPtr> postfix = ParsePostfix(*std::move(arg));
        if (!postfix.ok()) return postfix;
        test->children.push_back(*std::move(postfix));
      }
      node = std::move(test);
    } else if (SkipOperator("(")) {
      ExprPtr call = MakeExpr(ExprKind::kCall, offset);
      call->children.push_back(std::move(node));
      if (absl::Status status = ParseCallArgs(&call->children, &call->keyword); !status.ok()) {
        return status;
      }
      node = std::move(call);
    } else {
      return node;
    }
  }
}

}  // namespace kvc::chat::internal
