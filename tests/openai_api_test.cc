// The router's OpenAI-compatible HTTP API, over real HTTP on loopback, against a real router
// and tiny cpu workers: streaming and whole responses agree, usage adds up, stop strings, seeds
// and token limits do what they say, bad requests (garbage included) get OpenAI's error shape
// with the right status and never a 5xx, auth, CORS, limits, the default budget without a
// tokenizer or with a small KV pool, the real Llama-3 chat template's prompt length, and a
// client that leaves has its request cancelled on the worker.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kvcluster/v1/kvcluster.grpc.pb.h"
#include "tests/util/cluster.h"

namespace kvc {
namespace {

namespace pb = ::kvcluster::v1;
using Json = nlohmann::json;

struct Reply {
  int status = 0;
  Json body;
  std::string raw;
  httplib::Headers headers;
};

// A server-sent-event stream: its JSON events and whether it ended with [DONE].
struct Events {
  std::vector<Json> events;
  bool done = false;
};

Events ParseEvents(const std::string& raw) {
  Events out;
  for (absl::string_view event : absl::StrSplit(raw, "\n\n", absl::SkipEmpty())) {
    EXPECT_TRUE(absl::ConsumePrefix(&event, "data: ")) << "not an SSE data line: " << event;
    EXPECT_FALSE(out.done) << "an event after [DONE]";
    if (event == "[DONE]") {
      out.done = true;
      continue;
    }
    Json json = Json::parse(event, nullptr, false);
    EXPECT_FALSE(json.is_discarded()) << "not JSON: " << event;
    out.events.push_back(std::move(json));
  }
  return out;
}

// Complete events in a stream read so far (the last one may still be arriving).
size_t CompleteEvents(const std::string& raw) {
  size_t n = 0;
  for (size_t at = raw.find("\n\n"); at != std::string::npos; at = raw.find("\n\n", at + 2)) ++n;
  return n;
}

// Every error answers {"error": {"message", "type", "param", "code"}}.
void ExpectErrorShape(const Reply& reply, const std::string& what) {
  ASSERT_TRUE(reply.body.is_object()) << what << ": " << reply.raw;
  ASSERT_TRUE(reply.body.contains("error")) << what << ": " << reply.raw;
  const Json& error = reply.body["error"];
  EXPECT_TRUE(error["message"].is_string() && !error["message"].get<std::string>().empty()) << what;
  EXPECT_TRUE(error["type"].is_string()) << what;
  EXPECT_TRUE(error.contains("param")) << what;
  EXPECT_TRUE(error.contains("code")) << what;
}

std::string TokenIds(int n, int seed) {
  std::string ids;
  for (int i = 0; i < n; ++i) absl::StrAppend(&ids, i ? "," : "", (seed * 131 + i * 17) % 500);
  return absl::StrCat("[", ids, "]");
}

class OpenAiApiTest : public ::testing::Test {
 protected:
  void Start(testing::ClusterOptions options = {.num_workers = 1}) {
    ASSERT_TRUE(cluster_.Start(dir_.path(), options).ok()) << cluster_.Logs();
    num_workers_ = options.num_workers;
    ASSERT_TRUE(absl::SimpleAtoi(
        absl::StripAsciiWhitespace(testing::ReadFile(dir_.path() + "/router-http.port")), &port_));
    WaitForHealth(200);
  }

  void WaitForHealth(int status) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (Get("/health").status == status) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "/health never answered " << status << cluster_.Logs();
  }

  httplib::Client Client() const {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(std::chrono::seconds(60));
    return client;
  }

  static Reply ToReply(const httplib::Result& result) {
    Reply reply;
    if (!result) {
      ADD_FAILURE() << "HTTP request failed: " << httplib::to_string(result.error());
      return reply;
    }
    reply.status = result->status;
    reply.raw = result->body;
    reply.headers = result->headers;
    reply.body = Json::parse(result->body, nullptr, false);
    return reply;
  }

  Reply Get(const std::string& path, const httplib::Headers& headers = {}) const {
    httplib::Client client = Client();
    return ToReply(client.Get(path.c_str(), headers));
  }

  Reply Post(const std::string& path, const std::string& body,
             const httplib::Headers& headers = {}) const {
    httplib::Client client = Client();
    return ToReply(client.Post(path.c_str(), headers, body, "application/json"));
  }

  // POSTs and reads the SSE stream; `keep_reading` (optional) sees the text so far and may
  // stop reading, which closes the connection.
  Reply PostStream(const std::string& path, const std::string& body,
                   const std::function<bool(const std::string&)>& keep_reading = nullptr) const {
    httplib::Client client = Client();
    httplib::Request request;
    request.method = "POST";
    request.path = path;
    request.body = body;
    request.set_header("Content-Type", "application/json");
    Reply reply;
    request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      reply.raw.append(data, size);
      return keep_reading == nullptr || keep_reading(reply.raw);
    };
    httplib::Result result = client.send(request);
    if (result) {
      reply.status = result->status;
      reply.headers = result->headers;
    }
    return reply;
  }

  Json Completion(const std::string& body) {
    const Reply reply = Post("/v1/completions", body);
    EXPECT_EQ(reply.status, 200) << reply.raw;
    return reply.body;
  }

  // A number from /metrics, e.g. "kvc_router_requests_total{worker=\"total\"}".
  double Metric(const std::string& series) {
    const Reply metrics = Get("/metrics");
    for (absl::string_view line : absl::StrSplit(metrics.raw, '\n')) {
      if (absl::ConsumePrefix(&line, series + " ")) {
        double value = 0;
        EXPECT_TRUE(absl::SimpleAtod(line, &value));
        return value;
      }
    }
    ADD_FAILURE() << series << " not in /metrics";
    return -1;
  }

