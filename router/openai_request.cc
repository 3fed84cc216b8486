#include "router/openai_request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace kvc::router::openai {

namespace pb = ::kvcluster::v1;
using Json = nlohmann::json;

namespace {

// Stop strings a request may carry (OpenAI's limit); workers have their own limits too.
constexpr size_t kMaxStopStrings = 4;

const char* TypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

// Field readers: each returns false with *error set when the value does not fit.
class Reader {
 public:
  explicit Reader(ApiError* error) : error_(error) {}

  bool Fail(const std::string& param, std::string message, const char* code = "invalid_value") {
    *error_ = ApiError{.http_status = 400,
                       .message = std::move(message),
                       .type = "invalid_request_error",
                       .param = param,
                       .code = code};
    return false;
  }
  bool WrongType(const std::string& param, const Json& value, const char* expected) {
    return Fail(param,
                absl::StrCat("Invalid type for '", param, "': expected ", expected, ", but got ",
                             TypeName(value), " instead."),
                "invalid_type");
  }

  bool String(const std::string& param, const Json& value, std::string* out) {
    if (!value.is_string()) return WrongType(param, value, "a string");
    *out = value.get<std::string>();
    return true;
  }
  bool Bool(const std::string& param, const Json& value, bool* out) {
    if (!value.is_boolean()) return WrongType(param, value, "a boolean");
    *out = value.get<bool>();
    return true;
  }
  // An integer in [lo, hi]; a number with no fraction counts as one (16.0 from some clients).
  bool Integer(const std::string& param, const Json& value, int64_t lo, int64_t hi, int64_t* out) {
    int64_t number = 0;
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Fail(param, absl::StrCat("Invalid value for '", param, "': ", value.get<uint64_t>(),
                                      " is outside [", lo, ", ", hi, "]."));
    }
    if (value.is_number_integer()) {  // signed or unsigned, within int64 here
      number = value.get<int64_t>();
    } else if (value.is_number_float() && std::isfinite(value.get<double>()) &&
               std::trunc(value.get<double>()) == value.get<double>() &&
               std::fabs(value.get<double>()) < 9.0e18) {
      number = static_cast<int64_t>(value.get<double>());
    } else {
      return WrongType(param, value, "an integer");
    }
    if (number < lo || number > hi) {
      return Fail(param, absl::StrCat("Invalid value for '", param, "': ", number, " is outside [",
                                      lo, ", ", hi, "]."));
    }
    *out = number;
    return true;
  }
  // A seed: any integer in [-2^63, 2^64), taken as its 64-bit two's-complement pattern (the
  // value modulo 2^64), so that seeds in [0, 2^64) map one to one and a negative seed n is the
  // same seed as 2^64 + n.
  bool Seed(const std::string& param, const Json& value, uint64_t* out) {
    if (value.is_number_unsigned()) {
      *out = value.get<uint64_t>();
      return true;
    }
    if (value.is_number_integer()) {
      *out = static_cast<uint64_t>(value.get<int64_t>());
      return true;
    }
    if (!value.is_number_float()) return WrongType(param, value, "an integer");
    const double number = value.get<double>();
    if (!std::isfinite(number) || std::trunc(number) != number) {
      return WrongType(param, value, "an integer");
    }
    constexpr double kTwoTo63 = 9223372036854775808.0, kTwoTo64 = 18446744073709551616.0;
    if (number < -kTwoTo63 || number >= kTwoTo64) {
      return Fail(param, absl::StrCat("Invalid value for '", param, "': ", number,
                                      " is outside [-2^63, 2^64)."));
    }
    *out = number >= kTwoTo63 ? static_cast<uint64_t>(number - kTwoTo63) + (uint64_t{1} << 63)
                              : static_cast<uint64_t>(static_cast<int64_t>(number));
    return true;
  }
  bool Number(const std::string& param, const Json& value, double lo, double hi, double* out) {
    if (!value.is_number()) return WrongType(param, value, "a number");
    const double number = value.get<double>();
    if (!(number >= lo && number <= hi)) {
      return Fail(param, absl::StrCat("Invalid value for '", param, "': ", number, " is outside [",
                                      lo, ", ", hi, "]."));
    }
    *out = number;
    return true;
  }

