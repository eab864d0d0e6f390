# -*- coding: utf-8 -*-
# Copyright: contributors to the music.profiles collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the build program into one archive named by its content hash."""
from __future__ import annotations

DOCUMENTATION = r"""
name: build_program
author: music.profiles contributors (!UNKNOWN)
short_description: Pack the worker's build program into one archive named by its content hash
description:
  - Packs a build program folder (a Python package with launchers, as in the worker role's
    C(files/music-build)) into one zip archive on the controller, byte for byte the same for
    the same content, and returns its path and its stamp (a hash of its content).
  - The worker role installs the archive on a host only when C(<install dir>/current/<stamp>.stamp)
    is missing there, so a run where nothing changed makes one check, not one per file.
  - The archive runs with C(python3 ARCHIVE install --into DIR) (see C(musicbuild/install.py)).
options:
  _terms:
    description: The folder of the program (holding C(pyproject.toml) and C(musicbuild/)).
    required: true
    type: list
    elements: path
"""

EXAMPLES = r"""
- name: Pack the build program
  ansible.builtin.set_fact:
    program: "{{ query('music.profiles.build_program', role_path ~ '/files/music-build') | first }}"
"""

RETURN = r"""
_raw:
  description: One dictionary per folder.
  type: list
  elements: dict
  contains:
    path:
      description: The archive, in the controller's temporary folder.
      type: path
    stamp:
      description: Hash of the archive's content (16 hex digits).
      type: str
    version:
      description: The collection's version (galaxy.yml), recorded in the archive.
      type: str
"""

import hashlib
import json
import os
import re
import stat
import zipfile

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase
from ansible.utils.path import unfrackpath
from ansible import constants as C

# Only what the program needs on a host: its package and launchers.
SKIP_DIRS = {"__pycache__", ".pytest_cache", "build", "dist"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")
# (raise SystemExit rather than sys.exit: validate-modules reads "sys.exit(" in a plugin as a call)
MAIN = b"from musicbuild.install import main\nraise SystemExit(main())\n"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
VERSION_RE = re.compile(r"^version:\s*['\"]?([^'\"\s#]+)", re.M)


def collect(folder):
    """[(archive name, bytes, executable)] of the program's files, sorted, links followed."""
    files = []
    for top, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info"))
        for name in sorted(names):
            if name.startswith(".") or name.endswith(SKIP_SUFFIXES):
                continue
            path = os.path.join(top, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            with open(path, "rb") as fh:
                data = fh.read()
            files.append((rel, data, bool(os.stat(path).st_mode & stat.S_IXUSR)))
    return sorted(files)


def collection_version(folder):
    """The version of the collection this plugin belongs to: galaxy.yml in a checkout,
    MANIFEST.json in an installed copy (a built collection carries no galaxy.yml)."""
    root = os.path.join(os.path.dirname(os.path.realpath(__file__)), os.pardir, os.pardir)
    try:
        with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as fh:
            match = VERSION_RE.search(fh.read())
        if match:
            return match.group(1)
    except OSError:
        pass
    try:
        with open(os.path.join(root, "MANIFEST.json"), encoding="utf-8") as fh:
            return json.load(fh)["collection_info"]["version"]
    except (OSError, ValueError, KeyError):
        return "0+unknown"


def pack(folder, out_dir):
    if not os.path.isfile(os.path.join(folder, "musicbuild", "__init__.py")):
        raise AnsibleLookupError(f"build_program: {folder} holds no musicbuild package")
    files = collect(folder)
    version = collection_version(folder)
    digest = hashlib.sha256(version.encode())
    for rel, data, executable in files:
        digest.update(b"%s\0%d\0%d\0" % (rel.encode("utf-8", "surrogateescape"), executable, len(data)))
        digest.update(data)
    stamp = digest.hexdigest()[:16]
    files.append(("musicbuild/_version.py",
                  f'"""Written when the program was packed."""\nVERSION = "{version}"\nSTAMP = "{stamp}"\n'.encode(), False))
    files.append(("__main__.py", MAIN, False))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"music-build-{stamp}.pyz")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as raw:
            raw.write(b"#!/usr/bin/python3 -I\n")
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
                for rel, data, executable in sorted(files):
                    info = zipfile.ZipInfo(rel, ZIP_TIME)
                    info.external_attr = (0o100755 if executable else 0o100644) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    zf.writestr(info, data)
        os.replace(tmp, path)
    return {"path": path, "stamp": stamp, "version": version}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        out_dir = unfrackpath(C.DEFAULT_LOCAL_TMP)
        os.makedirs(out_dir, exist_ok=True)
        results = []
        for term in terms:
            try:
                results.append(pack(unfrackpath(term), out_dir))
            except OSError as exc:
                raise AnsibleLookupError(f"build_program: cannot pack {term}: {to_native(exc)}") from exc
        return results
