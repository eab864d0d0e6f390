# Test stand-in for amazon.aws.aws_ssm (see devkit/music_devkit/aws_hosts.py and docs/aws.md).
from __future__ import annotations

DOCUMENTATION = """
name: music_ssm_podman
short_description: Reach the podman container that stands in for an EC2 instance, with Session Manager's limits
description:
  - >-
    Runs each command in the container named C(MUSIC_E2E_PREFIX) + the instance id, through
    C(podman exec), under the same per-command limit as amazon.aws.aws_ssm 10.x
    (O(ssm_timeout), variable C(ansible_aws_ssm_timeout), default 60 s). A command that
    outlasts it is killed with its process group (as the ended session's shell takes its
    children with it; processes that detached themselves survive, as they do on a host),
    the failure is retried O(reconnection_retries) times with aws_ssm's own retry wrapper,
    then raised with aws_ssm's message, C(EXEC command '...' timeout on host) and the id.
  - >-
    Files are copied with C(podman cp) and modules are pipelined (aws_ssm carries both
    through an S3 bucket).
  - >-
    The environment in C(MUSIC_E2E_HOST_ENV) (JSON) is given to every command: the endpoint
    and credentials that stand in for the instance profile.
options:
  instance_id:
    description: The instance id (the aws_ec2 inventory and the playbooks name hosts by it).
    vars:
      - name: inventory_hostname
  ssm_timeout:
    description: Seconds a command may run, as amazon.aws.aws_ssm's option of the same name.
    default: 60
    type: integer
    vars:
      - name: ansible_aws_ssm_timeout
  reconnection_retries:
    description: Retries after a failure, as amazon.aws.aws_ssm's option of the same name.
    default: 3
    type: integer
    vars:
      - name: ansible_aws_ssm_retries
"""

import json
import os
import subprocess
import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display
from ansible_collections.amazon.aws.plugins.plugin_utils.ssm.common import ssm_retry
from ansible_collections.amazon.aws.plugins.plugin_utils.ssm.sessionmanager import SSMProcessManagerTimeOutFailure

display = Display()


class Connection(ConnectionBase):
    transport = "music_ssm_podman"
    # aws_ssm copies each module through its S3 bucket; file transfer is not what this stand-in
    # proves (docs/aws.md), and pipelining spares a podman round trip or three per task.
    has_pipelining = True
    # aws_ssm's sessions start as ssm-user; become (sudo) gives root.
    default_user = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reconnection_retries = 3

    def verbosity_display(self, level: int, message: str) -> None:
        if level >= 4:
            display.vvvv(message)
        else:
            display.vv(message)

    def _container_name(self) -> str:
        return os.environ.get("MUSIC_E2E_PREFIX", "") + str(self.get_option("instance_id"))

    def _podman(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], capture_output=True, **kwargs)

    def _connect(self):
        self.reconnection_retries = int(self.get_option("reconnection_retries"))
        if not self._connected:
            name = self._container_name()
            state = self._podman("inspect", "--format", "{{.State.Running}}", name)
            if state.returncode != 0 or to_text(state.stdout).strip() != "true":
                # What Session Manager says of an instance that is not (or no longer) there.
                raise AnsibleConnectionFailure(
                    f"An error occurred (TargetNotConnected) when calling the StartSession operation: "
                    f"{self.get_option('instance_id')} is not connected.")
            self._connected = True
        return self

    @ssm_retry
    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        limit = int(self.get_option("ssm_timeout"))
        env = json.loads(os.environ.get("MUSIC_E2E_HOST_ENV") or "{}")
        argv = ["podman", "exec", "-i"]
        for key, value in sorted(env.items()):
            argv += ["--env", f"{key}={value}"]
        # coreutils timeout runs the command in its own process group and, at the limit, kills
        # that group: what ends with an SSM session ends here.
        argv += [self._container_name(), "timeout", "--signal=KILL", str(limit), "/bin/sh", "-c", cmd]
        display.vvv(f"EXEC (limit {limit} s) {cmd}", host=self.get_option("instance_id"))
        start = time.monotonic()
        proc = subprocess.run(argv, input=to_bytes(in_data) if in_data else b"", capture_output=True)
        elapsed = time.monotonic() - start
        if proc.returncode in (124, 137) and elapsed >= limit:
            self.close()
            raise SSMProcessManagerTimeOutFailure(f"EXEC command '{cmd}' timeout on host: {self.get_option('instance_id')}")
        if proc.returncode != 0:
            state = self._podman("inspect", "--format", "{{.State.Running}}", self._container_name())
            if state.returncode != 0 or to_text(state.stdout).strip() != "true":
                # The instance went away during the command (terminated, reclaimed, powered off):
                # the session ends with it, as Session Manager's does.
                self.close()
                raise AnsibleConnectionFailure(
                    f"The session to {self.get_option('instance_id')} ended: the instance is gone "
                    f"({to_text(proc.stderr).strip()[-200:]})")
        return proc.returncode, proc.stdout, proc.stderr

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._connect()
        if not os.path.exists(to_bytes(in_path)):
            raise AnsibleFileNotFound(f"file or module does not exist: {in_path}")
        proc = self._podman("cp", in_path, f"{self._container_name()}:{out_path}")
        if proc.returncode != 0:
            raise AnsibleError(f"failed to transfer file to {in_path} {out_path}:\n{to_text(proc.stderr)}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        self._connect()
        proc = self._podman("cp", f"{self._container_name()}:{in_path}", out_path)
        if proc.returncode != 0:
            raise AnsibleError(f"failed to transfer file from {in_path} {out_path}:\n{to_text(proc.stderr)}")

    def close(self):
        self._connected = False
