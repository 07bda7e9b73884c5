"""Shared fixtures. One real local Ray cluster per test session, started only when needed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")  # as actors/__init__.py, before any ray import


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    from actors.ray_lean import boot_env

    if ray.is_initialized():  # an earlier test without this fixture made Ray start one itself
        ray.shutdown()
    # as the head ``moltbot up`` starts (``control.worker_env``): every worker inherits it
    os.environ.update(boot_env())
    ray.init(
        address="local",  # always a fresh cluster: never one a `ray start` left behind
        num_cpus=4,
        object_store_memory=200 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