 private:
  ApiError* const error_;
};

bool KnownField(Endpoint endpoint, const std::string& key) {
  static const char* const kCommon[] = {"model",
                                        "max_tokens",
                                        "temperature",
                                        "top_p",
                                        "top_k",
                                        "n",
                                        "stream",
                                        "stream_options",
                                        "stop",
                                        "presence_penalty",
                                        "frequency_penalty",
                                        "logit_bias",
                                        "user",
                                        "seed",
                                        "ignore_eos",
                                        "cache_salt",
                                        "logprobs"};
  static const char* const kCompletions[] = {"prompt", "echo", "best_of", "suffix"};
  static const char* const kChat[] = {
      "messages", "max_completion_tokens", "top_logprobs",       "response_format",
      "tools",    "tool_choice",           "parallel_tool_calls"};
  for (const char* name : kCommon) {
    if (key == name) return true;
  }
  if (endpoint == Endpoint::kCompletions) {
    for (const char* name : kCompletions) {
      if (key == name) return true;
    }
  } else {
    for (const char* name : kChat) {
      if (key == name) return true;
    }
  }
  return false;
}

// A prompt of token ids: non-negative integers that fit uint32.
bool ParseTokenIds(Reader& reader, const std::string& param, const Json& value,
                   std::vector<uint32_t>* ids) {
  for (size_t i = 0; i < value.size(); ++i) {
    int64_t id = 0;
    if (!reader.Integer(absl::StrCat(param, "[", i, "]"), value[i], 0,
                        std::numeric_limits<uint32_t>::max(), &id)) {
      return false;
    }
    ids->push_back(static_cast<uint32_t>(id));
  }
  return true;
}

bool ParsePrompt(Reader& reader, const Json& value, Request* request) {
  if (value.is_string()) {
    request->prompt_text = value.get<std::string>();
  } else if (value.is_array() && !value.empty() && value[0].is_number()) {
    if (!ParseTokenIds(reader, "prompt", value, &request->prompt_ids)) return false;
  } else if (value.is_array() && value.size() == 1 && value[0].is_string()) {
    request->prompt_text = value[0].get<std::string>();
  } else if (value.is_array() && value.size() == 1 && value[0].is_array()) {
    if (!ParseTokenIds(reader, "prompt[0]", value[0], &request->prompt_ids)) return false;
  } else if (value.is_array() && value.size() > 1 &&
             (value[0].is_string() || value[0].is_array())) {
    return reader.Fail("prompt",
                       "Only one prompt per request is supported; send one request per prompt.");
  } else if (value.is_array() && value.empty()) {
    return reader.Fail("prompt", "The prompt is empty.");
  } else {
    return reader.WrongType("prompt", value,
                            "a string, an array of token ids, or an array holding one of those");
  }
  if ((request->prompt_text && request->prompt_text->empty()) ||
      (!request->prompt_text && request->prompt_ids.empty())) {
    return reader.Fail("prompt", "The prompt is empty.");
  }
  return true;
}

bool ParseContent(Reader& reader, const std::string& param, const Json& value,
                  std::string* content) {
  if (value.is_string()) {
    *content = value.get<std::string>();
    return true;
  }
  if (!value.is_array()) return reader.WrongType(param, value, "a string or an array of parts");
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& part = value[i];
    const std::string part_param = absl::StrCat(param, "[", i, "]");
    if (!part.is_object()) return reader.WrongType(part_param, part, "an object");
    auto type = part.find("type");
    auto text = part.find("text");
    if (type == part.end() || !type->is_string() || *type != "text") {
      return reader.Fail(absl::StrCat(part_param, ".type"),
                         "Only content parts of type 'text' are supported.");
    }
    if (text == part.end()) {
      return reader.Fail(absl::StrCat(part_param, ".text"), "A text part needs its 'text'.",
                         "missing_required_parameter");
    }
    std::string piece;
    if (!reader.String(absl::StrCat(part_param, ".text"), *text, &piece)) return false;
    content->append(piece);
  }
  return true;
}

