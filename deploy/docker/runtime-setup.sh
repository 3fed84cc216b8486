#!/bin/sh
# Shared by the image builds (Dockerfile, Dockerfile.prebuilt, Dockerfile.cuda) so that every
# image installs its runtime the same way:
#
#   runtime-setup.sh list-packages BIN...  print the Debian/Ubuntu packages that own the shared
#                                          libraries BIN... link to (run where they were built)
#   runtime-setup.sh install LIST          apt-get install the packages named in file LIST, and
#                                          create the unprivileged user kvc (uid 10001) and
#                                          /models, /opt/kvcluster owned by it
#   runtime-setup.sh check BIN...          fail when a binary misses a library; run --help
#                                          (libraries, *.so, are only checked for theirs)
#
# Libraries that no package owns are left out of the list with a note on stderr (libcuda.so.1,
# for one, comes from the host's driver through the NVIDIA container toolkit at run time).
# POSIX sh: the base images have no bash guarantee.
set -eu

# Libraries that no package in the image may provide: the GPU driver's, mounted at run time.
driver_libs='libcuda.so|libnvidia-'

list_packages() {
  [ $# -gt 0 ] || { echo "runtime-setup: list-packages needs binaries" >&2; exit 2; }
  libs=$(ldd "$@" | awk '/=> \//{print $3}' | sort -u)
  # usrmerge: dpkg may know a library under /lib or under /usr/lib; ask for every spelling
  # in one dpkg call (one database read), then take each library's first known one.
  candidates=""
  for lib in $libs; do
    candidates="$candidates $lib $(readlink -f "$lib") /usr$lib ${lib#/usr}"
  done
  # shellcheck disable=SC2086 # one path per word
  owners=$(dpkg -S $candidates 2>/dev/null || true)
  for lib in $libs; do
    owner=""
    for path in "$lib" "$(readlink -f "$lib")" "/usr$lib" "${lib#/usr}"; do
      owner=$(echo "$owners" | awk -v path="$path" '$1 != "diversion" && $NF == path {
        sub(/[:,].*/, "", $1); print $1; exit }')
      [ -n "$owner" ] && break
    done
    if [ -n "$owner" ]; then
      echo "$owner"
    else
      echo "runtime-setup: no package owns $lib; left out" >&2
    fi
  done | sort -u
}

install_runtime() {
  list=$1
  [ -f "$list" ] || { echo "runtime-setup: no package list $list" >&2; exit 2; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2046 # one package per word
  apt-get install -y --no-install-recommends $(cat "$list")
  rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
  groupadd --gid 10001 kvc
  useradd --uid 10001 --gid kvc --no-create-home --home-dir /opt/kvcluster --shell /usr/sbin/nologin kvc
  mkdir -p /models /opt/kvcluster
  chown kvc:kvc /models /opt/kvcluster
}

check_binaries() {
  [ $# -gt 0 ] || { echo "runtime-setup: check needs binaries" >&2; exit 2; }
  missing=$(ldd "$@" | grep 'not found' | grep -Ev "$driver_libs" || true)
  if [ -n "$missing" ]; then
    echo "runtime-setup: libraries missing from the image:" >&2
    echo "$missing" >&2
    exit 1
  fi
  for bin in "$@"; do
    # Libraries (the cuda backend) are only checked for their dependencies above.
    case $bin in *.so) continue ;; esac
    # Skipped where the driver library is absent (a GPU build on a host without a GPU).
    if ldd "$bin" | grep 'not found' | grep -Eq "$driver_libs"; then
      echo "runtime-setup: $bin needs the GPU driver at run time; --help not run here"
      continue
    fi
    # Abseil's --help exits 1 after printing; the loader's failures exit 127, crashes > 128.
    status=0
    "$bin" --help >/dev/null 2>&1 || status=$?
    if [ "$status" -gt 1 ]; then
      echo "runtime-setup: $bin --help exited $status" >&2
      exit 1
    fi
  done
  echo "runtime-setup: $# binaries have every library they need"
}

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
  list-packages) list_packages "$@" ;;
  install) install_runtime "$@" ;;
  check) check_binaries "$@" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
