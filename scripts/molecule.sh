#!/usr/bin/env bash
# Runs the molecule scenarios on podman: `molecule test -s NAME` for each, in order.
#
#   bash scripts/molecule.sh                 every scenario under molecule/
#   bash scripts/molecule.sh volume server   just these
#
# Sets up podman first (scripts/podman.sh: packages, project-local configuration, the Debian
# bookworm test image), detaches loop devices left over by an interrupted earlier run, and
# fails when any scenario fails. `make test` calls this after pytest.
# Everything is in a function so that bash has read the whole file before it runs any of it.
main() {
  set -euo pipefail
  cd "$(dirname "$0")/.."
  ROOT=$PWD
  export PATH="$ROOT/.venv/bin:$PATH"
  ORDER="volume server worker volmgr"
  # What the scenarios share (driver, ansible.cfg, podman settings, test_sequence). molecule
  # finds it by itself in a git checkout; named here so that a copy without .git runs the same.
  BASE=.config/molecule/config.yml

  log() { printf '\033[1m[molecule]\033[0m %s\n' "$*"; }

  # shellcheck source=scripts/podman.sh
  source scripts/podman.sh

  if [ $# -gt 0 ]; then
    scenarios=("$@")
  else
    scenarios=()
    for s in $ORDER; do [ -f "molecule/$s/molecule.yml" ] && scenarios+=("$s"); done
    for f in molecule/*/molecule.yml; do
      s=$(basename "$(dirname "$f")")
      case " $ORDER " in *" $s "*) ;; *) scenarios+=("$s") ;; esac
    done
  fi
  for s in "${scenarios[@]}"; do
    [ -f "molecule/$s/molecule.yml" ] || { echo "molecule.sh: no scenario molecule/$s" >&2; exit 2; }
  done

  # Loop devices belong to the host and outlive containers: a run of a scenario killed before
  # its cleanup leaves them attached to images under .cache/molecule-volumes/<scenario>.
  for s in "${scenarios[@]}"; do
    [ -d ".cache/molecule-volumes/$s" ] || continue
    while IFS= read -r -d '' img; do
      for dev in $(losetup --noheadings --output NAME --associated "$img" 2>/dev/null); do
        log "detaching $dev left over from an earlier run ($img)"
        losetup --detach "$dev" || true
      done
    done < <(find ".cache/molecule-volumes/$s" -name '*.img' -print0)
  done

  failed=()
  summary=()
  for s in "${scenarios[@]}"; do
    log "scenario $s"
    start=$SECONDS
    if molecule -c "$BASE" test -s "$s"; then
      summary+=("$s: passed in $((SECONDS - start)) s")
    else
      summary+=("$s: FAILED after $((SECONDS - start)) s")
      failed+=("$s")
    fi
  done
  for line in "${summary[@]}"; do log "$line"; done
  if [ ${#failed[@]} -gt 0 ]; then
    log "failed scenarios: ${failed[*]}"
    exit 1
  fi
}

main "$@"