bool ParseMessages(Reader& reader, const Json& value, std::vector<Message>* messages) {
  if (!value.is_array()) return reader.WrongType("messages", value, "an array");
  if (value.empty()) return reader.Fail("messages", "'messages' must hold at least one message.");
  for (size_t i = 0; i < value.size(); ++i) {
    const Json& item = value[i];
    const std::string param = absl::StrCat("messages[", i, "]");
    if (!item.is_object()) return reader.WrongType(param, item, "an object");
    Message message;
    bool has_content = false;
    for (const auto& [key, field] : item.items()) {
      if (key == "role") {
        if (!reader.String(param + ".role", field, &message.role)) return false;
      } else if (key == "content") {
        if (field.is_null()) continue;
        has_content = true;
        if (!ParseContent(reader, param + ".content", field, &message.content)) return false;
      } else if (key == "name") {
        std::string ignored;
        if (!reader.String(param + ".name", field, &ignored)) return false;
      } else if (field.is_null() || (field.is_array() && field.empty())) {
        continue;  // e.g. "tool_calls": [] echoed back by a client: nothing said
      } else if (key == "tool_calls" || key == "function_call") {
        return reader.Fail(param + "." + key, "Tool and function calls are not supported.");
      } else {
        return reader.Fail(param + "." + key,
                           absl::StrCat("Unrecognized message field '", key, "'."),
                           "unknown_parameter");
      }
    }
    if (message.role.empty()) {
      return reader.Fail(param + ".role", "Every message needs a 'role'.",
                         "missing_required_parameter");
    }
    if (message.role == "developer") message.role = "system";
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      return reader.Fail(param + ".role",
                         absl::StrCat("Unsupported role '", message.role,
                                      "': use system, developer, user or assistant."));
    }
    if (!has_content && message.role != "assistant") {
      return reader.Fail(param + ".content", "The message has no 'content'.",
                         "missing_required_parameter");
    }
    messages->push_back(std::move(message));
  }
  return true;
}

bool ParseStop(Reader& reader, const Json& value, std::vector<std::string>* stop) {
  if (value.is_string()) {
    stop->push_back(value.get<std::string>());
  } else if (value.is_array()) {
    if (value.size() > kMaxStopStrings) {
      return reader.Fail(
          "stop", absl::StrCat("At most ", kMaxStopStrings, " stop sequences are allowed, got ",
                               value.size(), "."));
    }
    for (size_t i = 0; i < value.size(); ++i) {
      std::string s;
      if (!reader.String(absl::StrCat("stop[", i, "]"), value[i], &s)) return false;
      stop->push_back(std::move(s));
    }
  } else {
    return reader.WrongType("stop", value, "a string or an array of strings");
  }
  for (const std::string& s : *stop) {
    if (s.empty()) return reader.Fail("stop", "A stop sequence is empty.");
  }
  return true;
}

