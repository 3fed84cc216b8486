// The filters over sequences and mappings: sort, unique, min, max, sum, map, select, reject,
// selectattr, rejectattr, join, first, last, list, items, dictsort, reverse. Where Jinja returns
// a lazy iterator (reverse, map, select...), these return a list: templates only iterate, join
// or count them.
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/chat_template/builtins.h"
#include "common/chat_template/evaluator.h"
#include "common/chat_template/filter_functions.h"

namespace kvc::chat::internal {
namespace {

// Jinja's attribute getter: "a.b.0" looks up a, then b, then item 0.
absl::StatusOr<Value> GetPath(Evaluator& evaluator, const Value& item, const std::string& path) {
  Value current = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                      [](char c) { return c >= '0' && c <= '9'; });
    const Value key = numeric ? Value::Int(std::atoll(part.c_str())) : Value::String(part);
    absl::StatusOr<Value> next = evaluator.GetItem(current, key);
    if (!next.ok()) return next;
    current = *std::move(next);
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

// The sort key for sort, unique, min, max and dictsort: lowercased strings unless case matters.
Value SortKey(const Value& value, bool case_sensitive) {
  if (!case_sensitive && value.is_string()) return Value::String(AsciiLower(value.string()));
  return value;
}

absl::StatusOr<std::vector<Value>> Items(const Value& input) { return Iterate(input); }

absl::StatusOr<std::vector<Value>> Keys(Evaluator& evaluator, const std::vector<Value>& items,
                                        const Value& attribute, bool case_sensitive) {
  std::vector<Value> keys;
  for (const Value& item : items) {
    Value key = item;
    if (attribute.is_string()) {
      absl::StatusOr<Value> value = GetPath(evaluator, item, attribute.string());
      if (!value.ok()) return value.status();
      key = *std::move(value);
    }
    keys.push_back(SortKey(key, case_sensitive));
  }
  return keys;
}

// Stable sort of `items` by `keys`; a comparison error (mixed types) is returned.
absl::Status SortByKeys(std::vector<Value>* items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  absl::Status error;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (!error.ok()) return false;
    absl::StatusOr<int> cmp = Compare(keys[a], keys[b], "<");
    if (!cmp.ok()) {
      error = cmp.status();
      return false;
    }
    return reverse ? *cmp == 1 : *cmp == -1;
  });
  if (!error.ok()) return error;
  std::vector<Value> sorted;
  sorted.reserve(items->size());
  for (size_t index : order) sorted.push_back((*items)[index]);
  *items = std::move(sorted);
  return absl::OkStatus();
}

absl::StatusOr<Value> FirstOrLast(Value& input, CallArgs& args, bool first) {
  if (auto bound = BindFilterArgs(first ? "first" : "last", args, {}); !bound.ok())
    return bound.status();
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  if (items->empty()) {
    return Value::Undefined(
        absl::StrCat("No ", first ? "first" : "last", " item, sequence was empty."));
  }
  return first ? items->front() : items->back();
}

// select, reject, selectattr, rejectattr.
absl::StatusOr<Value> Select(Evaluator& evaluator, Value& input, CallArgs& args, bool keep,
                             bool by_attribute) {
  const char* filter =
      keep ? (by_attribute ? "selectattr" : "select") : (by_attribute ? "rejectattr" : "reject");
  if (!args.keyword.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("filter '", filter, "' takes no keywords"));
  }
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("filter '", filter, "' needs an attribute"));
    }
    attribute = ToStr(args.positional[next++]);
  }
  std::string test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string() || !IsKnownTest(args.positional[next].string())) {
      return absl::InvalidArgumentError(
          absl::StrCat(filter, ": no test named ", Repr(args.positional[next])));
    }
    test = args.positional[next++].string();
  }
  CallArgs test_args{{args.positional.begin() + next, args.positional.end()}, {}};
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  std::vector<Value> kept;
  for (const Value& item : *items) {
    Value subject = item;
    if (by_attribute) {
      absl::StatusOr<Value> value = GetPath(evaluator, item, attribute);
      if (!value.ok()) return value.status();
      subject = *std::move(value);
    }
    bool passes = subject.Truthy();
    if (!test.empty()) {
      CallArgs call = test_args;
      absl::StatusOr<bool> result = evaluator.Test(test, subject, call);
      if (!result.ok()) return result.status();
      passes = *result;
    }
    if (passes == keep) kept.push_back(item);
  }
  return Value::MakeList(std::move(kept));
}