  // Waits until worker 0 runs no request; false when it still does after `timeout`.
  bool WorkerIdle(absl::Duration timeout) {
    auto worker = pb::Worker::NewStub(
        grpc::CreateChannel(cluster_.worker_address(0), grpc::InsecureChannelCredentials()));
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      grpc::ClientContext context;
      pb::WorkerLoad load;
      if (worker->GetLoad(&context, {}, &load).ok() && load.running_requests() == 0 &&
          load.waiting_requests() == 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  testing::TempDir dir_;
  testing::Cluster cluster_;
  int port_ = 0;
  int num_workers_ = 0;
};

TEST_F(OpenAiApiTest, StreamingChunksConcatenateToTheWholeResponse) {
  Start({.num_workers = 2});
  for (const std::string& prompt :
       {std::string("\"The quick brown fox jumps over\""), TokenIds(40, 3)}) {
    const std::string request =
        absl::StrCat(R"({"model": "tiny", "prompt": )", prompt,
                     R"(, "max_tokens": 24, "temperature": 0, "ignore_eos": true, "logprobs": 0)");
    const Json whole = Completion(request + "}");
    ASSERT_EQ(whole["object"], "text_completion") << whole.dump();
    EXPECT_TRUE(absl::StartsWith(whole["id"].get<std::string>(), "cmpl-"));
    EXPECT_EQ(whole["model"], "tiny");
    EXPECT_TRUE(whole["created"].is_number_integer());
    const Json& choice = whole["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "length");
    const Json& usage = whole["usage"];
    EXPECT_EQ(usage["completion_tokens"], 24);
    EXPECT_EQ(usage["total_tokens"].get<int>(),
              usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());
    EXPECT_TRUE(usage["prompt_tokens_details"]["cached_tokens"].is_number_integer());
    if (prompt[0] == '[') {
      EXPECT_EQ(usage["prompt_tokens"], 40);
    }
    // logprobs=0: one chosen-token log-probability per generated token.
    ASSERT_EQ(choice["logprobs"]["token_logprobs"].size(), 24u);
    for (const Json& lp : choice["logprobs"]["token_logprobs"]) EXPECT_LE(lp.get<double>(), 0.0);

    const Reply streamed =
        PostStream("/v1/completions",
                   request + R"(, "stream": true, "stream_options": {"include_usage": true}})");
    ASSERT_EQ(streamed.status, 200) << streamed.raw;
    EXPECT_EQ(streamed.headers.find("Content-Type")->second, "text/event-stream");
    const Events events = ParseEvents(streamed.raw);
    EXPECT_TRUE(events.done);
    ASSERT_GE(events.events.size(), 3u);
    std::string text;
    int logprobs = 0;
    std::string finish;
    for (size_t i = 0; i + 1 < events.events.size(); ++i) {
      const Json& chunk = events.events[i];
      EXPECT_EQ(chunk["id"], events.events[0]["id"]);
      EXPECT_EQ(chunk["object"], "text_completion");
      EXPECT_TRUE(chunk["usage"].is_null());
      text += chunk["choices"][0]["text"].get<std::string>();
      if (!chunk["choices"][0]["logprobs"].is_null()) {
        logprobs += chunk["choices"][0]["logprobs"]["token_logprobs"].size();
      }
      if (!chunk["choices"][0]["finish_reason"].is_null()) {
        finish = chunk["choices"][0]["finish_reason"];
      }
    }
    EXPECT_EQ(text, choice["text"].get<std::string>());
    EXPECT_EQ(logprobs, 24);
    EXPECT_EQ(finish, "length");
    const Json& last = events.events.back();
    EXPECT_TRUE(last["choices"].empty());
    EXPECT_EQ(last["usage"]["prompt_tokens"], usage["prompt_tokens"]);
    EXPECT_EQ(last["usage"]["completion_tokens"], 24);
    EXPECT_EQ(last["usage"]["total_tokens"], usage["total_tokens"]);
  }
  // The HTTP path counts in the router's statistics like the gRPC path: four requests routed,
  // none failed, none left in flight.
  EXPECT_EQ(Metric("kvc_router_requests_total{worker=\"total\"}"), 4);
  EXPECT_EQ(Metric("kvc_router_failed_requests_total{worker=\"total\"}"), 0);
  EXPECT_EQ(Metric("kvc_router_active_requests{worker=\"total\"}"), 0);
  EXPECT_EQ(Metric("kvc_router_http_requests_in_flight"), 0);
}

// A chat template in the manner of Llama 3's: BOS, each message under a role header and closed
// with EOS, then the assistant's header; roles must alternate after an optional system message.
constexpr char kChatTemplate[] =
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('The system message must come first.') }}{% endif %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] | trim }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