// Fields OpenAI defines that this server accepts only at their neutral value.
bool CheckNeutral(Reader& reader, const std::string& key, const Json& value) {
  if (key == "presence_penalty" || key == "frequency_penalty") {
    double penalty = 0;
    if (!reader.Number(key, value, -2.0, 2.0, &penalty)) return false;
    if (penalty != 0) return reader.Fail(key, absl::StrCat("'", key, "' is not supported."));
    return true;
  }
  if (key == "logit_bias") {
    if (!value.is_object()) return reader.WrongType(key, value, "an object");
    if (!value.empty()) return reader.Fail(key, "'logit_bias' is not supported.");
    return true;
  }
  if (key == "best_of") {
    int64_t best_of = 0;
    if (!reader.Integer(key, value, 1, 20, &best_of)) return false;
    if (best_of != 1) return reader.Fail(key, "Only best_of=1 is supported.");
    return true;
  }
  if (key == "echo") {
    bool echo = false;
    if (!reader.Bool(key, value, &echo)) return false;
    if (echo) return reader.Fail(key, "'echo' is not supported.");
    return true;
  }
  if (key == "suffix") {
    std::string suffix;
    if (!reader.String(key, value, &suffix)) return false;
    if (!suffix.empty()) return reader.Fail(key, "'suffix' is not supported.");
    return true;
  }
  if (key == "tools" || key == "tool_choice") {
    if (value.is_array() && value.empty()) return true;
    if (value.is_string() && value == "none") return true;
    return reader.Fail(key, "Tool calls are not supported.");
  }
  if (key == "parallel_tool_calls") {
    bool ignored = false;
    return reader.Bool(key, value, &ignored);
  }
  if (key == "response_format") {
    if (!value.is_object()) return reader.WrongType(key, value, "an object");
    auto type = value.find("type");
    if (type == value.end() || *type != "text") {
      return reader.Fail(key, "Only response_format {\"type\": \"text\"} is supported.");
    }
    return true;
  }
  return true;
}

}  // namespace

