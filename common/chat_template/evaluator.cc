// Statements and the evaluation loop. Expressions are in evaluate_expression.cc.
#include "common/chat_template/evaluator.h"

#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/lexer.h"

namespace kvc::chat::internal {

const Value* Scope::Find(std::string_view name) const {
  for (const Scope* scope = this; scope != nullptr; scope = scope->parent_) {
    for (const auto& [var_name, value] : scope->vars_) {
      if (var_name == name) return &value;
    }
  }
  return nullptr;
}

void Scope::Set(std::string_view name, Value value) {
  for (auto& [var_name, var_value] : vars_) {
    if (var_name == name) {
      var_value = std::move(value);
      return;
    }
  }
  vars_.emplace_back(std::string(name), std::move(value));
}

absl::StatusOr<std::string> Evaluator::Render(const StmtList& program, Scope* root) {
  root_ = root;
  std::string out;
  absl::StatusOr<Flow> flow = ExecList(program, *root, &out);
  ReleaseNamespaces();
  if (flow.ok()) return out;
  if (raised_) return flow.status();
  const std::string where =
      error_offset_ ? absl::StrCat(" at ", DescribeOffset(source_, *error_offset_)) : "";
  return absl::Status(flow.status().code(),
                      absl::StrCat("chat template error", where, ": ", flow.status().message()));
}

void Evaluator::ReleaseNamespaces() {
  for (Value& namespace_value : namespaces_) namespace_value.mutable_dict().entries.clear();
  namespaces_.clear();
}

absl::Status Evaluator::Step() {
  if (++steps_ > limits_.max_steps) {
    return absl::ResourceExhaustedError(
        absl::StrCat("evaluation took more than ", limits_.max_steps, " steps"));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::CheckSize(size_t bytes) const {
  if (bytes > static_cast<size_t>(limits_.max_output_bytes)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("result larger than ", limits_.max_output_bytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status Evaluator::Append(std::string_view text, std::string* out) const {
  if (absl::Status status = CheckSize(out->size() + text.size()); !status.ok()) return status;
  out->append(text);
  return absl::OkStatus();
}

absl::Status Evaluator::Raise(std::string message) {
  raised_ = true;
  return absl::InvalidArgumentError(std::move(message));
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecList(const StmtList& body, Scope& scope,
                                                    std::string* out) {
  for (const auto& stmt : body) {
    absl::StatusOr<Flow> flow = Exec(*stmt, scope, out);
    if (!flow.ok()) {
      if (!error_offset_) error_offset_ = stmt->offset;
      return flow;
    }
    if (*flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Evaluator::Flow> Evaluator::Exec(const Stmt& stmt, Scope& scope, std::string* out) {
  if (absl::Status status = Step(); !status.ok()) return status;
  switch (stmt.kind) {
    case StmtKind::kData:
      if (absl::Status status = Append(stmt.text, out); !status.ok()) return status;
      return Flow::kNormal;
    case StmtKind::kOutput: {
      absl::StatusOr<Value> value = Eval(*stmt.expr, scope);
      if (!value.ok()) return value.status();
      if (absl::Status status = Append(ToStr(*value), out); !status.ok()) return status;
      return Flow::kNormal;
    }
    case StmtKind::kIf:
      for (size_t i = 0; i < stmt.conditions.size(); ++i) {
        absl::StatusOr<Value> condition = Eval(*stmt.conditions[i], scope);
        if (!condition.ok()) return condition.status();
        if (condition->Truthy()) return ExecList(stmt.bodies[i], scope, out);
      }
      return ExecList(stmt.else_body, scope, out);
    case StmtKind::kFor:
      return ExecFor(stmt, scope, out);
    case StmtKind::kSet: {
      absl::StatusOr<Value> value = Eval(*stmt.expr, scope);
      if (!value.ok()) return value.status();
      if (absl::Status status = Assign(stmt.target, *std::move(value), scope); !status.ok()) {
        return status;
      }
      return Flow::kNormal;
    }
    case StmtKind::kSetBlock:
    case StmtKind::kFilterBlock: {
      Scope inner(&scope);
      std::string text;
      absl::StatusOr<Flow> flow = ExecList(stmt.body, inner, &text);
      if (!flow.ok()) return flow;
      absl::StatusOr<Value> value =
          ApplyFilters(stmt.filters, Value::String(std::move(text)), scope);
      if (!value.ok()) return value.status();
      absl::Status status = stmt.kind == StmtKind::kSetBlock
                                ? Assign(stmt.target, *std::move(value), scope)
                                : Append(ToStr(*value), out);
      if (!status.ok()) return status;
      return Flow::kNormal;
    }
    case StmtKind::kMacro:
      if (absl::Status status = ExecMacro(stmt, scope); !status.ok()) return status;
      return Flow::kNormal;
    case StmtKind::kWith: {
      Scope inner(&scope);
      for (const auto& [target, expr] : stmt.assigns) {
        absl::StatusOr<Value> value = Eval(*expr, scope);  // Values see the outer scope only.
        if (!value.ok()) return value.status();
        if (absl::Status status = Assign(target, *std::move(value), inner); !status.ok()) {
          return status;
        }
      }
      return ExecList(stmt.body, inner, out);
    }
    case StmtKind::kBreak:
      return Flow::kBreak;
    case StmtKind::kContinue:
      return Flow::kContinue;
    case StmtKind::kGeneration:
      return ExecList(stmt.body, scope, out);
  }
  return Flow::kNormal;
}

absl::StatusOr<Evaluator::Flow> Evaluator::ExecFor(const Stmt& stmt, Scope& scope,
                                                   std::string* out) {
  absl::StatusOr<Value> iterable = Eval(*stmt.expr, scope);
  if (!iterable.ok()) return iterable.status();
  absl::StatusOr<std::vector<Value>> all_items = Iterate(*iterable);
  if (!all_items.ok()) {
    error_offset_ = stmt.expr->offset;
    return all_items.status();
  }
  std::vector<Value> items;
  if (stmt.condition == nullptr) {
    items = *std::move(all_items);
  } else {
    // `for x in xs if cond`: the loop, loop.index and loop.length see only the kept items.
    for (Value& item : *all_items) {
      Scope probe(&scope);
      if (absl::Status status = Assign(stmt.target, item, probe); !status.ok()) return status;
      absl::StatusOr<Value> keep = Eval(*stmt.condition, probe);
      if (!keep.ok()) return keep.status();
      if (keep->Truthy()) items.push_back(std::move(item));
    }
  }
  if (items.empty()) return ExecList(stmt.else_body, scope, out);
  const int64_t length = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < length; ++i) {
    // Each iteration costs a step even when its body is empty.
    if (absl::Status status = Step(); !status.ok()) return status;
    Scope iteration(&scope);
    if (absl::Status status = Assign(stmt.target, items[i], iteration); !status.ok()) {
      error_offset_ = stmt.offset;
      return status;
    }
    std::vector<std::pair<Value, Value>> loop = {
        {Value::String("index"), Value::Int(i + 1)},
        {Value::String("index0"), Value::Int(i)},
        {Value::String("revindex"), Value::Int(length - i)},
        {Value::String("revindex0"), Value::Int(length - i - 1)},
        {Value::String("first"), Value::Bool(i == 0)},
        {Value::String("last"), Value::Bool(i == length - 1)},
        {Value::String("length"), Value::Int(length)},
        {Value::String("depth"), Value::Int(1)},
        {Value::String("depth0"), Value::Int(0)},
        {Value::String("cycle"),
         Value::MakeFunction("loop.cycle",
                             [i](Evaluator&, CallArgs& args) -> absl::StatusOr<Value> {
                               if (args.positional.empty()) {
                                 return absl::InvalidArgumentError("no items for cycling given");
                               }
                               return args.positional[i % args.positional.size()];
                             })},
    };
    if (i > 0) loop.emplace_back(Value::String("previtem"), items[i - 1]);
    if (i + 1 < length) loop.emplace_back(Value::String("nextitem"), items[i + 1]);
    iteration.Set("loop", Value::MakeDict(std::move(loop)));
    absl::StatusOr<Flow> flow = ExecList(stmt.body, iteration, out);
    if (!flow.ok()) return flow;
    if (*flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

absl::Status Evaluator::ExecMacro(const Stmt& stmt, Scope& scope) {
  const Stmt* macro = &stmt;
  // The macro sees the template's globals (root_ outlives every value of this evaluation), its
  // parameters and what it sets itself.
  const Scope* globals = root_;
  scope.Set(stmt.text,
            Value::MakeFunction(
                absl::StrCat("macro '", stmt.text, "'"),
                [macro, globals](Evaluator& evaluator, CallArgs& args) -> absl::StatusOr<Value> {
                  const std::string name = absl::StrCat("macro '", macro->text, "'");
                  if (args.positional.size() > macro->params.size()) {
                    return absl::InvalidArgumentError(absl::StrCat(
                        name, " takes not more than ", macro->params.size(), " argument(s)"));
                  }
                  if (evaluator.call_depth_ >= evaluator.limits_.max_call_depth) {
                    return absl::ResourceExhaustedError(absl::StrCat(
                        "macro calls nested deeper than ", evaluator.limits_.max_call_depth));
                  }
                  Scope local(globals);
                  std::vector<bool> given(macro->params.size(), false);
                  for (size_t i = 0; i < args.positional.size(); ++i) {
                    local.Set(macro->params[i].name, args.positional[i]);
                    given[i] = true;
                  }
                  for (auto& [key, value] : args.keyword) {
                    size_t index = 0;
                    while (index < macro->params.size() && macro->params[index].name != key) {
                      ++index;
                    }
                    if (index == macro->params.size()) {
                      return absl::InvalidArgumentError(
                          absl::StrCat(name, " takes no keyword argument '", key, "'"));
                    }
                    if (given[index]) {
                      return absl::InvalidArgumentError(
                          absl::StrCat(name, " got multiple values for argument '", key, "'"));
                    }
                    local.Set(key, std::move(value));
                    given[index] = true;
                  }
                  for (size_t i = 0; i < macro->params.size(); ++i) {
                    if (given[i]) continue;
                    const MacroParam& param = macro->params[i];
                    if (param.default_value == nullptr) {
                      local.Set(param.name, Value::Undefined(absl::StrCat("parameter '", param.name,
                                                                          "' was not provided")));
                      continue;
                    }
                    absl::StatusOr<Value> value = evaluator.Eval(*param.default_value, local);
                    if (!value.ok()) return value.status();
                    local.Set(param.name, *std::move(value));
                  }
                  ++evaluator.call_depth_;
                  std::string text;
                  absl::StatusOr<Flow> flow = evaluator.ExecList(macro->body, local, &text);
                  --evaluator.call_depth_;
                  if (!flow.ok()) return flow.status();
                  return Value::String(std::move(text));
                }));
  return absl::OkStatus();
}

absl::Status Evaluator::Assign(const AssignTarget& target, Value value, Scope& scope) {
  switch (target.kind) {
    case AssignTarget::Kind::kName:
      scope.Set(target.name, std::move(value));
      return absl::OkStatus();
    case AssignTarget::Kind::kNamespaceAttr: {
      const Value* object = scope.Find(target.name);
      if (object == nullptr || !object->is_namespace()) {
        return absl::InvalidArgumentError(absl::StrCat("cannot assign attribute '",
                                                       target.attribute, "' on '", target.name,
                                                       "': it is not a namespace"));
      }
      object->mutable_dict().Set(Value::String(target.attribute), std::move(value));
      return absl::OkStatus();
    }
    case AssignTarget::Kind::kTuple: {
      absl::StatusOr<std::vector<Value>> items = Iterate(value);
      if (!items.ok() || value.is_undefined()) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot unpack non-iterable ", value.TypeName(), " object"));
      }
      if (items->size() != target.targets.size()) {
        return absl::InvalidArgumentError(
            items->size() > target.targets.size()
                ? absl::StrCat("too many values to unpack (expected ", target.targets.size(), ")")
                : absl::StrCat("not enough values to unpack (expected ", target.targets.size(),
                               ", got ", items->size(), ")"));
      }
      for (size_t i = 0; i < items->size(); ++i) {
        if (absl::Status status = Assign(target.targets[i], std::move((*items)[i]), scope);
            !status.ok()) {
          return status;
        }
      }
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Evaluator::ApplyFilters(const std::vector<FilterCall>& filters, Value value,
                                              Scope& scope) {
  for (const FilterCall& filter : filters) {
    CallArgs args;
    for (const ExprPtr& arg : filter.args) {
      absl::StatusOr<Value> evaluated = Eval(*arg, scope);
      if (!evaluated.ok()) return evaluated.status();
      args.positional.push_back(*std::move(evaluated));
    }
    for (const auto& [name, arg] : filter.keyword) {
      absl::StatusOr<Value> evaluated = Eval(*arg, scope);
      if (!evaluated.ok()) return evaluated.status();
      args.keyword.emplace_back(name, *std::move(evaluated));
    }
    absl::StatusOr<Value> result = Filter(filter.name, std::move(value), args);
    if (!result.ok()) {
      if (!error_offset_) error_offset_ = filter.offset;
      return result.status();
    }
    value = *std::move(result);
  }
  return value;
}

}  // namespace kvc::chat::internal
