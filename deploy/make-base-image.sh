#!/usr/bin/env bash
# Makes sure the image the Dockerfiles start from, debian:bookworm-slim, is in the local Docker
# daemon. Nothing is done when it is already there. Otherwise it is pulled; where no registry
# can be reached, an equivalent image is made from Debian packages instead: debootstrap of
# bookworm (variant minbase) from the Debian mirror this machine's apt uses, imported under
# the same tag, so the Dockerfiles stay the standard ones.
#
#   deploy/make-base-image.sh [--tag debian:bookworm-slim] [--no-pull]
#
# Environment: KVC_DEBIAN_MIRROR / KVC_DEBIAN_SECURITY_MIRROR override the mirrors read from
# /etc/apt/sources.list*; they are also written into the image's apt sources. Needs root for
# debootstrap (installed with apt-get when missing). Takes about a minute.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/deploy/lib.sh"

tag=debian:bookworm-slim
pull=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --no-pull) pull=0; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) deploy_die "unknown option '$1' (--help)" ;;
  esac
done

if docker image inspect "$tag" >/dev/null 2>&1; then
  deploy_log "$tag present"
  exit 0
fi
if ((pull)); then
  deploy_log "pulling $tag"
  if timeout 120 docker pull -q "$tag" >/dev/null 2>&1; then
    deploy_log "$tag pulled"
    exit 0
  fi
  deploy_log "cannot pull $tag; making it with debootstrap instead"
fi

command -v debootstrap >/dev/null 2>&1 || deploy_apt_install debootstrap ||
  deploy_die "debootstrap is missing and cannot be installed (needs root and apt-get)"
mirror=$(deploy_debian_mirror)
security=$(deploy_security_mirror)
rootfs=$(mktemp -d /tmp/kvc-base-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
deploy_log "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
start=$SECONDS
if ! deploy_as_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
  >"$rootfs.log" 2>&1; then
  tail -n 20 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  deploy_die "debootstrap failed"
fi
rm -f "$rootfs.log"
# What the published image has: every bookworm suite in deb822 form, no package lists or
# downloaded archives.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
tar -C "$rootfs" -c . |
  docker import --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase bookworm $mirror (deploy/make-base-image.sh)" \
    - "$tag" >/dev/null
deploy_log "$tag made in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$tag" |
  awk '{printf "%.0f MB", $1 / 1e6}'))"
