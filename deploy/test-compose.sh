#!/usr/bin/env bash
# End-to-end test of the docker-compose cluster, for real: Docker engine, image, router and 3
# cpu workers in containers, requests from a client container.
#
#   deploy/test-compose.sh [--binaries BUILD_DIR | --from-source] [--timeout SECONDS]
#                          [--remove-images]
#
#   --binaries BUILD_DIR  image from BUILD_DIR/bin via Dockerfile.prebuilt (default:
#                         $KVC_BUILD_DIR, else build/); about 2 minutes in all
#   --from-source         image compiled by deploy/docker/Dockerfile (15-20 minutes on 2 cores)
#   --timeout SECONDS     whole-run limit, image build included (default 600; 2400 with
#                         --from-source); past it the run fails and cleans up
#   --remove-images       also remove the test image (kept by default as the build cache;
#                         debian:bookworm-slim is always kept)
#
# Steps: install docker.io and docker-compose and start the daemon when needed (exit 77, a
# skip, where that cannot be done); make debian:bookworm-slim when missing
# (make-base-image.sh); check the compose file for every profile and the Prometheus config
# (promtool); build the image; `docker-compose up -d`; wait for every container to be healthy
# and the router to see 3 READY workers; from a client container: kvctl generate and stats,
# shared-prefix requests that must land on one worker and find the prefix cached; /health and
# /metrics on the published port (promtool check metrics); `docker kill` the worker holding
# the prefix: requests still succeed and kvctl workers/stats no longer list it; a worker that
# exits by itself is restarted (restart policy) and rejoins; sim workers (--profile sim
# --scale) when kvc-worker has the sim backend; then everything is torn down (containers,
# networks, volumes), on failure too. Runs one at a time per machine (a lock).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib.sh"

mode=binaries binaries=${KVC_BUILD_DIR:-$root/build} limit="" remove_images=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --binaries) mode=binaries; binaries=$2; shift 2 ;;
    --from-source) mode=source; shift ;;
    --timeout) limit=$2; shift 2 ;;
    --remove-images) remove_images=1; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) deploy_die "unknown option '$1' (--help)" ;;
  esac
done
[[ -n $limit ]] || { [[ $mode == source ]] && limit=2400 || limit=600; }
if [[ $mode == binaries ]]; then
  binaries=$(cd "$binaries" 2>/dev/null && pwd) || deploy_die "no build folder $binaries"
fi

mkdir -p "$KVC_DEPLOY_STATE"
exec 9>"$KVC_DEPLOY_STATE/test-compose.lock"
if ! flock -n 9; then
  deploy_log "another deploy test runs here; waiting for it (up to 15 minutes)"
  flock -w 900 9 || deploy_die "the other deploy test did not finish"
fi

start=$SECONDS
step_start=$SECONDS
step() {
  deploy_log "[$((SECONDS - start)) s] $*"
  step_start=$SECONDS
}
done_step() { deploy_log "  ok ($((SECONDS - step_start)) s): $*"; }
fail() {
  deploy_log "FAILED: $*"
  exit 1
}

status=0
deploy_ensure_docker compose || status=$?
if ((status == 77)); then
  deploy_log "SKIPPED: Docker cannot run here"
  exit 77
fi
((status == 0)) || exit "$status"
command -v python3 >/dev/null 2>&1 || fail "python3 is missing (docker-compose needs it too)"
command -v curl >/dev/null 2>&1 || fail "curl is missing (scripts/setup installs it)"

project=kvctest$$
if [[ $mode == binaries ]]; then
  image=kvcluster:test-$(echo "$binaries" | md5sum | cut -c1-8)
else
  image=kvcluster:test-source
fi
client=${project}_client
compose=(docker-compose -f "$root/deploy/docker-compose.yml" -p "$project")
export KVC_IMAGE=$image KVC_PRESET=tiny KVC_WORKERS=3 KVC_BIND=127.0.0.1
export KVC_ROUTER_PORT="" KVC_HTTP_PORT="" KVC_PROMETHEUS_PORT=""  # free host ports
export KVC_KV_CACHE_MEMORY=64MiB KVC_WORKER_THREADS=1 KVC_POLICY=kv KVC_SIM_SPEEDUP=100

