#include "router/router_service.h"

#include "common/grpc_status.h"
#include "router/proxy_call.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

namespace {

void AddInto(const pb::WorkerStats& from, pb::WorkerStats* total) {
  total->set_requests(total->requests() + from.requests());
  total->set_prompt_tokens(total->prompt_tokens() + from.prompt_tokens());
  total->set_predicted_cached_tokens(total->predicted_cached_tokens() +
                                     from.predicted_cached_tokens());
  total->set_actual_cached_tokens(total->actual_cached_tokens() + from.actual_cached_tokens());
  total->set_active_requests(total->active_requests() + from.active_requests());
  total->set_indexed_blocks(total->indexed_blocks() + from.indexed_blocks());
  total->set_event_lag_seconds(std::max(total->event_lag_seconds(), from.event_lag_seconds()));
  total->set_resyncs(total->resyncs() + from.resyncs());
  total->set_digest_mismatches(total->digest_mismatches() + from.digest_mismatches());
  total->set_event_gaps(total->event_gaps() + from.event_gaps());
  total->set_epoch_changes(total->epoch_changes() + from.epoch_changes());
  total->set_orphan_events(total->orphan_events() + from.orphan_events());
  total->set_failed_requests(total->failed_requests() + from.failed_requests());
}

}  // namespace

pb::StatsResponse CollectStats(const Router& router) {
  pb::StatsResponse stats;
  stats.set_policy(PolicyName(router.policy().options().kind));
  stats.set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - router.start_time()));
  pb::WorkerStats* total = stats.mutable_total();
  total->set_worker_id("total");
  uint64_t completed = 0, accurate = 0;
  for (const auto& link : router.pool()->All()) {
    const WorkerCounters& c = link->counters();
    pb::WorkerStats* w = stats.add_workers();
    w->set_worker_id(link->worker_id());
    w->set_address(link->address());
    w->set_requests(c.requests.load());
    w->set_prompt_tokens(c.prompt_tokens.load());
    w->set_predicted_cached_tokens(c.predicted_cached_tokens.load());
    w->set_actual_cached_tokens(c.actual_cached_tokens.load());
    w->set_hit_rate(w->prompt_tokens() ? double(w->actual_cached_tokens()) / w->prompt_tokens()
                                       : 0.0);
    const uint64_t done = c.completed_requests.load();
    completed += done;
    accurate += c.accurate_predictions.load();
    w->set_routing_accuracy(done ? double(c.accurate_predictions.load()) / done : 0.0);
    w->set_active_requests(c.active_requests.load());
    w->set_indexed_blocks(router.index()->GetWorkerSummary(link->index_id()).blocks.num_blocks);
    w->set_event_lag_seconds(c.event_lag_us.load() / 1e6);
    w->set_resyncs(c.resyncs.load());
    w->set_digest_mismatches(c.digest_mismatches.load());
    w->set_event_gaps(c.event_gaps.load());
    w->set_epoch_changes(c.epoch_changes.load());
    w->set_orphan_events(c.orphan_events.load());
    w->set_failed_requests(c.failed_requests.load());
    AddInto(*w, total);
  }
  total->set_hit_rate(total->prompt_tokens()
                          ? double(total->actual_cached_tokens()) / total->prompt_tokens()
                          : 0.0);
  total->set_routing_accuracy(completed ? double(accurate) / completed : 0.0);
  const kvindex::IndexStats index = router.index()->GetStats();
  stats.mutable_index()->set_nodes(index.nodes);
  stats.mutable_index()->set_blocks(index.blocks);
  stats.mutable_index()->set_block_worker_pairs(index.block_worker_pairs);
  stats.mutable_index()->set_memory_bytes(index.memory_bytes);
  return stats;
}