TEST_F(OpenAiApiTest, ChatStreamsTheWholeAnswerAndARepeatHitsTheCache) {
  const std::string template_file = dir_.path() + "/chat.jinja";
  std::ofstream(template_file) << kChatTemplate;
  Start({.num_workers = 1, .router_flags = {"--chat-template", template_file}});
  std::string system = "You are a careful assistant.";
  for (int i = 0; i < 12; ++i) absl::StrAppend(&system, " Rule ", i, ": answer briefly.");
  const std::string request =
      absl::StrCat(R"({"model": "tiny", "messages": [{"role": "system", "content": ")", system,
                   R"("}, {"role": "user", "content": "What is the capital of France?"}],
          "max_tokens": 20, "temperature": 0, "ignore_eos": true, "logprobs": true)");

  const Reply first = Post("/v1/chat/completions", request + "}");
  ASSERT_EQ(first.status, 200) << first.raw;
  EXPECT_EQ(first.body["object"], "chat.completion");
  EXPECT_TRUE(absl::StartsWith(first.body["id"].get<std::string>(), "chatcmpl-"));
  const Json& message = first.body["choices"][0]["message"];
  EXPECT_EQ(message["role"], "assistant");
  EXPECT_EQ(first.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(first.body["choices"][0]["logprobs"]["content"].size(), 20u);
  const int prompt_tokens = first.body["usage"]["prompt_tokens"];
  EXPECT_GT(prompt_tokens, 64);
  EXPECT_EQ(first.body["usage"]["completion_tokens"], 20);

  // The same conversation again: its prompt's full blocks (all but the one holding the last
  // prompt token, which the worker always recomputes) come from the worker's cache.
  const Reply second = Post("/v1/chat/completions", request + "}");
  ASSERT_EQ(second.status, 200) << second.raw;
  EXPECT_EQ(second.body["choices"][0]["message"]["content"], message["content"]);
  EXPECT_EQ(second.body["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(second.body["usage"]["prompt_tokens_details"]["cached_tokens"],
            (prompt_tokens - 1) / 16 * 16);

  const Reply streamed =
      PostStream("/v1/chat/completions",
                 request + R"(, "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_EQ(streamed.status, 200) << streamed.raw;
  const Events events = ParseEvents(streamed.raw);
  EXPECT_TRUE(events.done);
  ASSERT_GE(events.events.size(), 3u);
  EXPECT_EQ(events.events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events.events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  size_t logprobs = 0;
  for (size_t i = 0; i + 1 < events.events.size(); ++i) {
    const Json& choice = events.events[i]["choices"][0];
    if (choice["delta"].contains("content")) content += choice["delta"]["content"];
    if (!choice["logprobs"].is_null()) logprobs += choice["logprobs"]["content"].size();
  }
  EXPECT_EQ(content, message["content"].get<std::string>());
  EXPECT_EQ(logprobs, 20u);
  EXPECT_EQ(events.events.back()["usage"], second.body["usage"]);

  // The template's own objection is the client's error.
  const Reply refused = Post("/v1/chat/completions", R"({"model": "tiny", "messages": [
      {"role": "user", "content": "hi"}, {"role": "system", "content": "late"}]})");
  EXPECT_EQ(refused.status, 400) << refused.raw;
  ExpectErrorShape(refused, "template error");
  EXPECT_TRUE(
      absl::StrContains(refused.body["error"]["message"].get<std::string>(), "must come first"))
      << refused.raw;
}

TEST_F(OpenAiApiTest, BadRequestsGetTheirStatusAndOpenAisErrorShape) {
  Start({.num_workers = 1, .router_flags = {"--http-max-body", "64KiB"}});
  struct Case {
    const char* path;
    std::string body;
    int status;
    const char* code;  // nullptr: not checked
  };
  const std::string prompt = R"("model": "tiny", "prompt": "hello")";
  const std::vector<Case> cases = {
      {"/v1/completions", "{\"model\": ", 400, "invalid_json"},
      {"/v1/completions", "[1, 2]", 400, "invalid_type"},
      {"/v1/completions", "{" + prompt + ", \"bogus\": 1}", 400, "unknown_parameter"},
      {"/v1/completions", "{" + prompt + ", \"max_tokens\": \"8\"}", 400, "invalid_type"},
      {"/v1/completions", "{" + prompt + ", \"temperature\": 9}", 400, "invalid_value"},
      {"/v1/completions", "{" + prompt + ", \"n\": 3}", 400, "invalid_value"},
      {"/v1/completions", "{" + prompt + ", \"stream_options\": {\"include_usage\": true}}", 400,
       "invalid_value"},
      {"/v1/completions", R"({"prompt": "hello"})", 400, "missing_required_parameter"},
      {"/v1/completions", R"({"model": "tiny"})", 400, "missing_required_parameter"},
      {"/v1/completions", R"({"model": "other", "prompt": "hello"})", 404, "model_not_found"},
      {"/v1/chat/completions", R"({"model": "tiny", "messages": [{"role": "user"}]})", 400,
       "missing_required_parameter"},
      // Past the workers' vocabulary: the worker refuses it (INVALID_ARGUMENT).
      {"/v1/completions", R"({"model": "tiny", "prompt": [1, 2, 70000]})", 400, nullptr},
      // The tiny model's context is 4096 tokens.
      {"/v1/completions", absl::StrCat(R"({"model": "tiny", "prompt": )", TokenIds(4100, 1), "}"),
       413, "context_length_exceeded"},
      {"/v1/completions",
       absl::StrCat(R"({"model": "tiny", "prompt": )", TokenIds(100, 1),
                    R"(, "max_tokens": 4000})"),
       400, "context_length_exceeded"},
      {"/v1/completions",
       absl::StrCat(R"({"model": "tiny", "prompt": ")", std::string(70 << 10, 'a'), "\"}"), 413,
       "request_too_large"},
      {"/v1/nothing", "{}", 404, nullptr},
  };
  for (const Case& c : cases) {
    const std::string what = absl::StrCat(c.path, " ", c.body.substr(0, 120));
    const Reply reply = Post(c.path, c.body);
    EXPECT_EQ(reply.status, c.status) << what << " -> " << reply.raw;
    ExpectErrorShape(reply, what);
    if (c.code != nullptr && reply.body.is_object()) {
      EXPECT_EQ(reply.body["error"]["code"], c.code) << what << " -> " << reply.raw;
    }
  }
  // The tiny model has no chat template: chat is refused precisely, never a 500.
  const Reply chat = Post("/v1/chat/completions",
                          R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})");
  EXPECT_EQ(chat.status, 400) << chat.raw;
  ExpectErrorShape(chat, "chat without a template");
  // Still serving.
  EXPECT_EQ(
      Completion(
          R"({"model": "tiny", "prompt": "hello", "max_tokens": 3})")["usage"]["completion_tokens"]
              .get<int>() > 0,
      true);
  EXPECT_EQ(Get("/health").status, 200);
}

TEST_F(OpenAiApiTest, NoReadyWorkerIs503) {
  Start();
  cluster_.worker(0).Kill();
  WaitForHealth(503);
  const Reply reply = Post("/v1/completions", R"({"model": "tiny", "prompt": "hi"})");
  EXPECT_EQ(reply.status, 503) << reply.raw;
  ExpectErrorShape(reply, "no worker");
  const Reply streamed =
      Post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "stream": true})");
  EXPECT_EQ(streamed.status, 503) << streamed.raw;
}

TEST_F(OpenAiApiTest, ApiKeyGuardsTheApiOnly) {
  Start({.num_workers = 1, .router_flags = {"--api-key", "sesame"}});
  const std::string body = R"({"model": "tiny", "prompt": "hi", "max_tokens": 2})";
  const Reply missing = Post("/v1/completions", body);
  EXPECT_EQ(missing.status, 401);
  ExpectErrorShape(missing, "no key");
  EXPECT_EQ(missing.body["error"]["code"], "invalid_api_key");
  EXPECT_EQ(Get("/v1/models", {{"Authorization", "Bearer wrong"}}).status, 401);
  EXPECT_EQ(Get("/v1/models", {{"Authorization", "sesame"}}).status, 401);
  EXPECT_EQ(Get("/v1/models", {{"Authorization", "Bearer sesame"}}).status, 200);
  EXPECT_EQ(Post("/v1/completions", body, {{"Authorization", "Bearer sesame"}}).status, 200);
  // The scheme is case-insensitive, and one or more spaces end it (RFC 7235); the key is not.
  for (const char* header : {"bearer sesame", "BEARER sesame", "bEaReR sesame", "Bearer  sesame"}) {
    EXPECT_EQ(Get("/v1/models", {{"Authorization", header}}).status, 200) << header;
  }
  for (const char* header :
       {"Bearer SESAME", "Bearer", "Bearer ", "Bearersesame", "Basic sesame", "Bearer sesame2"}) {
    EXPECT_EQ(Get("/v1/models", {{"Authorization", header}}).status, 401) << header;
  }
  EXPECT_EQ(Get("/health").status, 200);
  EXPECT_EQ(Get("/metrics").status, 200);
  // No CORS unless asked for.
  EXPECT_FALSE(Get("/v1/models", {{"Authorization", "Bearer sesame"}, {"Origin", "http://x.test"}})
                   .headers.count("Access-Control-Allow-Origin"));
}