// min and max.
absl::StatusOr<Value> Extreme(Evaluator& evaluator, Value& input, CallArgs& args, bool max) {
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs(max ? "max" : "min", args, {"case_sensitive", "attribute"});
  if (!bound.ok()) return bound.status();
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  if (items->empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  absl::StatusOr<std::vector<Value>> keys =
      Keys(evaluator, *items, (*bound)[1], FilterFlag((*bound)[0]));
  if (!keys.ok()) return keys.status();
  size_t best = 0;
  for (size_t i = 1; i < items->size(); ++i) {
    absl::StatusOr<int> order = Compare((*keys)[i], (*keys)[best], max ? ">" : "<");
    if (!order.ok()) return order.status();
    if (max ? *order == 1 : *order == -1) best = i;
  }
  return (*items)[best];
}

}  // namespace

absl::StatusOr<Value> DictSort(Evaluator&, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs("dictsort", args, {"case_sensitive", "by", "reverse"});
  if (!bound.ok()) return bound.status();
  if (!input.is_mapping()) return absl::InvalidArgumentError("dictsort: expected a mapping");
  const bool by_value = (*bound)[1].is_string() && (*bound)[1].string() == "value";
  std::vector<Value> items;
  std::vector<Value> keys;
  for (const auto& [key, value] : input.dict().entries) {
    items.push_back(Value::MakeList({key, value}, /*is_tuple=*/true));
    keys.push_back(SortKey(by_value ? value : key, FilterFlag((*bound)[0])));
  }
  if (absl::Status status = SortByKeys(&items, keys, FilterFlag((*bound)[2])); !status.ok()) {
    return status;
  }
  return Value::MakeList(std::move(items));
}

absl::StatusOr<Value> First(Evaluator&, Value& input, CallArgs& args) {
  return FirstOrLast(input, args, true);
}

absl::StatusOr<Value> Last(Evaluator&, Value& input, CallArgs& args) {
  return FirstOrLast(input, args, false);
}

absl::StatusOr<Value> ItemsFilter(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("items", args, {}); !bound.ok()) return bound.status();
  if (input.is_undefined()) return Value::MakeList({});
  if (!input.is_mapping()) {
    return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
  }
  std::vector<Value> items;
  for (const auto& [key, value] : input.dict().entries) {
    items.push_back(Value::MakeList({key, value}, /*is_tuple=*/true));
  }
  return Value::MakeList(std::move(items));
}

