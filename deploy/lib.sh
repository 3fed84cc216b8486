# shellcheck shell=bash
# Shell helpers shared by the deploy scripts (sourced, not run). Bash.
#
#   deploy_log MESSAGE...            progress line on stderr, prefixed with the script's name
#   deploy_die MESSAGE...            the same, then exit 1
#   deploy_ensure_docker [compose]   install the Docker engine (Debian docker.io) and, with
#                                    "compose", docker-compose when missing; start the daemon
#                                    when it is not running. Returns 77 when that cannot be
#                                    done here (not root, no apt, the daemon does not start).
#   deploy_stop_docker               stop the daemon if deploy_ensure_docker started it
#   deploy_debian_mirror             the Debian mirror this machine's apt uses (bookworm suite)
#   deploy_security_mirror           the same for bookworm-security
#
# State (the daemon's pid and log) lives in $KVC_DEPLOY_STATE (default /tmp/kvc-deploy).

deploy_name=$(basename "$0" .sh)
KVC_DEPLOY_STATE=${KVC_DEPLOY_STATE:-/tmp/kvc-deploy}
deploy_started_dockerd=0

deploy_log() { echo "$deploy_name: $*" >&2; }
deploy_die() {
  deploy_log "$@"
  exit 1
}

deploy_as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    return 1
  fi
}

deploy_apt_install() {
  deploy_log "installing Debian packages: $*"
  deploy_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    deploy_as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

deploy_ensure_docker() {
  local want_compose=${1:-}
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  if [[ $want_compose == compose ]] && ! command -v docker-compose >/dev/null 2>&1; then
    missing+=(docker-compose)
  fi
  if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1 || ! deploy_apt_install "${missing[@]}"; then
      deploy_log "cannot install ${missing[*]} (needs root and apt-get)"
      return 77
    fi
  fi
  if docker info >/dev/null 2>&1; then return 0; fi
  mkdir -p "$KVC_DEPLOY_STATE"
  if [[ -d /run/systemd/system ]]; then
    deploy_log "starting the Docker daemon (systemctl start docker)"
    deploy_as_root systemctl start docker || true
  else
    # No init system to ask: run dockerd in the background and remember that we did.
    deploy_log "starting the Docker daemon (log: $KVC_DEPLOY_STATE/dockerd.log)"
    if [[ $(id -u) -ne 0 ]]; then
      deploy_log "starting dockerd needs root"
      return 77
    fi
    setsid dockerd >"$KVC_DEPLOY_STATE/dockerd.log" 2>&1 </dev/null &
    echo $! >"$KVC_DEPLOY_STATE/dockerd.pid"
    deploy_started_dockerd=1
  fi
  local i
  for ((i = 0; i < 60; i++)); do
    if docker info >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  deploy_log "the Docker daemon did not start within 30 s"
  [[ -f $KVC_DEPLOY_STATE/dockerd.log ]] && tail -n 5 "$KVC_DEPLOY_STATE/dockerd.log" >&2
  deploy_stop_docker
  return 77
}

deploy_stop_docker() {
  ((deploy_started_dockerd)) || return 0
  deploy_started_dockerd=0
  local pid
  pid=$(cat "$KVC_DEPLOY_STATE/dockerd.pid" 2>/dev/null) || return 0
  deploy_log "stopping the Docker daemon it started (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  local i
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  rm -f "$KVC_DEPLOY_STATE/dockerd.pid"
}

# The first Debian URI whose suites include plain "bookworm", from one-line (.list) and
# deb822 (.sources) apt files; deb.debian.org when none is found.
deploy_apt_uri_for() {
  local suite=$1 file uri=""
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $file ]] || continue
    if [[ $file == *.sources ]]; then
      uri=$(awk -v suite="$suite" '
        /^[[:space:]]*$/ { if (u != "" && found) { print u; exit } u = ""; found = 0; next }
        /^URIs:/ { u = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = 1 }
        END { if (u != "" && found) print u }' "$file" | head -n 1)
    else
      uri=$(awk -v suite="$suite" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }' "$file")
    fi
    [[ -n $uri ]] && break
  done
  echo "${uri:-}"
}

deploy_debian_mirror() {
  local uri
  uri=$(deploy_apt_uri_for bookworm)
  echo "${KVC_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

deploy_security_mirror() {
  local uri
  uri=$(deploy_apt_uri_for bookworm-security)
  echo "${KVC_DEBIAN_SECURITY_MIRROR:-${uri:-http://deb.debian.org/debian-security}}"
}

# Path of promtool (Prometheus's config and metrics checker): on PATH, or taken out of the
# Debian prometheus package into .cache/deploy/ (apt-get download; nothing is installed).
deploy_promtool() {
  local root=$1
  if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    return 0
  fi
  local dir=$root/.cache/deploy/prometheus
  if [[ ! -x $dir/usr/bin/promtool ]]; then
    deploy_log "fetching promtool from the Debian prometheus package into $dir"
    local work
    work=$(mktemp -d)
    chmod 777 "$work"  # apt-get download writes as the _apt user where it can
    if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1) ||
      ! ls "$work"/prometheus_*.deb >/dev/null 2>&1; then
      rm -rf "$work"
      deploy_log "cannot download the prometheus package (apt-get download prometheus)"
      return 1
    fi
    mkdir -p "$dir"
    dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$dir" ./usr/bin/promtool
    rm -rf "$work"
  fi
  echo "$dir/usr/bin/promtool"
}