TEST_F(OpenAiApiTest, ApiKeyFromTheEnvironment) {
  setenv("KVC_API_KEY", "from-env", 1);
  Start();
  unsetenv("KVC_API_KEY");
  EXPECT_EQ(Get("/v1/models").status, 401);
  EXPECT_EQ(Get("/v1/models", {{"Authorization", "Bearer from-env"}}).status, 200);
}

TEST_F(OpenAiApiTest, ModelsAliasesAndCors) {
  Start(
      {.num_workers = 1,
       .router_flags = {"--model-alias", "tiny-chat,alias2", "--cors-origins", "http://ok.test"}});
  const Reply models = Get("/v1/models");
  ASSERT_EQ(models.status, 200) << models.raw;
  EXPECT_EQ(models.body["object"], "list");
  ASSERT_EQ(models.body["data"].size(), 3u);
  for (const Json& model : models.body["data"]) {
    EXPECT_EQ(model["object"], "model");
    EXPECT_EQ(model["owned_by"], "kvcluster");
    EXPECT_TRUE(model["created"].is_number_integer());
    EXPECT_EQ(model["root"], "tiny");
  }
  EXPECT_EQ(models.body["data"][0]["id"], "tiny");
  EXPECT_EQ(models.body["data"][0]["max_model_len"], 4096);
  EXPECT_EQ(Get("/v1/models/alias2").body["id"], "alias2");
  const Reply unknown = Get("/v1/models/nope");
  EXPECT_EQ(unknown.status, 404);
  ExpectErrorShape(unknown, "unknown model");
  EXPECT_EQ(Completion(R"({"model": "tiny-chat", "prompt": "hi", "max_tokens": 2})")["model"],
            "tiny-chat");

  // A browser's preflight from an allowed origin, then the request itself.
  httplib::Client client = Client();
  auto preflight = client.Options(
      "/v1/completions", {{"Origin", "http://ok.test"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(preflight);
  EXPECT_EQ(preflight->status, 204);
  EXPECT_EQ(preflight->get_header_value("Access-Control-Allow-Origin"), "http://ok.test");
  EXPECT_TRUE(absl::StrContains(preflight->get_header_value("Access-Control-Allow-Headers"),
                                "Authorization"));
  const Reply allowed = Get("/v1/models", {{"Origin", "http://ok.test"}});
  EXPECT_EQ(allowed.headers.find("Access-Control-Allow-Origin")->second, "http://ok.test");
  EXPECT_FALSE(Get("/v1/models", {{"Origin", "http://evil.test"}})
                   .headers.count("Access-Control-Allow-Origin"));
}

TEST_F(OpenAiApiTest, ClientDisconnectCancelsTheWorkerRequest) {
  // Without a KV cache each step recomputes the sequence: 3000 tokens would take the worker
  // tens of seconds, so an idle worker within seconds means the request was cancelled.
  Start({.num_workers = 1, .worker_flags = {"--no-kv-cache"}});
  const std::string body =
      R"({"model": "tiny", "prompt": "hello", "max_tokens": 3000, "ignore_eos": true)";
  // Streaming: the client reads a few chunks, then closes the connection.
  const Reply streamed = PostStream("/v1/completions", body + R"(, "stream": true})",
                                    [](const std::string& raw) { return CompleteEvents(raw) < 3; });
  EXPECT_EQ(streamed.status, 0) << "the client cancelled, so no complete response";
  EXPECT_GE(CompleteEvents(streamed.raw), 3u);
  EXPECT_TRUE(WorkerIdle(absl::Seconds(5))) << "the worker still runs the abandoned request";
  EXPECT_EQ(Metric("kvc_router_active_requests{worker=\"total\"}"), 0);

  // Not streaming: the client gives up waiting for the whole response.
  {
    httplib::Client client("127.0.0.1", port_);
    client.set_read_timeout(std::chrono::milliseconds(500));
    auto result = client.Post("/v1/completions", body + "}", "application/json");
    EXPECT_FALSE(result) << "answered within 500 ms?";
  }
  EXPECT_TRUE(WorkerIdle(absl::Seconds(5))) << "the worker still runs the abandoned request";
  EXPECT_EQ(Metric("kvc_router_active_requests{worker=\"total\"}"), 0);
  EXPECT_EQ(Metric("kvc_router_http_requests_in_flight"), 0);
  EXPECT_EQ(Metric("kvc_router_failed_requests_total{worker=\"total\"}"), 0);
  // And it keeps serving.
  EXPECT_EQ(
      Completion(
          R"({"model": "tiny", "prompt": "hi", "max_tokens": 2})")["usage"]["completion_tokens"],
      2);
}

TEST_F(OpenAiApiTest, WorkerLostMidStreamEndsTheStreamWithAnError) {
  Start({.num_workers = 1, .worker_flags = {"--no-kv-cache"}});
  bool killed = false;
  const Reply streamed =
      PostStream("/v1/completions",
                 R"({"model": "tiny", "prompt": "hello", "max_tokens": 3000, "ignore_eos": true,
          "stream": true})",
                 [&](const std::string& raw) {
                   if (!killed && CompleteEvents(raw) >= 3) {
                     cluster_.worker(0).Kill();
                     killed = true;
                   }
                   return true;
                 });
  ASSERT_TRUE(killed);
  EXPECT_EQ(streamed.status, 200);  // the status went out with the first chunk
  const Events events = ParseEvents(streamed.raw);
  EXPECT_TRUE(events.done);
  ASSERT_FALSE(events.events.empty());
  const Json& last = events.events.back();
  ASSERT_TRUE(last.contains("error")) << last.dump();
  EXPECT_TRUE(absl::StrContains(last["error"]["message"].get<std::string>(), "after streaming"))
      << last.dump();
  EXPECT_EQ(Metric("kvc_router_http_requests_in_flight"), 0);
}

TEST_F(OpenAiApiTest, ShutdownEndsStreamsWellFormed) {
  Start({.num_workers = 1, .worker_flags = {"--no-kv-cache"}});
  int exit_status = -2;
  std::thread stopper;
  const Reply streamed = PostStream(
      "/v1/completions",
      R"({"model": "tiny", "prompt": "hello", "max_tokens": 3000, "ignore_eos": true,
          "stream": true})",
      [&](const std::string& raw) {
        if (!stopper.joinable() && CompleteEvents(raw) >= 2) {
          // SIGTERM, then wait for the exit.
          stopper = std::thread([&] { exit_status = cluster_.router().Stop(absl::Seconds(10)); });
        }
        return true;
      });
  ASSERT_TRUE(stopper.joinable());
  stopper.join();
  EXPECT_EQ(exit_status, 0) << "the router did not exit cleanly on SIGTERM";
  const Events events = ParseEvents(streamed.raw);
  EXPECT_TRUE(events.done);
  ASSERT_FALSE(events.events.empty());
  EXPECT_TRUE(events.events.back().contains("error")) << events.events.back().dump();
}