namespace {

grpc::Status Route(const Router& router, const pb::RouteRequest& request,
                   pb::RouteResponse* response) {
  absl::StatusOr<RouteDecision> decision = router.Decide(request.request());
  if (!decision.ok()) return ToGrpcStatus(decision.status());
  const RoutedCandidate& best = decision->candidates.front();
  response->set_worker_id(best.worker->worker_id());
  response->set_address(best.worker->address());
  response->set_policy(PolicyName(router.policy().options().kind));
  response->set_prompt_tokens(decision->prompt_tokens);
  response->set_prompt_blocks(decision->prompt_blocks);
  for (const RoutedCandidate& c : decision->candidates) {
    pb::CandidateScore* score = response->add_candidates();
    score->set_worker_id(c.worker->worker_id());
    score->set_matched_blocks(c.score.matched_blocks);
    score->set_prefill_blocks(c.score.prefill_blocks);
    score->set_decode_load_blocks(c.score.decode_load_blocks);
    score->set_cost(c.score.cost);
  }
  return grpc::Status::OK;
}

// Binds an AsyncService's RequestX to the service and the loop's queue.
template <typename Base, typename Request, typename Response>
auto Requester(pb::Router::AsyncService* service, grpc::ServerCompletionQueue* cq,
               void (Base::*request_method)(grpc::ServerContext*, Request*,
                                            grpc::ServerAsyncResponseWriter<Response>*,
                                            grpc::CompletionQueue*, grpc::ServerCompletionQueue*,
                                            void*)) {
  return [=](grpc::ServerContext* context, Request* request,
             grpc::ServerAsyncResponseWriter<Response>* writer,
             void* tag) { (service->*request_method)(context, request, writer, cq, cq, tag); };
}

}  // namespace

void RouterService::Serve(Router* router, grpc::ServerCompletionQueue* cq) {
  GrpcLoop* loop = router->pool()->loop();
  pb::Router::AsyncService* service = &service_;
  route_ = std::make_unique<UnaryMethod<pb::RouteRequest, pb::RouteResponse>>(
      loop, Requester(service, cq, &pb::Router::AsyncService::RequestRoute),
      [router](const pb::RouteRequest& request, pb::RouteResponse* response) {
        return Route(*router, request, response);
      });
  get_stats_ = std::make_unique<UnaryMethod<pb::GetStatsRequest, pb::StatsResponse>>(
      loop, Requester(service, cq, &pb::Router::AsyncService::RequestGetStats),
      [router](const pb::GetStatsRequest&, pb::StatsResponse* response) {
        *response = CollectStats(*router);
        return grpc::Status::OK;
      });
  list_workers_ = std::make_unique<UnaryMethod<pb::ListWorkersRequest, pb::ListWorkersResponse>>(
      loop, Requester(service, cq, &pb::Router::AsyncService::RequestListWorkers),
      [router](const pb::ListWorkersRequest&, pb::ListWorkersResponse* response) {
        for (const auto& link : router->pool()->All()) *response->add_workers() = link->Status();
        return grpc::Status::OK;
      });
  register_ = std::make_unique<UnaryMethod<pb::RegisterWorkerRequest, pb::RegisterWorkerResponse>>(
      loop, Requester(service, cq, &pb::Router::AsyncService::RequestRegisterWorker),
      [router](const pb::RegisterWorkerRequest& request, pb::RegisterWorkerResponse* response) {
        auto link = router->pool()->Add(request.address(), pb::WORKER_SOURCE_REGISTERED);
        if (!link.ok()) return ToGrpcStatus(link.status());
        *response->mutable_worker() = (*link)->Status();
        return grpc::Status::OK;
      });
  deregister_ =
      std::make_unique<UnaryMethod<pb::DeregisterWorkerRequest, pb::DeregisterWorkerResponse>>(
          loop, Requester(service, cq, &pb::Router::AsyncService::RequestDeregisterWorker),
          [router](const pb::DeregisterWorkerRequest& request, pb::DeregisterWorkerResponse*) {
            return ToGrpcStatus(router->pool()->Remove(request.address()));
          },
          /*blocking=*/true);
  route_->Serve();
  get_stats_->Serve();
  list_workers_->Serve();
  register_->Serve();
  deregister_->Serve();
  ProxyCall::Listen(router, service, cq);
}

}  // namespace kvc::router