absl::StatusOr<Value> Join(Evaluator& evaluator, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindFilterArgs("join", args, {"d", "attribute"});
  if (!bound.ok()) return bound.status();
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  const std::string separator = (*bound)[0].is_undefined() ? "" : ToStr((*bound)[0]);
  std::string out;
  for (size_t i = 0; i < items->size(); ++i) {
    Value item = (*items)[i];
    if ((*bound)[1].is_string()) {
      absl::StatusOr<Value> value = GetPath(evaluator, item, (*bound)[1].string());
      if (!value.ok()) return value.status();
      item = *std::move(value);
    }
    if (i > 0) out += separator;
    out += ToStr(item);
    if (absl::Status status = evaluator.CheckSize(out.size()); !status.ok()) return status;
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> ListFilter(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("list", args, {}); !bound.ok()) return bound.status();
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  return Value::MakeList(*std::move(items));
}

absl::StatusOr<Value> Map(Evaluator& evaluator, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  std::vector<Value> mapped;
  if (args.positional.empty()) {
    absl::StatusOr<std::vector<Value>> bound =
        BindFilterArgs("map", args, {"attribute", "default"}, 1);
    if (!bound.ok()) return bound.status();
    const std::string attribute = ToStr((*bound)[0]);
    for (const Value& item : *items) {
      absl::StatusOr<Value> value = GetPath(evaluator, item, attribute);
      if (!value.ok()) return value.status();
      if (value->is_undefined() && !(*bound)[1].is_undefined()) {
        mapped.push_back((*bound)[1]);
      } else {
        mapped.push_back(*std::move(value));
      }
    }
    return Value::MakeList(std::move(mapped));
  }
  if (!args.positional[0].is_string() || !IsKnownFilter(args.positional[0].string())) {
    return absl::InvalidArgumentError(
        absl::StrCat("map: no filter named ", Repr(args.positional[0])));
  }
  const std::string name = args.positional[0].string();
  CallArgs rest{{args.positional.begin() + 1, args.positional.end()}, args.keyword};
  for (const Value& item : *items) {
    CallArgs call = rest;
    absl::StatusOr<Value> value = evaluator.Filter(name, item, call);
    if (!value.ok()) return value.status();
    mapped.push_back(*std::move(value));
  }
  return Value::MakeList(std::move(mapped));
}

absl::StatusOr<Value> SelectFilter(Evaluator& e, Value& input, CallArgs& args) {
  return Select(e, input, args, true, false);
}

absl::StatusOr<Value> RejectFilter(Evaluator& e, Value& input, CallArgs& args) {
  return Select(e, input, args, false, false);
}

absl::StatusOr<Value> SelectAttr(Evaluator& e, Value& input, CallArgs& args) {
  return Select(e, input, args, true, true);
}

absl::StatusOr<Value> RejectAttr(Evaluator& e, Value& input, CallArgs& args) {
  return Select(e, input, args, false, true);
}

absl::StatusOr<Value> Max(Evaluator& e, Value& input, CallArgs& args) {
  return Extreme(e, input, args, true);
}

absl::StatusOr<Value> Min(Evaluator& e, Value& input, CallArgs& args) {
  return Extreme(e, input, args, false);
}

absl::StatusOr<Value> Reverse(Evaluator&, Value& input, CallArgs& args) {
  if (auto bound = BindFilterArgs("reverse", args, {}); !bound.ok()) return bound.status();
  if (input.is_string()) {
    std::vector<std::string_view> chars = Utf8Chars(input.string());
    std::string out;
    for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += *it;
    return Value::String(std::move(out));
  }
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  std::reverse(items->begin(), items->end());
  return Value::MakeList(*std::move(items));
}

absl::StatusOr<Value> Sort(Evaluator& evaluator, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs("sort", args, {"reverse", "case_sensitive", "attribute"});
  if (!bound.ok()) return bound.status();
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  absl::StatusOr<std::vector<Value>> keys =
      Keys(evaluator, *items, (*bound)[2], FilterFlag((*bound)[1]));
  if (!keys.ok()) return keys.status();
  if (absl::Status status = SortByKeys(&*items, *keys, FilterFlag((*bound)[0])); !status.ok()) {
    return status;
  }
  return Value::MakeList(*std::move(items));
}

absl::StatusOr<Value> Sum(Evaluator& evaluator, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound = BindFilterArgs("sum", args, {"attribute", "start"});
  if (!bound.ok()) return bound.status();
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  Value total = (*bound)[1].is_undefined() ? Value::Int(0) : (*bound)[1];
  for (const Value& item : *items) {
    Value addend = item;
    if ((*bound)[0].is_string()) {
      absl::StatusOr<Value> value = GetPath(evaluator, item, (*bound)[0].string());
      if (!value.ok()) return value.status();
      addend = *std::move(value);
    }
    absl::StatusOr<Value> next = BinaryOp(evaluator, "+", total, addend);
    if (!next.ok()) return next;
    total = *std::move(next);
  }
  return total;
}

absl::StatusOr<Value> Unique(Evaluator& evaluator, Value& input, CallArgs& args) {
  absl::StatusOr<std::vector<Value>> bound =
      BindFilterArgs("unique", args, {"case_sensitive", "attribute"});
  if (!bound.ok()) return bound.status();
  absl::StatusOr<std::vector<Value>> items = Items(input);
  if (!items.ok()) return items.status();
  absl::StatusOr<std::vector<Value>> keys =
      Keys(evaluator, *items, (*bound)[1], FilterFlag((*bound)[0]));
  if (!keys.ok()) return keys.status();
  std::vector<Value> seen;
  std::vector<Value> unique;
  for (size_t i = 0; i < items->size(); ++i) {
    if (std::any_of(seen.begin(), seen.end(),
                    [&](const Value& key) { return Equal(key, (*keys)[i]); })) {
      continue;
    }
    seen.push_back((*keys)[i]);
    unique.push_back((*items)[i]);
  }
  return Value::MakeList(std::move(unique));
}

}  // namespace kvc::chat::internal
