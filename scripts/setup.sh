#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine, idempotently:
#   1. Debian packages (encoders, tup, fuse3, rsync, ...),
#   2. a virtualenv at .venv with the pinned Python dependencies,
#   3. the Ansible collections, unpacked from the PyPI `ansible` wheel into
#      collections/ansible_collections (Ansible Galaxy is not reachable here), beside the
#      committed link music/profiles that makes this repository the collection music.profiles.
# Each step is skipped when its stamp is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STAMPS=.venv/.stamps
ANSIBLE_WHEEL_VERSION=12.3.0
COLLECTIONS="amazon/aws community/aws community/general ansible/posix containers/podman awx/awx"
APT_PACKAGES="tup fuse3 flac lame opus-tools vorbis-tools python3 python3-mutagen python3-pil
  python3-venv git rsync sox unzip ca-certificates ffmpeg mtools fusefat dosfstools
  exfat-fuse exfatprogs loudgain python3-unidecode"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then echo sudo; else
      echo "setup: installing Debian packages needs root (or sudo)" >&2; exit 1; fi
  fi
}

# 1. Debian packages ---------------------------------------------------------
missing=()
for p in $APT_PACKAGES ${EXTRA_APT_PACKAGES:-}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=$(need_root)
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The virtualenv -----------------------------------------------------------
PYTHON=${PYTHON:-python3}
mkdir -p .venv
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
mkdir -p "$STAMPS"
if [ ! -f "$STAMPS/pip" ] || [ requirements.txt -nt "$STAMPS/pip" ] || [ requirements-dev.txt -nt "$STAMPS/pip" ]; then
  log "installing Python dependencies into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  touch "$STAMPS/pip"
fi
# The build program and the development tools, editable; the collections folder on the path so
# Python (tests, bench) imports this collection as ansible_collections.music.profiles.
if [ ! -f "$STAMPS/projects" ] || [ roles/worker/files/music-build/pyproject.toml -nt "$STAMPS/projects" ] \
   || [ devkit/pyproject.toml -nt "$STAMPS/projects" ] || [ "$STAMPS/pip" -nt "$STAMPS/projects" ]; then
  log "installing the build program and the development tools into .venv (editable)"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e roles/worker/files/music-build -e devkit
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$ROOT/collections" > "$site/music_profiles_collections.pth"
  touch "$STAMPS/projects"
fi

# 3. Collections from the `ansible` wheel ------------------------------------
if [ ! -f "$STAMPS/collections" ] || [ collections/requirements.yml -nt "$STAMPS/collections" ]; then
  log "unpacking collections from ansible==$ANSIBLE_WHEEL_VERSION: $COLLECTIONS"
  mkdir -p .cache/wheels
  wheel=$(ls .cache/wheels/ansible-"$ANSIBLE_WHEEL_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    .venv/bin/pip download -q --disable-pip-version-check --no-deps -d .cache/wheels "ansible==$ANSIBLE_WHEEL_VERSION"
    wheel=$(ls .cache/wheels/ansible-"$ANSIBLE_WHEEL_VERSION"-*.whl | head -n1)
  fi
  # Replace only the collections unpacked here: collections/ansible_collections/music/profiles
  # is this repository's own link (music.profiles -> the root) and stays.
  patterns=()
  for c in $COLLECTIONS; do
    rm -rf "collections/ansible_collections/$c"
    patterns+=("ansible_collections/$c/*")
  done
  unzip -q -o "$wheel" "${patterns[@]}" -d collections
  touch "$STAMPS/collections"
fi
log "ready: $ROOT/.venv ($(.venv/bin/ansible --version | sed -n 1p))"
