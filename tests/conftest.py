"""Fixtures shared by every test layer."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests share 2 cores with encoders and playbooks: no per-example deadline, and
# slow data generation is not a failure.
settings.register_profile("project", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("project")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def moto_server():
    """One moto server per test session, on a free loopback port."""
    from music_devkit.moto import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server):
    """A moto server emptied before the test."""
    moto_server.reset()
    return moto_server


@pytest.fixture(scope="session")
def world_readable_tmp() -> Path:
    """A scratch directory other users (the `music` build user, rsync's nobody) can read.

    pytest's own tmp_path lives under a 0700 directory.
    """
    base = ROOT / ".tmp"
    base.mkdir(mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    return base
