#!/usr/bin/env bash
# Podman for the molecule scenarios, kept entirely inside the project (nothing in /etc changes).
#
#   bash scripts/podman.sh          install podman, write its configuration, build the test image
#   source scripts/podman.sh        the same, and export CONTAINERS_CONF / CONTAINERS_STORAGE_CONF
#                                   (and MUSIC_TEST_IMAGE) into the calling shell
#
# 1. Debian packages: podman, runc (crun 1.8 fails on this kernel's hybrid cgroups), netavark and
#    aardvark-dns (container networks), iptables, debootstrap, and the tools the scenarios use on
#    the host (rsync client, losetup, mkfs).
# 2. .cache/podman/containers.conf and storage.conf: runtime runc, cgroupfs, ulimits the VM can
#    grant (no CAP_SYS_RESOURCE here), storage, run and network state under .cache/podman.
# 3. The image $MUSIC_TEST_IMAGE (Debian bookworm, python3, systemd as /sbin/init), built with
#    debootstrap and `podman import`; skipped when the image exists. Set MUSIC_TEST_IMAGE_REBUILD=1
#    to build it again.
# Idempotent; every step is skipped when already done.

_music_podman_main() {
  set -euo pipefail
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  local dir="$root/.cache/podman"
  local image=${MUSIC_TEST_IMAGE:-localhost/music-test-debian:bookworm}
  local packages="podman runc netavark aardvark-dns iptables debootstrap uidmap rsync util-linux e2fsprogs"
  local sudo=""
  log() { printf '\033[1m[podman]\033[0m %s\n' "$*"; }
  as_root() {
    if [ -n "$sudo" ]; then sudo --preserve-env=CONTAINERS_CONF,CONTAINERS_STORAGE_CONF "$@"; else "$@"; fi
  }

  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo=sudo; else
      echo "podman.sh: the test containers are privileged and need root (or sudo)" >&2; return 1; fi
  fi

  # 1. Debian packages ---------------------------------------------------------
  local missing=() p
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  # 2. Project-local configuration ---------------------------------------------
  mkdir -p "$dir/storage" "$dir/run" "$dir/tmp" "$dir/networks"
  cat >"$dir/containers.conf.new" <<EOF
# Written by scripts/podman.sh: podman settings that work on this machine kind.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$dir/tmp"

[network]
network_backend = "netavark"
network_config_dir = "$dir/networks"
EOF
  cat >"$dir/storage.conf.new" <<EOF
# Written by scripts/podman.sh: images and containers live under the project's .cache.
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
  local f
  for f in containers.conf storage.conf; do
    if cmp -s "$dir/$f.new" "$dir/$f"; then rm -f "$dir/$f.new"; else mv "$dir/$f.new" "$dir/$f"; fi
  done
  export CONTAINERS_CONF="$dir/containers.conf"
  export CONTAINERS_STORAGE_CONF="$dir/storage.conf"
  export MUSIC_TEST_IMAGE="$image"

  # 3. The test image ------------------------------------------------------------
  if [ "${MUSIC_TEST_IMAGE_REBUILD:-0}" != 1 ] && as_root podman image exists "$image" 2>/dev/null; then
    log "image $image present"
    return 0
  fi
  local mirror
  mirror=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -o -E 'https?://[^ ]*/debian/?' | grep -v -- '-security' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  local rootfs="$dir/rootfs"
  $sudo rm -rf "$rootfs"
  log "debootstrap bookworm from $mirror (about a minute)"
  $sudo debootstrap --variant=minbase \
    --include=python3,systemd,systemd-sysv,dbus,ca-certificates,procps \
    bookworm "$rootfs" "$mirror" >"$dir/debootstrap.log" 2>&1 || {
      tail -n 20 "$dir/debootstrap.log" >&2; return 1; }
  # A container needs no console gettys, and apt there should not keep .debs.
  $sudo rm -f "$rootfs"/etc/systemd/system/getty.target.wants/*
  $sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  echo "music-test" | $sudo tee "$rootfs/etc/hostname" >/dev/null
  log "importing the root file system as $image"
  as_root podman rmi -f "$image" >/dev/null 2>&1 || true
  $sudo tar -C "$rootfs" -c . | as_root podman import --quiet --change 'CMD ["/sbin/init"]' --change 'ENV container=podman' - "$image" >/dev/null
  $sudo rm -rf "$rootfs"
  log "image $image built"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _music_podman_main
else
  # Sourced: keep the caller's shell options as they were.
  _music_podman_saved=$(set +o)
  _music_podman_main
  _music_podman_rc=$?
  eval "$_music_podman_saved"
  unset _music_podman_saved
  # shellcheck disable=SC2248
  return $_music_podman_rc
fi
