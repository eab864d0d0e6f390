#!/usr/bin/env bash
# ansible-test sanity on the collection's plugins (plugins/, meta/), offline. Run by `make test`
# and `make sanity`; arguments go to `ansible-test sanity` (e.g. --test pylint, -v).
#
# What ansible-test needs, and where it gets it here:
#   - the collection at a path ending in ansible_collections/<namespace>/<name>, with the
#     collections it imports beside it: collections/ansible_collections/music/profiles (the
#     committed link to the root) next to amazon/aws from scripts/setup.sh;
#   - one virtualenv per sanity test, which it bootstraps with a get-pip.py downloaded from
#     ci-files.testing.ansible.com (unreachable here) and fills with its pinned requirements.
#     This script keeps a wheelhouse of those requirements (fetched once with the pip `make
#     setup` uses, again only when ansible-test's pins change) and a stand-in get-pip.py that
#     installs pip from it; during the run pip has no index, only the wheelhouse.
# ansible-test's HOME (its cached virtualenvs, ~40 MB) is .cache/sanity; its results go to
# tests/output/ (git-ignored). No exception is needed today; one would go, with its reason, in
# tests/sanity/ignore-<ansible-core major.minor>.txt (ansible-lint refuses some kinds there).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
CONTENT=$ROOT/collections/ansible_collections/music/profiles
CACHE=$ROOT/.cache/sanity
WHEELS=$CACHE/wheels

log() { printf '\033[1m[sanity]\033[0m %s\n' "$*"; }

if [ ! -d "$CONTENT/plugins" ] || [ ! -d collections/ansible_collections/amazon/aws ]; then
  echo "sanity: run make setup first (the collections and the music/profiles link)" >&2
  exit 1
fi

# The requirement files ansible-test pins, and the pip version it bootstraps.
TEST_DATA=$("$PY" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_data"))')
PIP_VERSION=$("$PY" -c '
import re, ansible_test._internal.python_requirements as r, inspect
print(re.search(r"pip=\x27([0-9.]+)\x27", inspect.getsource(r.get_venv_packages)).group(1))')
REQUIREMENTS=()
for f in "$TEST_DATA"/requirements/sanity.*.txt; do
  # The changelog test runs only for antsibull-changelog fragments, which this project has not.
  case $f in *sanity.changelog.txt) continue ;; esac
  REQUIREMENTS+=(-r "$f")
done
pins=$(cat "$TEST_DATA"/requirements/sanity.*.txt | sha256sum | cut -c1-16)

# 1. The wheelhouse (network once; PyPI through the pip configuration of this machine).
mkdir -p "$WHEELS"
if [ "$(cat "$CACHE/wheels.stamp" 2>/dev/null)" != "$pins-$PIP_VERSION" ]; then
  log "downloading ansible-test's sanity requirements into $WHEELS"
  "$PY" -m pip download -q --disable-pip-version-check -d "$WHEELS" "pip==$PIP_VERSION" "${REQUIREMENTS[@]}"
  echo "$pins-$PIP_VERSION" > "$CACHE/wheels.stamp"
fi

# 2. pip without an index, and a stand-in for get-pip.py where ansible-test looks before
# downloading one. ansible-test passes its children only PATH and HOME of the environment, so
# both live under its HOME: pip reads $HOME/.config/pip/pip.conf.
mkdir -p "$CACHE/.config/pip"
printf '[global]\nno-index = true\nfind-links = %s\ndisable-pip-version-check = true\n' "$WHEELS" \
  > "$CACHE/.config/pip/pip.conf"
GET_PIP=$CACHE/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py
mkdir -p "$(dirname "$GET_PIP")"
cat > "$GET_PIP" <<EOF
"""Stand-in for get-pip.py, written by scripts/sanity.sh: installs pip from the wheelhouse."""
import glob
import sys

# get-pip.py's own options; the rest are pip install arguments (pip==X.Y, ...).
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel", "--no-pip")]
sys.path.insert(0, sorted(glob.glob("$WHEELS/pip-$PIP_VERSION-*.whl"))[0])
from pip._internal.cli.main import main  # noqa: E402

sys.exit(main(["install", *args]))
EOF

# 3. The run: content root given explicitly (the link's path, not the resolved one).
log "ansible-test sanity on plugins/ and meta/ (ansible-core $("$PY" -c 'import ansible; print(ansible.__version__)'))"
start=$SECONDS
cd "$CONTENT"
env HOME="$CACHE" ANSIBLE_TEST_CONTENT_ROOT="$CONTENT" PATH="$ROOT/.venv/bin:$PATH" \
  "$ROOT/.venv/bin/ansible-test" sanity --local --python 3.11 --color no "$@" plugins/ meta/
log "passed in $((SECONDS - start)) s"