TEST_F(OpenAiApiTest, OverTheRequestLimitIs429) {
  Start({.num_workers = 1,
         .worker_flags = {"--no-kv-cache"},
         .router_flags = {"--http-max-requests", "1"}});
  std::atomic<bool> release{false};
  std::thread long_request([&] {
    PostStream("/v1/completions",
               R"({"model": "tiny", "prompt": "x", "max_tokens": 3000, "ignore_eos": true,
                   "stream": true})",
               [&](const std::string&) { return !release.load(); });
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Metric("kvc_router_http_requests_in_flight") < 1 && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const Reply refused = Post("/v1/completions", R"({"model": "tiny", "prompt": "hi"})");
  EXPECT_EQ(refused.status, 429) << refused.raw;
  ExpectErrorShape(refused, "over the limit");
  release = true;
  long_request.join();
  EXPECT_TRUE(WorkerIdle(absl::Seconds(5)));
  const absl::Time drained = absl::Now() + absl::Seconds(5);
  while (Metric("kvc_router_http_requests_in_flight") > 0 && absl::Now() < drained) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 2})").status,
            200);
}

// Greedy text with and without a stop string taken from it: the text ends where the stop string
// first starts, and the choice says "stop".
TEST_F(OpenAiApiTest, StopStringCutsTheText) {
  Start();
  const std::string request =
      R"({"model": "tiny", "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0,
          "ignore_eos": true)";
  const Json free = Completion(request + "}");
  const std::string text = free["choices"][0]["text"];
  ASSERT_EQ(free["choices"][0]["finish_reason"], "length") << free.dump();
  // Three ASCII characters from the second half of the text, as the stop string.
  std::string stop;
  for (size_t at = text.size() / 2; at + 3 <= text.size() && stop.empty(); ++at) {
    const std::string candidate = text.substr(at, 3);
    if (std::all_of(candidate.begin(), candidate.end(),
                    [](char c) { return c >= ' ' && c <= '~' && c != '"' && c != '\\'; })) {
      stop = candidate;
    }
  }
  ASSERT_FALSE(stop.empty()) << "no ASCII run to stop at in: " << Json(text).dump();
  const std::string expected = text.substr(0, text.find(stop));

  for (const std::string& stop_field :
       {absl::StrCat("\"", stop, "\""), absl::StrCat("[\"\\u0001never\", \"", stop, "\"]")}) {
    const Json cut = Completion(absl::StrCat(request, R"(, "stop": )", stop_field, "}"));
    EXPECT_EQ(cut["choices"][0]["text"], expected) << "stop " << stop_field << ": " << cut.dump();
    EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop") << cut.dump();
    EXPECT_LT(cut["usage"]["completion_tokens"].get<int>(), 40) << cut.dump();
  }
  // Streamed, the chunks add up to the same cut text.
  const Reply streamed = PostStream(
      "/v1/completions", absl::StrCat(request, R"(, "stop": ")", stop, R"(", "stream": true})"));
  ASSERT_EQ(streamed.status, 200) << streamed.raw;
  const Events events = ParseEvents(streamed.raw);
  EXPECT_TRUE(events.done);
  std::string joined, finish;
  for (const Json& event : events.events) {
    joined += event["choices"][0]["text"].get<std::string>();
    if (!event["choices"][0]["finish_reason"].is_null())
      finish = event["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(joined, expected);
  EXPECT_EQ(finish, "stop");
}

// Sampling at temperature 2 on the tiny model's nearly flat distribution: the same seed gives
// the same text, other seeds (among them seeds past 2^63, which once all became 2^63 - 1) give
// other texts.
TEST_F(OpenAiApiTest, SeedMakesSamplingRepeatable) {
  Start();
  auto text = [&](const std::string& seed) {
    const Json reply = Completion(absl::StrCat(
        R"({"model": "tiny", "prompt": "hello", "max_tokens": 24, "temperature": 2,
            "ignore_eos": true, "seed": )",
        seed, "}"));
    EXPECT_EQ(reply["usage"]["completion_tokens"], 24) << reply.dump();
    return reply["choices"][0]["text"].get<std::string>();
  };
  const std::vector<std::string> seeds = {"7",
                                          "8",
                                          "9223372036854775807",
                                          "9223372036854775808",
                                          "9223372036854775809",
                                          "18446744073709551615"};
  std::vector<std::string> texts;
  for (const std::string& seed : seeds) {
    texts.push_back(text(seed));
    EXPECT_EQ(text(seed), texts.back()) << "seed " << seed << " sampled another text";
  }
  for (size_t i = 0; i < seeds.size(); ++i) {
    for (size_t j = i + 1; j < seeds.size(); ++j) {
      EXPECT_NE(texts[i], texts[j]) << "seeds " << seeds[i] << " and " << seeds[j];
    }
  }
}

TEST_F(OpenAiApiTest, MaxCompletionTokensLimitsChat) {
  const std::string template_file = dir_.path() + "/chat.jinja";
  std::ofstream(template_file) << kChatTemplate;
  Start({.num_workers = 1, .router_flags = {"--chat-template", template_file}});
  const std::string request =
      R"({"model": "tiny", "messages": [{"role": "user", "content": "Count to ten."}],
          "ignore_eos": true, "temperature": 0)";
  for (const std::string limits :
       {R"("max_completion_tokens": 5)", R"("max_completion_tokens": 5, "max_tokens": 9)",
        R"("max_tokens": 9, "max_completion_tokens": 5)"}) {
    const Reply reply = Post("/v1/chat/completions", absl::StrCat(request, ", ", limits, "}"));
    ASSERT_EQ(reply.status, 200) << limits << ": " << reply.raw;
    EXPECT_EQ(reply.body["usage"]["completion_tokens"], 5) << limits;
    EXPECT_EQ(reply.body["choices"][0]["finish_reason"], "length") << limits;
  }
  const Reply streamed =
      PostStream("/v1/chat/completions", request + R"(, "max_completion_tokens": 3, "stream": true,
                   "stream_options": {"include_usage": true}})");
  ASSERT_EQ(streamed.status, 200) << streamed.raw;
  const Events events = ParseEvents(streamed.raw);
  ASSERT_FALSE(events.events.empty());
  EXPECT_EQ(events.events.back()["usage"]["completion_tokens"], 3) << streamed.raw;
}

