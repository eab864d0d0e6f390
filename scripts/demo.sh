#!/usr/bin/env bash
# `make demo`: generate a small tagged FLAC library, compile it into every default profile
# with tup on this machine, serve the result read-only over rsync on 127.0.0.1, and print
# the command that fetches a profile. Re-running it rebuilds incrementally (nothing to do).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
DEMO=${DEMO_DIR:-$PWD/demo}
PORT=${DEMO_PORT:-8873}
mkdir -p "$DEMO"
chmod 755 "$DEMO"

if [ ! -d "$DEMO/library" ]; then
  echo "== Generating a sample library in $DEMO/library"
  .venv/bin/python -m music_devkit.library "$DEMO/library" --albums 4 --tracks 4 --seconds 8
fi

echo "== Compiling $DEMO/library into the profiles of group_vars/all/profiles.yml"
ansible-playbook -i inventory/local.yml playbooks/compile.yml \
  -e music_sources_dir="$DEMO/library" -e music_builds_dir="$DEMO/builds"

echo "== Serving $DEMO/builds on rsync://127.0.0.1:$PORT/"
ansible-playbook -i inventory/local.yml playbooks/serve.yml \
  -e music_builds_dir="$DEMO/builds" -e server_address=127.0.0.1 -e server_port="$PORT"

echo
echo "== Report: $DEMO/builds/report.json"
python3 - "$DEMO/builds/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for name, p in r["profiles"].items():
    print(f"  {name:6} {p['encoded']:3} encoded  {p['retagged']:3} retagged  {p['unchanged']:3} unchanged  "
          f"{p['removed']:3} removed  {len(p['failed']):3} failed  -> {p['path']}")
PY
echo
echo "The profiles are served now:"
rsync "rsync://127.0.0.1:$PORT/"
echo
echo "Fetch one, e.g. the phone copy:"
echo "  rsync -rtv rsync://127.0.0.1:$PORT/phone/ ./phone/"
echo "Stop serving: /usr/local/sbin/music-rsyncd-ctl stop (or systemctl stop music-rsyncd where systemd runs)"