watchdog=""
cleanup() {
  local code=$?
  set +e  # clean up as much as can be, whatever fails
  trap - EXIT TERM INT
  [[ -n $watchdog ]] && kill "$watchdog" 2>/dev/null
  if ((code != 0 && code != 77)) && docker info >/dev/null 2>&1; then
    deploy_log "state at failure:"
    timeout 30 "${compose[@]}" ps >&2 2>/dev/null || true
    timeout 30 "${compose[@]}" logs --no-color --tail 25 >&2 2>/dev/null || true
  fi
  if docker info >/dev/null 2>&1; then
    deploy_log "tearing down project $project"
    docker rm -f "$client" >/dev/null 2>&1 || true
    timeout 120 "${compose[@]}" --profile sim --profile tools down -v --remove-orphans \
      --timeout 5 >/dev/null 2>&1 || true
    if ((remove_images)); then docker rmi "$image" >/dev/null 2>&1 || true; fi
    local left
    left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"
      docker volume ls -q --filter "label=com.docker.compose.project=$project"
      docker network ls -q --filter "label=com.docker.compose.project=$project")
    if [[ -n $left ]]; then
      deploy_log "left behind by $project: $left"
      ((code == 0)) && code=1
    fi
  fi
  deploy_stop_docker
  ((code == 0)) && deploy_log "PASSED in $((SECONDS - start)) s"
  exit "$code"
}
trap cleanup EXIT
trap 'deploy_log "time limit of $limit s reached"; exit 124' TERM
trap 'exit 130' INT
# The watchdog's sleep must not outlive the run: it would hold the caller's output open.
(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$limit" &
  sleeper=$!
  wait "$sleeper" && kill -TERM $$
) >/dev/null 2>&1 &
watchdog=$!

# --- static checks -------------------------------------------------------------------------
step "checking docker-compose.yml (every profile) and the Prometheus config"
for profiles in "" "--profile sim" "--profile prometheus" "--profile tools"; do
  # shellcheck disable=SC2086 # the profile flags are two words
  timeout 60 "${compose[@]}" $profiles config -q || fail "docker-compose $profiles config"
done
promtool=$(deploy_promtool "$root") || fail "promtool is needed to check the Prometheus config"
"$promtool" check config "$root/deploy/prometheus/prometheus.yml" >/dev/null ||
  fail "promtool check config deploy/prometheus/prometheus.yml"
done_step "compose config for 4 profile sets; promtool check config"

# --- images --------------------------------------------------------------------------------
step "base image"
timeout 600 "$root/deploy/make-base-image.sh" || fail "make-base-image.sh"
done_step "debian:bookworm-slim"
step "building $image ($mode)"
if [[ $mode == binaries ]]; then
  timeout 600 "$root/deploy/build-image.sh" --no-base --binaries "$binaries" --tag "$image" \
    >"$KVC_DEPLOY_STATE/build-image.log" 2>&1 || {
    tail -n 30 "$KVC_DEPLOY_STATE/build-image.log" >&2
    fail "build-image.sh --binaries $binaries"
  }
else
  timeout 2400 "$root/deploy/build-image.sh" --no-base --from-source --tag "$image" ||
    fail "build-image.sh --from-source"
fi
done_step "$image"

# --- cluster -------------------------------------------------------------------------------
step "docker-compose up -d (router, 3 workers, model-init)"
timeout 180 "${compose[@]}" up -d --no-build >/dev/null 2>&1 || {
  timeout 60 "${compose[@]}" up -d --no-build || true
  fail "docker-compose up"
}
done_step "started"

containers() { docker ps -q --filter "label=com.docker.compose.project=$project" "$@"; }
health_of() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"; }

# Starts the client container once; kvc runs kvctl in it against the router.
start_client() {
  docker run -d --name "$client" --network "${project}_default" --entrypoint sleep "$image" \
    3600 >/dev/null || fail "cannot start the client container"
}
kvc() { timeout 120 docker exec "$client" kvctl --router router:50050 --timeout 60s "$@"; }
# JSON field extraction: py 'EXPR' evaluates EXPR with d = the JSON on stdin.
py() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
ready_workers() { kvc workers --json | py 'sum(w.get("state") == "WORKER_STATE_READY" for w in d.get("workers", []))'; }

# Waits until every running container of the project is healthy and the router has $1 READY
# workers, at most $2 seconds.
wait_cluster() {
  local want=$1 within=$2 deadline=$((SECONDS + $2)) unhealthy ready=""
  while ((SECONDS < deadline)); do
    unhealthy=0
    for id in $(containers --filter "label=com.docker.compose.service=router") \
      $(containers --filter "label=com.docker.compose.service=worker") \
      $(containers --filter "label=com.docker.compose.service=sim-worker"); do
      [[ $(health_of "$id") == healthy ]] || unhealthy=$((unhealthy + 1))
    done
    if ((unhealthy == 0)); then
      ready=$(ready_workers 2>/dev/null || echo "?")
      [[ $ready == "$want" ]] && return 0
    fi
    sleep 1
  done
  fail "within $within s: $unhealthy containers not healthy, router sees ${ready:-?} READY workers (want $want)"
}