// Without stream_options.include_usage (absent, or false) no chunk carries usage: every chunk
// has a choice and a null usage, and the stream ends with a finish_reason, then [DONE].
TEST_F(OpenAiApiTest, StreamWithoutIncludeUsageSendsNoUsageChunk) {
  const std::string template_file = dir_.path() + "/chat.jinja";
  std::ofstream(template_file) << kChatTemplate;
  Start({.num_workers = 1, .router_flags = {"--chat-template", template_file}});
  const std::string completion =
      R"({"model": "tiny", "prompt": "hi", "max_tokens": 6, "ignore_eos": true, "stream": true)";
  const std::string chat =
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6,
          "ignore_eos": true, "stream": true)";
  struct Case {
    const char* path;
    std::string body;
  };
  const std::vector<Case> cases = {
      {"/v1/completions", completion + "}"},
      {"/v1/completions", completion + R"(, "stream_options": {"include_usage": false}})"},
      {"/v1/completions", completion + R"(, "stream_options": {}})"},
      {"/v1/chat/completions", chat + "}"},
      {"/v1/chat/completions", chat + R"(, "stream_options": {"include_usage": false}})"},
  };
  for (const Case& c : cases) {
    const std::string what = absl::StrCat(c.path, " ", c.body);
    const Reply streamed = PostStream(c.path, c.body);
    ASSERT_EQ(streamed.status, 200) << what << ": " << streamed.raw;
    EXPECT_FALSE(absl::StrContains(streamed.raw, "prompt_tokens")) << what << ": " << streamed.raw;
    const Events events = ParseEvents(streamed.raw);
    EXPECT_TRUE(events.done) << what;
    ASSERT_FALSE(events.events.empty()) << what;
    for (const Json& event : events.events) {
      EXPECT_TRUE(!event.contains("usage") || event["usage"].is_null()) << what << ": " << event;
      EXPECT_EQ(event["choices"].size(), 1u) << what << ": " << event;
    }
    EXPECT_EQ(events.events.back()["choices"][0]["finish_reason"], "length") << what;
  }
}

