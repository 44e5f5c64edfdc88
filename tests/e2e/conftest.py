"""Fixtures for the silt end-to-end tests.

The `silt` fixture runs a real broker process (`silt dev`) on a free loopback
port with a fresh data directory, and stops it (by PID) at teardown.

Environment:
    SILT_BIN          path to the silt binary
                      (default: /var/tmp/silt-target/debug/silt)
    SILT_E2E_RECORDS  records per round-trip test (default: 100000)

Extra command-line arguments for one test:
    @pytest.mark.silt_args("--default-partitions", "3")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Make `import roundtrip` work regardless of pytest's rootdir/import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_SILT_BIN = "/var/tmp/silt-target/debug/silt"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_BYTES = 8000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, nbytes: int = LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            data = f.read()
    except FileNotFoundError:
        return "<no log file>"
    text = data.decode("utf-8", errors="replace")
    if size > nbytes:
        text = "...\n" + text
    return text


class SiltBroker:
    """A `silt dev` process bound to 127.0.0.1:<port> with its own data dir."""

    def __init__(self, binary: str, workdir: Path, extra_args: list[str] | None = None):
        self.binary = binary
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / "silt.stdout.log"
        self.stderr_path = workdir / "silt.stderr.log"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        # True between start() and stop(): an exit in that window is a crash.
        self.should_run = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        return [
            self.binary,
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            *self.extra_args,
        ]

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"silt already running (pid {self.proc.pid})")
        env = dict(os.environ)
        env["SILT_LOG"] = "info"
        env["NO_COLOR"] = "1"  # plain log files
        self.starts += 1
        self.should_run = True
        banner = f"\n===== start #{self.starts}: {' '.join(self.command())} =====\n"
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            out.write(banner.encode())
            err.write(banner.encode())
            out.flush()
            err.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=str(self.workdir),
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"silt exited with code {rc} before accepting connections on "
                    f"{self.bootstrap}\n--- stderr tail ---\n{_tail(self.stderr_path)}"
                    f"\n--- stdout tail ---\n{_tail(self.stdout_path)}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError as e:
                last_err = e
                time.sleep(0.1)
        pid = self.proc.pid
        self._kill()
        raise RuntimeError(
            f"silt (pid {pid}) did not accept connections on {self.bootstrap} within "
            f"{START_TIMEOUT_S:.0f}s (last error: {last_err})\n"
            f"--- stderr tail ---\n{_tail(self.stderr_path)}"
            f"\n--- stdout tail ---\n{_tail(self.stdout_path)}"
        )

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def stop(self) -> int | None:
        """SIGTERM, wait up to 20 s, then SIGKILL. Returns the exit code."""
        self.should_run = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with open(self.stderr_path, "ab") as err:
                    err.write(
                        f"\n===== pid {self.proc.pid} ignored SIGTERM for "
                        f"{STOP_TIMEOUT_S:.0f}s; sending SIGKILL =====\n".encode()
                    )
                self._kill()
        return self.proc.returncode

    def restart(self) -> None:
        """Stop the broker and start it again on the same data dir and port."""
        self.stop()
        self.start()

    def crashed(self) -> int | None:
        """Exit code if the broker exited on its own while it should run."""
        if self.should_run and self.proc is not None:
            return self.proc.poll()
        return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        return (
            f"silt {self.bootstrap} pid={self.pid} data_dir={self.data_dir}\n"
            f"--- stderr tail ({self.stderr_path}) ---\n{_tail(self.stderr_path)}\n"
            f"--- stdout tail ({self.stdout_path}) ---\n{_tail(self.stdout_path)}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
    if rep.failed:
        broker = getattr(item, "_silt_broker", None)
        if broker is not None:
            rep.sections.append(("silt broker logs", broker.log_tail()))
        cluster = getattr(item, "_silt_cluster", None)  # test_cluster.py
        if cluster is not None:
            rep.sections.append(("silt cluster logs", cluster.log_tails()))


@pytest.fixture
def silt(request, tmp_path):
    binary = os.environ.get("SILT_BIN", DEFAULT_SILT_BIN)
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        pytest.fail(f"silt binary not found or not executable: {binary} (set SILT_BIN)")
    marker = request.node.get_closest_marker("silt_args")
    extra_args = [str(a) for a in marker.args] if marker else []
    broker = SiltBroker(binary, tmp_path, extra_args)
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
