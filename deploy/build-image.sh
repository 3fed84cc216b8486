#!/usr/bin/env bash
# Builds the kvcluster container image (kvc-router, kvc-worker, kvctl, kvc-make-model).
#
#   deploy/build-image.sh [--from-source | --binaries BUILD_DIR] [--tag kvcluster:latest]
#                         [--jobs N] [--no-base]
#
#   --from-source         compile inside Docker: deploy/docker/Dockerfile, the repository as
#                         context (the default; 15-20 minutes on 2 cores)
#   --binaries BUILD_DIR  copy BUILD_DIR/bin/{kvc-router,kvc-worker,kvctl,kvc-make-model}, built
#                         on this Debian bookworm host, into deploy/docker/Dockerfile.prebuilt
#                         (a minute or less once the base layers are cached)
#   --tag NAME            image name (default kvcluster:latest, what docker-compose.yml and
#                         the Kubernetes manifests run)
#   --jobs N              compile jobs for --from-source (default: this machine's cores)
#   --no-base             do not make debian:bookworm-slim first (deploy/make-base-image.sh)
#
# Proxy settings in http_proxy / https_proxy are passed to the build's apt-get.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib.sh"

mode=source binaries="" tag=kvcluster:latest jobs=$(nproc) base=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --from-source) mode=source; shift ;;
    --binaries) mode=binaries; binaries=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --no-base) base=0; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) deploy_die "unknown option '$1' (--help)" ;;
  esac
done

docker info >/dev/null 2>&1 ||
  deploy_die "no Docker daemon answers (install docker.io and start it; deploy/test-compose.sh does both)"
((base)) && "$root/deploy/make-base-image.sh"

build_args=()
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [[ -n ${!var:-} ]] && build_args+=(--build-arg "$var=${!var}")
done

start=$SECONDS
if [[ $mode == source ]]; then
  deploy_log "building $tag from source (deploy/docker/Dockerfile, $jobs jobs)"
  docker build -f "$root/deploy/docker/Dockerfile" --build-arg "BUILD_JOBS=$jobs" \
    "${build_args[@]}" -t "$tag" "$root"
else
  programs=(kvc-router kvc-worker kvctl kvc-make-model)
  for program in "${programs[@]}"; do
    [[ -x $binaries/bin/$program ]] ||
      deploy_die "$binaries/bin/$program is missing (cmake --build $binaries --target ${programs[*]})"
  done
  context=$(mktemp -d /tmp/kvc-image-context.XXXXXX)
  trap 'rm -rf "$context"' EXIT
  mkdir -p "$context/bin" "$context/tokenizers"
  for program in "${programs[@]}"; do
    cp "$binaries/bin/$program" "$context/bin/"
  done
  strip --strip-unneeded "$context"/bin/* 2>/dev/null || true
  if [[ -d $root/.cache/tokenizers ]]; then
    cp -R "$root/.cache/tokenizers/." "$context/tokenizers/"
  fi
  cp "$root/deploy/docker/runtime-setup.sh" "$context/"
  "$root/deploy/docker/runtime-setup.sh" list-packages "$context"/bin/* >"$context/runtime-packages"
  deploy_log "building $tag from $binaries/bin (deploy/docker/Dockerfile.prebuilt)"
  docker build -f "$root/deploy/docker/Dockerfile.prebuilt" "${build_args[@]}" \
    -t "$tag" "$context"
fi
deploy_log "$tag built in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$tag" |
  awk '{printf "%.0f MB", $1 / 1e6}'))"