// Bodies no client should send: each is answered 4xx in OpenAI's error shape (never a 5xx, a
// dropped connection or a crash), and the server serves normally afterwards.
TEST_F(OpenAiApiTest, GarbageBodiesNeverGet5xx) {
  const std::string template_file = dir_.path() + "/chat.jinja";
  std::ofstream(template_file) << kChatTemplate;
  Start({.num_workers = 1, .router_flags = {"--chat-template", template_file}});
  const std::string deep_arrays = std::string(100000, '[') + std::string(100000, ']');
  const std::string deep_objects = [] {
    std::string json;
    for (int i = 0; i < 50000; ++i) json += R"({"a":)";
    json += "1";
    for (int i = 0; i < 50000; ++i) json += "}";
    return json;
  }();
  std::string binary;
  for (int i = 0; i < 4096; ++i) binary += static_cast<char>((i * 167 + 13) % 256);
  const std::vector<std::string> bodies = {
      // Not JSON.
      "",
      " ",
      "\n",
      "null",
      "nul",
      "{",
      "}",
      "{]",
      "[",
      "{\"model\": \"tiny\",}",
      "tiny",
      "model=tiny&prompt=hi",
      "<xml/>",
      "\"just a string\"",
      "42",
      "-0",
      "true",
      "[]",
      "{}",
      "{\"model\": \"tiny\" \"prompt\": \"hi\"}",
      "{'model': 'tiny'}",
      "\xef\xbb\xbf{}",
      std::string("{\"model\": \"tiny\", \"prompt\": \"a\0b\"}", 35),
      binary,
      R"({"model": "tiny", "prompt": "\ud800"})",
      R"({"model": "tiny", "prompt": "\x41"})",
      // JSON of the wrong types.
      R"({"model": 1, "prompt": "hi"})",
      R"({"model": null, "prompt": "hi"})",
      R"({"model": ["tiny"], "prompt": "hi"})",
      R"({"model": {"$ne": 1}, "prompt": "hi"})",
      R"({"model": "tiny", "prompt": true})",
      R"({"model": "tiny", "prompt": {"text": "hi"}})",
      R"({"model": "tiny", "prompt": [[[1]]]})",
      R"({"model": "tiny", "prompt": [1, [2]]})",
      R"({"model": "tiny", "prompt": [null]})",
      R"({"model": "tiny", "prompt": [1.5]})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": [8]})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": {"n": 8}})",
      R"({"model": "tiny", "prompt": "hi", "temperature": "0.5"})",
      R"({"model": "tiny", "prompt": "hi", "stream": 1})",
      R"({"model": "tiny", "prompt": "hi", "stream": true, "stream_options": []})",
      R"({"model": "tiny", "prompt": "hi", "stop": {"a": 1}})",
      R"({"model": "tiny", "prompt": "hi", "stop": [[]]})",
      R"({"model": "tiny", "prompt": "hi", "seed": [1]})",
      R"({"model": "tiny", "prompt": "hi", "logprobs": "yes"})",
      R"({"model": "tiny", "prompt": "hi", "logit_bias": [1, 2]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})",
      // Huge numbers.
      R"({"model": "tiny", "prompt": "hi", "max_tokens": 1e400})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": 99999999999999999999999999999})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": -99999999999999999999999999999})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": 2147483648})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": 1e308})",
      R"({"model": "tiny", "prompt": "hi", "temperature": 1e308})",
      R"({"model": "tiny", "prompt": "hi", "temperature": -1e-320})",
      R"({"model": "tiny", "prompt": "hi", "top_k": 9223372036854775807})",
      R"({"model": "tiny", "prompt": "hi", "top_p": 1e-400})",
      R"({"model": "tiny", "prompt": "hi", "seed": 1e400})",
      R"({"model": "tiny", "prompt": "hi", "seed": 123456789012345678901234567890})",
      R"({"model": "tiny", "prompt": [99999999999999999999]})",
      R"({"model": "tiny", "prompt": [4294967295]})",
      R"({"model": "tiny", "prompt": [-1]})",
      R"({"model": "tiny", "prompt": "hi", "n": 1e10})",
      R"({"model": "tiny", "prompt": "hi", "best_of": 1e30})",
      // Nested junk.
      deep_arrays,
      deep_objects,
      absl::StrCat(R"({"model": "tiny", "prompt": )", deep_arrays, "}"),
      absl::StrCat(R"({"model": "tiny", "prompt": "hi", "stop": )", deep_arrays, "}"),
      absl::StrCat(R"({"model": "tiny", "prompt": "hi", "logit_bias": )", deep_objects, "}"),
      absl::StrCat(R"({"model": "tiny", "prompt": "hi", "junk": )", deep_objects, "}"),
      R"({"model": "tiny", "prompt": "hi", "stream_options": {"include_usage": {"a": [1]}}})",
      // Empty or wrong content.
      R"({"model": "", "prompt": "hi"})",
      R"({"model": "tiny", "prompt": ""})",
      R"({"model": "tiny", "prompt": []})",
      R"({"model": "tiny", "prompt": [[]]})",
      R"({"model": "tiny", "prompt": ["a", "b"]})",
      R"({"model": "tiny", "prompt": "hi", "n": 0})",
      R"({"model": "tiny", "prompt": "hi", "stop": ""})",
      R"({"model": "tiny", "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": 0})",
      R"({"model": "tiny", "prompt": "hi", "max_tokens": -5})",
      R"({"model": "tiny", "prompt": "hi", "echo": true, "best_of": 3, "suffix": "x"})",
      R"({"model": "tiny", "prompt": "hi", "model": "other"})",
      R"({"model": "tiny", "prompt": "hi", "": ""})",
  };
  const std::vector<std::string> chat_bodies = {
      R"({"model": "tiny", "messages": null})",
      R"({"model": "tiny", "messages": {}})",
      R"({"model": "tiny", "messages": [[]]})",
      R"({"model": "tiny", "messages": [null]})",
      R"({"model": "tiny", "messages": ["hi"]})",
      R"({"model": "tiny", "messages": [{"role": 1, "content": "hi"}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": 5}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": {"text": "hi"}}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": [1, 2]}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text"}]}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": [[{"type": "text"}]]}]})",
      R"({"model": "tiny", "messages": [{"role": "", "content": "hi"}]})",
      R"({"model": "tiny", "messages": [{"role": "tool", "content": "hi"}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi", "tool_calls": [1]}]})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": "9"})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 1e400})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "response_format": "json"})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "tools": {"a": 1}})",
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "prompt": "x"})",
      R"({"model": "tiny", "messages": [{"role": "system", "content": "late"}, {"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})",
      absl::StrCat(R"({"model": "tiny", "messages": )", deep_arrays, "}"),
      absl::StrCat(R"({"model": "tiny", "messages": [{"role": "user", "content": )", deep_objects,
                   "}]}"),
      "",
      "[]",
      "null",
      binary,
  };
  struct Send {
    const char* path;
    const std::string* body;
    const char* content_type;
  };
  std::vector<Send> sends;
  for (const std::string& body : bodies) sends.push_back({"/v1/completions", &body, nullptr});
  for (const std::string& body : chat_bodies) {
    sends.push_back({"/v1/chat/completions", &body, nullptr});
  }
  // Content types that are not JSON, for a body that is.
  const std::string valid = R"({"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 2)";
  const std::string unterminated = valid;  // no closing brace
  for (const char* type : {"text/plain", "application/x-www-form-urlencoded",
                           "multipart/form-data; boundary=x", "application/octet-stream"}) {
    sends.push_back({"/v1/completions", &unterminated, type});
    sends.push_back({"/v1/chat/completions", &bodies[0], type});
  }
  httplib::Client client = Client();
  for (const Send& send : sends) {
    const std::string what = absl::StrCat(
        send.path, " ", send.content_type ? send.content_type : "", " ",
        Json(send.body->substr(0, 100)).dump(-1, ' ', false, Json::error_handler_t::replace));
    httplib::Result result =
        client.Post(send.path, *send.body,
                    send.content_type != nullptr ? send.content_type : "application/json");
    ASSERT_TRUE(result) << what << ": " << httplib::to_string(result.error()) << cluster_.Logs();
    EXPECT_GE(result->status, 400) << what << " -> " << result->body;
    EXPECT_LT(result->status, 500) << what << " -> " << result->body;
    Reply reply = ToReply(result);
    ExpectErrorShape(reply, what);
  }
  // A body of a valid request sent with another content type is still read as JSON.
  httplib::Result plain = client.Post("/v1/completions", valid + "}", "text/plain");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 200) << plain->body;
  // Still serving, the router process alive.
  EXPECT_TRUE(cluster_.router().Running());
  EXPECT_EQ(Completion(R"({"model": "tiny", "prompt": "hello", "max_tokens": 3,
                           "ignore_eos": true})")["usage"]["completion_tokens"],
            3);
  EXPECT_EQ(Get("/health").status, 200);
  EXPECT_EQ(Metric("kvc_router_http_requests_in_flight"), 0);
}

// A router without a tokenizer cannot count a chat prompt, so chat's default budget (the rest
// of the context) is unknown: a chat request without max_tokens is refused precisely, one with
// max_tokens is served, and completions keep their default of 16.
TEST_F(OpenAiApiTest, RouterWithoutTokenizerNeedsChatMaxTokens) {
  const std::string template_file = dir_.path() + "/chat.jinja";
  std::ofstream(template_file) << kChatTemplate;
  Start(
      {.num_workers = 1,
       .router_flags = {"--model=", "--model-identity", "tiny", "--chat-template", template_file}});
  ASSERT_TRUE(absl::StrContains(testing::ReadFile(dir_.path() + "/router.log"), "no tokenizer"))
      << cluster_.Logs();
  const std::string chat =
      R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "ignore_eos": true)";
  const Reply refused = Post("/v1/chat/completions", chat + "}");
  EXPECT_EQ(refused.status, 400) << refused.raw;
  ExpectErrorShape(refused, "chat without max_tokens");
  EXPECT_EQ(refused.body["error"]["param"], "max_tokens") << refused.raw;
  EXPECT_EQ(refused.body["error"]["code"], "missing_required_parameter") << refused.raw;
  EXPECT_TRUE(absl::StrContains(refused.body["error"]["message"].get<std::string>(), "tokenizer"))
      << refused.raw;

  const Reply served = Post("/v1/chat/completions", chat + R"(, "max_tokens": 20})");
  ASSERT_EQ(served.status, 200) << served.raw;
  EXPECT_EQ(served.body["usage"]["completion_tokens"], 20);
  const Reply limited = Post("/v1/chat/completions", chat + R"(, "max_completion_tokens": 7})");
  ASSERT_EQ(limited.status, 200) << limited.raw;
  EXPECT_EQ(limited.body["usage"]["completion_tokens"], 7);
  EXPECT_EQ(
      Completion(
          R"({"model": "tiny", "prompt": "hi", "ignore_eos": true})")["usage"]["completion_tokens"],
      16);
}

