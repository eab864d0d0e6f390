"""A local connection that, like amazon.aws.aws_ssm, ends any command running longer than a
per-command limit: the stand-in that proves long steps survive such a connection.

    ANSIBLE_CONNECTION_PLUGINS=tests/e2e/connection_plugins ansible-playbook ... \
      -e ansible_connection=music_limited -e music_limited_seconds=8

A command over the limit is killed, noted in the file named by $MUSIC_LIMITED_LOG (one line
each) and fails the host as unreachable (aws_ssm would retry it, after killing it).
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: music_limited
short_description: local execution that ends commands longer than a limit (tests only)
description:
  - Runs commands on the controller like ansible.builtin.local, each under a time limit.
options:
  limit:
    description: Seconds a command may run.
    type: int
    default: 60
    vars:
      - name: music_limited_seconds
"""

import os
import shlex
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection


class Connection(LocalConnection):
    transport = "music_limited"

    def exec_command(self, cmd, in_data=None, sudoable=True):
        limit = int(self.get_option("limit"))
        # timeout(1) runs the command in a process group of its own and kills that group at
        # the limit; a daemon that left the group (the async wrapper's job) lives on, as a
        # process does that Session Manager's session started in the background.
        wrapped = f"timeout -s KILL {limit} /bin/sh -c {shlex.quote(cmd)}"
        began = time.monotonic()
        rc, out, err = super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
        if rc == 137 and time.monotonic() - began >= limit - 0.5:
            log = os.environ.get("MUSIC_LIMITED_LOG")
            if log:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(f"{limit}s exceeded: {cmd[:200]}\n")
            raise AnsibleConnectionFailure(f"command ended after the connection's per-command limit of {limit} s")
        return rc, out, err
