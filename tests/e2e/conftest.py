"""Fixtures for the silt end-to-end tests.

The `silt` fixture runs a real broker process (`silt dev`) on a free loopback
port with a fresh data directory, and stops it (by PID) at teardown. Processes
are started and stopped through localstack/stack.py, as are the clusters of
cluster.py.

Environment:
    SILT_BIN          path to the silt binary
                      (default: /var/tmp/silt-target/debug/silt)
    SILT_E2E_RECORDS  records per round-trip test (default: 100000)

Extra command-line arguments, or environment variables, for one test:
    @pytest.mark.silt_args("--default-partitions", "3")
    @pytest.mark.silt_env(SILT_TEST_FAULTS="put_error_rate=0.1,seed=3")
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Make `import roundtrip` (this directory) and `import stack` (localstack/)
# work regardless of pytest's rootdir/import mode.
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "localstack")]

import cluster  # noqa: E402
import stack  # noqa: E402


class SiltBroker(stack.Server):
    """A `silt dev` process bound to 127.0.0.1:<port> with its own data dir;
    its output goes to WORKDIR/silt.log."""

    name = "silt dev"

    def __init__(self, binary: str, workdir: Path, extra_args: list[str] | None = None,
                 extra_env: dict[str, str] | None = None):
        super().__init__(workdir / "silt.log", cwd=workdir)
        self.binary = binary
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(extra_env or {})

    @property
    def bootstrap(self) -> str:
        return self.addr

    def command(self) -> list[str]:
        return [self.binary, "dev", "--data-dir", str(self.data_dir), "--listen", self.bootstrap,
                *self.extra_args]

    def environment(self) -> dict:
        # plain log files
        return {**os.environ, "SILT_LOG": "info", "NO_COLOR": "1", **self.extra_env}

    def restart(self) -> None:
        """Stop the broker and start it again on the same data dir and port."""
        self.stop()
        self.start()

    def log_tail(self) -> str:
        return f"data_dir={self.data_dir}\n" + super().log_tail(8000)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
    if rep.failed:
        broker = getattr(item, "_silt_broker", None)
        if broker is not None:
            rep.sections.append(("silt broker logs", broker.log_tail()))
        c = getattr(item, "_silt_cluster", None)  # test_cluster.py
        if c is not None:
            rep.sections.append(("silt cluster logs", c.log_tails()))


@pytest.fixture
def silt(request, tmp_path):
    try:
        binary = cluster.silt_bin()
    except RuntimeError as e:
        pytest.fail(str(e))
    marker = request.node.get_closest_marker("silt_args")
    extra_args = [str(a) for a in marker.args] if marker else []
    env_marker = request.node.get_closest_marker("silt_env")
    extra_env = {k: str(v) for k, v in env_marker.kwargs.items()} if env_marker else {}
    broker = SiltBroker(binary, tmp_path, extra_args, extra_env)
    request.node._silt_broker = broker
    try:
        broker.start()
        yield broker
        rc = broker.crashed()
        if rc is not None:
            pytest.fail(f"silt exited unexpectedly during the test with code {rc}\n{broker.log_tail()}")
    finally:
        broker.stop()


@pytest.fixture
def n_records() -> int:
    return int(os.environ.get("SILT_E2E_RECORDS", "100000"))