bool ParseRequest(std::string_view body, Endpoint endpoint, Request* request, ApiError* error) {
  Reader reader(error);
  Json root;
  try {
    root = Json::parse(body.begin(), body.end());
  } catch (const Json::exception& e) {
    return reader.Fail("", absl::StrCat("The body is not valid JSON: ", e.what()), "invalid_json");
  }
  if (!root.is_object()) return reader.WrongType("body", root, "a JSON object");
  request->endpoint = endpoint;
  bool has_prompt = false, has_stream_options = false;
  std::optional<int64_t> max_tokens, max_completion_tokens;
  for (const auto& [key, value] : root.items()) {
    if (!KnownField(endpoint, key)) {
      return reader.Fail(key, absl::StrCat("Unrecognized request argument supplied: ", key),
                         "unknown_parameter");
    }
    if (value.is_null()) continue;  // an explicit null means "not given"
    int64_t integer = 0;
    double number = 0;
    if (key == "model") {
      if (!reader.String(key, value, &request->model)) return false;
    } else if (key == "prompt") {
      if (!ParsePrompt(reader, value, request)) return false;
      has_prompt = true;
    } else if (key == "messages") {
      if (!ParseMessages(reader, value, &request->messages)) return false;
      has_prompt = true;
    } else if (key == "max_tokens" || key == "max_completion_tokens") {
      if (!reader.Integer(key, value, 1, std::numeric_limits<int32_t>::max(), &integer)) {
        return false;
      }
      (key == "max_tokens" ? max_tokens : max_completion_tokens) = integer;
    } else if (key == "temperature") {
      if (!reader.Number(key, value, 0.0, 2.0, &number)) return false;
      request->temperature = static_cast<float>(number);
    } else if (key == "top_p") {
      if (!reader.Number(key, value, 0.0, 1.0, &number)) return false;
      if (number == 0) return reader.Fail(key, "'top_p' must be greater than 0.");
      request->top_p = static_cast<float>(number);
    } else if (key == "top_k") {
      if (!reader.Integer(key, value, -1, std::numeric_limits<int32_t>::max(), &integer)) {
        return false;
      }
      request->top_k = integer < 0 ? 0 : static_cast<int32_t>(integer);
    } else if (key == "n") {
      if (!reader.Integer(key, value, 1, 128, &integer)) return false;
      if (integer != 1) return reader.Fail(key, "Only n=1 is supported.");
    } else if (key == "stream") {
      if (!reader.Bool(key, value, &request->stream)) return false;
    } else if (key == "stream_options") {
      if (!value.is_object()) return reader.WrongType(key, value, "an object");
      for (const auto& [option, option_value] : value.items()) {
        if (option != "include_usage") {
          return reader.Fail("stream_options." + option,
                             absl::StrCat("Unrecognized stream option: ", option),
                             "unknown_parameter");
        }
        if (option_value.is_null()) continue;
        if (!reader.Bool("stream_options.include_usage", option_value, &request->include_usage)) {
          return false;
        }
      }
      has_stream_options = true;
    } else if (key == "stop") {
      if (!ParseStop(reader, value, &request->stop)) return false;
    } else if (key == "seed") {
      uint64_t seed = 0;
      if (!reader.Seed(key, value, &seed)) return false;
      request->seed = seed;
    } else if (key == "user") {
      if (!reader.String(key, value, &request->user)) return false;
    } else if (key == "cache_salt") {
      if (!reader.String(key, value, &request->cache_salt)) return false;
    } else if (key == "ignore_eos") {
      if (!reader.Bool(key, value, &request->ignore_eos)) return false;
    } else if (key == "logprobs" && endpoint == Endpoint::kCompletions) {
      // The number of most likely alternatives to list besides the chosen token.
      if (!reader.Integer(key, value, 0, 20, &integer)) return false;
      if (integer > 0) {
        return reader.Fail(key,
                           "Only logprobs=0 is supported: the chosen tokens' log-probabilities, "
                           "without alternatives.");
      }
      request->logprobs = true;
    } else if (key == "logprobs") {
      if (!reader.Bool(key, value, &request->logprobs)) return false;
    } else if (key == "top_logprobs") {
      if (!reader.Integer(key, value, 0, 20, &integer)) return false;
      if (integer > 0) {
        return reader.Fail(key,
                           "Only top_logprobs=0 is supported: the chosen tokens' "
                           "log-probabilities, without alternatives.");
      }
    } else if (!CheckNeutral(reader, key, value)) {
      return false;
    }
  }
  if (request->model.empty()) {
    return reader.Fail("model", "You must provide a model parameter.",
                       "missing_required_parameter");
  }
  if (!has_prompt) {
    const char* field = endpoint == Endpoint::kCompletions ? "prompt" : "messages";
    return reader.Fail(field, absl::StrCat("Missing required parameter: '", field, "'."),
                       "missing_required_parameter");
  }
  if (has_stream_options && !request->stream) {
    return reader.Fail("stream_options",
                       "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
  }
  if (max_completion_tokens) {
    request->max_tokens = static_cast<int32_t>(*max_completion_tokens);
  } else if (max_tokens) {
    request->max_tokens = static_cast<int32_t>(*max_tokens);
  }
  return true;
}

pb::GenerateRequest ToGenerateRequest(const Request& request, const std::string* prompt_text,
                                      bool add_special_tokens, int32_t max_tokens) {
  pb::GenerateRequest out;
  if (prompt_text != nullptr) {
    out.set_text(*prompt_text);
    out.set_add_special_tokens(add_special_tokens);
  } else {
    out.mutable_token_ids()->mutable_ids()->Assign(request.prompt_ids.begin(),
                                                   request.prompt_ids.end());
  }
  pb::SamplingParams* sampling = out.mutable_sampling();
  sampling->set_temperature(request.temperature);
  sampling->set_top_p(request.top_p);
  sampling->set_top_k(request.top_k);
  if (request.seed) sampling->set_seed(*request.seed);
  sampling->set_max_tokens(max_tokens);
  for (const std::string& stop : request.stop) sampling->add_stop(stop);
  sampling->set_ignore_eos(request.ignore_eos);
  sampling->set_logprobs(request.logprobs);
  out.set_cache_salt(request.cache_salt);
  return out;
}

}  // namespace kvc::router::openai