step "waiting for health (grpc.health.v1 via kvctl health) and 3 READY workers"
start_client
wait_cluster 3 120
[[ $(docker inspect -f '{{.State.ExitCode}}' "$(docker ps -aq --filter \
  "label=com.docker.compose.project=$project" --filter \
  "label=com.docker.compose.service=model-init")") == 0 ]] || fail "model-init did not exit 0"
done_step "router and 3 workers healthy; model-init exited 0"

step "kvctl generate and stats from a container"
out=$(kvc generate --prompt "The cluster in containers answers" --max-tokens 8 2>&1) ||
  fail "kvctl generate: $out"
grep -q "| 8 generated |" <<<"$out" || fail "kvctl generate: no '8 generated' in: $out"
out=$(kvc stats 2>&1) || fail "kvctl stats: $out"
grep -q "^total" <<<"$out" || fail "kvctl stats: no total row in: $out"
done_step "generate returned 8 tokens; stats has the total row"

step "shared-prefix requests: one worker, prefix found cached"
system="You are the dispatcher of a mountain rescue team. Ask for the exact position first, \
then the number of people, their injuries and the weather on site. Keep every answer short, \
never guess a route, and repeat the emergency number at the end of each message."
declare -a served=()
cached_sum=0
for user in ana ben cleo dan; do
  json=$(kvc generate --json --max-tokens 4 --prompt "$system
$user: we are three hikers and one of us has twisted an ankle.") || fail "generate for $user"
  worker=$(py 'd["result"]["worker_id"]' <<<"$json")
  cached=$(py 'int(d["result"]["usage"].get("cached_prompt_tokens", 0))' <<<"$json")
  prompt=$(py 'int(d["result"]["usage"]["prompt_tokens"])' <<<"$json")
  deploy_log "  $user: worker $worker, prompt $prompt tokens, $cached cached"
  served+=("$worker")
  if [[ $user != ana ]]; then
    ((cached * 2 >= prompt)) || fail "$user found $cached of $prompt prompt tokens cached"
    cached_sum=$((cached_sum + cached))
  fi
done
holder=${served[0]}
for worker in "${served[@]}"; do
  [[ $worker == "$holder" ]] || fail "shared-prefix requests went to ${served[*]}, not one worker"
done
stats=$(kvc stats --json) || fail "kvctl stats --json"
total_cached=$(py 'int(d["total"].get("actual_cached_tokens", 0))' <<<"$stats")
holder_hits=$(py "[w.get('hit_rate', 0) for w in d['workers'] if w['worker_id'] == '$holder'][0]" \
  <<<"$stats")
((total_cached >= cached_sum)) || fail "stats count $total_cached cached tokens, requests saw $cached_sum"
python3 -c "import sys; sys.exit(0 if float('$holder_hits') > 0.5 else 1)" ||
  fail "worker $holder hit rate $holder_hits, want > 0.5"
done_step "4 requests on $holder, $cached_sum prefix tokens reused; stats: $total_cached cached, hit rate $holder_hits"

step "router HTTP on the published port: /health and /metrics"
http=$(timeout 30 "${compose[@]}" port router 8080) || fail "docker-compose port router 8080"
grpc_port=$(timeout 30 "${compose[@]}" port router 50050) || fail "docker-compose port router 50050"
health=$(curl -sf --max-time 10 "http://$http/health") || fail "GET /health on $http"
[[ $(py 'd["ready_workers"]' <<<"$health") == 3 ]] || fail "/health: $health"
curl -sf --max-time 10 "http://$http/metrics" >"$KVC_DEPLOY_STATE/metrics.txt" ||
  fail "GET /metrics on $http"
grep -q "$holder" "$KVC_DEPLOY_STATE/metrics.txt" || fail "/metrics does not name worker $holder"
"$promtool" check metrics <"$KVC_DEPLOY_STATE/metrics.txt" >&2 ||
  fail "promtool check metrics on the router's /metrics"
timeout 60 docker run --rm --network host "$image" kvctl --connect-timeout 5s health \
  "$grpc_port" >/dev/null || fail "kvctl health on the published gRPC port $grpc_port"
done_step "/health 200 with 3 ready workers; /metrics passes promtool ($(wc -l <"$KVC_DEPLOY_STATE/metrics.txt") lines); gRPC on $grpc_port"

step "docker kill the worker holding the prefix ($holder)"
victim=""
for id in $(containers --filter "label=com.docker.compose.service=worker"); do
  [[ $(docker inspect -f '{{.Config.Hostname}}' "$id") == "$holder" ]] && victim=$id
done
[[ -n $victim ]] || fail "no worker container has host name $holder"
victim_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$victim")
docker kill "$victim" >/dev/null
deadline=$((SECONDS + 30))
while :; do
  listed=$(kvc workers --json | py "sum(w['address'].startswith('$victim_ip:') for w in d.get('workers', []))")
  [[ $listed == 0 && $(ready_workers) == 2 ]] && break
  ((SECONDS < deadline)) || fail "30 s after the kill the router still lists $victim_ip"
  sleep 1
done
for user in ana eve fred gus; do
  json=$(kvc generate --json --max-tokens 4 --prompt "$system
$user: after the kill.") || fail "generate after the kill ($user)"
  worker=$(py 'd["result"]["worker_id"]' <<<"$json")
  [[ $worker != "$holder" ]] || fail "a request went to the killed worker"
done
stats=$(kvc stats --json) || fail "kvctl stats --json after the kill"
[[ $(py "sum(w['worker_id'] == '$holder' for w in d['workers'])" <<<"$stats") == 0 ]] ||
  fail "kvctl stats still lists $holder"
[[ $(py 'len(d["workers"])' <<<"$stats") == 2 ]] || fail "kvctl stats does not list 2 workers"
[[ $(docker inspect -f '{{.State.Status}}' "$victim") == exited ]] ||
  fail "the killed container is $(docker inspect -f '{{.State.Status}}' "$victim")"
done_step "router dropped $victim_ip; 4 requests served by the 2 others; stats list 2 workers"

step "a worker that exits by itself is restarted (restart: unless-stopped)"
survivor=$(containers --filter "label=com.docker.compose.service=worker" | head -n 1)
docker exec "$survivor" sh -c 'kill -TERM 1'
deadline=$((SECONDS + 60))
until [[ $(docker inspect -f '{{.RestartCount}}' "$survivor") -ge 1 ]]; do
  ((SECONDS < deadline)) || fail "the worker that exited was not restarted within 60 s"
  sleep 1
done
wait_cluster 2 60
out=$(kvc generate --prompt "back again" --max-tokens 4 2>&1) || fail "generate after restart: $out"
done_step "restarted once, healthy, READY again"

worker_flags=$(docker run --rm "$image" kvc-worker --helpfull 2>&1 || true)
if grep -q -- '--sim_speedup' <<<"$worker_flags"; then
  step "sim workers: --profile sim --scale sim-worker=3"
  # Only the sim-worker service: the killed cpu worker stays down.
  timeout 120 "${compose[@]}" --profile sim up -d --no-build --no-deps --scale sim-worker=3 \
    sim-worker >/dev/null 2>&1 || fail "docker-compose --profile sim up --scale sim-worker=3"
  wait_cluster 5 90
  sims=$(kvc workers --json | py 'sum(w.get("info", {}).get("backend") == "sim" for w in d["workers"])')
  [[ $sims == 3 ]] || fail "the router lists $sims sim workers, want 3"
  # Prompts with prefixes no worker holds yet: the router spreads them, sim workers included.
  for topic in glacier ferry orchard lighthouse quarry vineyard harbour meadow; do
    kvc generate --max-tokens 4 --prompt "A new conversation about the $topic: describe the \
$topic at dawn, then the people who work at the $topic, then what the $topic sounds like." \
      >/dev/null 2>&1 || fail "generate on the mixed cluster ($topic)"
  done
  sim_addresses=$(kvc workers --json |
    py '" ".join(w["address"] for w in d["workers"] if w.get("info", {}).get("backend") == "sim")')
  sim_served=$(kvc stats --json | py "sum(int(w.get('requests', 0)) for w in d['workers'] if w['address'] in '$sim_addresses'.split())")
  ((sim_served > 0)) || fail "no request went to a sim worker"
  done_step "router lists 2 cpu + 3 sim workers; 8 new prefixes served, $sim_served by sim workers"
else
  deploy_log "kvc-worker has no sim backend in this build: sim profile checked by config only"
fi

step "tearing down"
docker rm -f "$client" >/dev/null
timeout 120 "${compose[@]}" --profile sim --profile tools down -v --remove-orphans --timeout 5 \
  >/dev/null 2>&1 || fail "docker-compose down"
done_step "containers, network and volume removed"
