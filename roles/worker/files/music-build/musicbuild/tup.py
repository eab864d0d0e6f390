"""tup's part of a build: the rules in its tree and one run over the chosen variants.

The rules (Tupdefault.lua, beside this file) give tup one `music-encode` command per track
and profile; tup runs exactly the commands whose index files or settings changed.
"""
from __future__ import annotations

import os
import subprocess
import sys

from .scan import write_if_changed

HERE = os.path.dirname(os.path.abspath(__file__))


def install_rules(tup_root: str) -> None:
    write_if_changed(os.path.join(tup_root, "Tupdefault.lua"),
                          open(os.path.join(HERE, "Tupdefault.lua"), encoding="utf-8").read())
    # The top folder and the index folder hold no tracks; give them empty Tupfiles.
    for folder in (tup_root, os.path.join(tup_root, "index")):
        os.makedirs(folder, exist_ok=True)
        write_if_changed(os.path.join(folder, "Tupfile.lua"), "-- nothing to build here\n")


def run_tup(tup_root: str, jobs: int, log_path: str, targets: list[str], service_name: str | None) -> int:
    if not os.path.isdir(os.path.join(tup_root, ".tup")):
        subprocess.run(["tup", "init"], cwd=tup_root, check=True, stdout=subprocess.DEVNULL)
    bindir = os.path.join(os.path.dirname(HERE), "bin")
    env = {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/"),
           "MUSIC_ENCODE_SERVICE": service_name or ""}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(["tup", "--keep-going", f"-j{jobs}", *targets], cwd=tup_root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(line)
            sys.stdout.flush()
        return proc.wait()
