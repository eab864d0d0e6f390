"""The AWS end-to-end harness (devkit/music_devkit/aws_hosts.py): one world per test module."""
from __future__ import annotations

import os

import pytest



@pytest.fixture(scope="module")
def harness():
    if os.geteuid() != 0:
        pytest.skip("the AWS harness runs privileged podman containers and loop devices: run as root")
    from music_devkit.aws_hosts import Harness

    with Harness() as world:
        yield world