// A worker whose KV pool (512 tokens here) is smaller than its context (4096): chat's default
// budget stops at the pool, and a request the pool cannot hold, though the context can, is the
// cluster's capacity (503), not a request too large (413).
TEST_F(OpenAiApiTest, KvPoolSmallerThanTheContext) {
  const std::string template_file = dir_.path() + "/chat.jinja";
  std::ofstream(template_file) << kChatTemplate;
  Start({.num_workers = 1,
         .worker_flags = {"--kv-cache-memory", "128KiB"},
         .router_flags = {"--chat-template", template_file}});
  const Reply refused =
      Post("/v1/completions", absl::StrCat(R"({"model": "tiny", "prompt": )", TokenIds(100, 2),
                                           R"(, "max_tokens": 1000})"));
  EXPECT_EQ(refused.status, 503) << refused.raw;
  ExpectErrorShape(refused, "over the pool");
  EXPECT_EQ(refused.body["error"]["code"], "insufficient_capacity") << refused.raw;
  EXPECT_TRUE(absl::StrContains(refused.body["error"]["message"].get<std::string>(), "pool"))
      << refused.raw;
  const Reply refused_stream =
      Post("/v1/completions", absl::StrCat(R"({"model": "tiny", "prompt": )", TokenIds(100, 2),
                                           R"(, "max_tokens": 1000, "stream": true})"));
  EXPECT_EQ(refused_stream.status, 503) << refused_stream.raw;

  const Reply chat = Post("/v1/chat/completions",
                          R"({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                              "ignore_eos": true})");
  ASSERT_EQ(chat.status, 200) << chat.raw;
  EXPECT_EQ(chat.body["usage"]["total_tokens"], 512) << chat.raw;
  EXPECT_EQ(chat.body["choices"][0]["finish_reason"], "length");
}

// The real Llama-3 chat template (tokenizer_config.json from scripts/fetch-tokenizers) through a
// router whose model directory has Llama-3's tokenizer: the prompt the worker counts is exactly
// the template's rendering, written out here by hand and tokenized by kvc-tokenize. The workers
// are sim workers on a config of Llama-3.2-1B's shape, so that every Llama-3 token id is in
// their vocabulary.
TEST_F(OpenAiApiTest, Llama3ChatTemplatePromptTokens) {
  const std::string tokenizers = ".cache/tokenizers/llama3";
  if (!std::filesystem::exists(tokenizers + "/tokenizer_config.json") ||
      !std::filesystem::exists(tokenizers + "/tokenizer.json")) {
    GTEST_SKIP() << "no " << tokenizers << "/tokenizer_config.json (run scripts/fetch-tokenizers)";
  }
  // The cluster uses the model directory it finds (it makes the tiny model only when absent).
  const std::string model = dir_.path() + "/tiny";
  auto made = testing::Run(
      {testing::BinDir() + "/kvc-make-model", "--preset", "llama-3.2-1b-shape", "--config-only",
       "--tokenizer", tokenizers + "/tokenizer.json", "--out", model, "--quiet"},
      dir_.path() + "/make-model.log");
  ASSERT_TRUE(made.ok() && *made == 0) << testing::ReadFile(dir_.path() + "/make-model.log");
  ASSERT_TRUE(std::filesystem::exists(model + "/tokenizer_config.json"));
  Start({.num_workers = 1,
         .worker_flags = {"--backend", "sim", "--sim-speedup", "1000", "--kv-cache-memory",
                          "64MiB"}});

  const std::string header_end = "<|end_header_id|>\n\n";
  const std::string rendered =
      "<|begin_of_text|><|start_header_id|>system" + header_end +
      "You are a helpful assistant.<|eot_id|><|start_header_id|>user" + header_end +
      "What is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>" +
      "\n\n" + "Paris.<|eot_id|><|start_header_id|>user" + header_end +
      "And of Italy?<|eot_id|><|start_header_id|>assistant" + header_end;
  const std::string prompt_file = dir_.path() + "/rendered.txt";
  std::ofstream(prompt_file, std::ios::binary) << rendered;
  const std::string ids_file = dir_.path() + "/ids.txt";
  auto tokenized = testing::Run(
      {"/bin/sh", "-c", "exec \"$0\" --tokenizer \"$1\" < \"$2\" 2>/dev/null",
       testing::BinDir() + "/kvc-tokenize", tokenizers + "/tokenizer.json", prompt_file},
      ids_file);
  ASSERT_TRUE(tokenized.ok() && *tokenized == 0)
      << "kvc-tokenize failed (is it built?): " << testing::ReadFile(ids_file);
  const std::vector<std::string> ids = absl::StrSplit(
      absl::StripAsciiWhitespace(testing::ReadFile(ids_file)), ' ', absl::SkipEmpty());
  ASSERT_GT(ids.size(), 20u);
  EXPECT_EQ(ids[0], "128000");  // <|begin_of_text|>, once

  const Reply reply = Post("/v1/chat/completions", R"({"model": "tiny", "messages": [
      {"role": "system", "content": "You are a helpful assistant."},
      {"role": "user", "content": "What is the capital of France?"},
      {"role": "assistant", "content": "Paris."},
      {"role": "user", "content": "  And of Italy?\n"}], "max_tokens": 4, "ignore_eos": true})");
  ASSERT_EQ(reply.status, 200) << reply.raw << cluster_.Logs();
  EXPECT_EQ(reply.body["usage"]["prompt_tokens"], static_cast<int>(ids.size())) << reply.raw;
  EXPECT_EQ(reply.body["usage"]["completion_tokens"], 4) << reply.raw;
}

}  // namespace
}  // namespace kvc
