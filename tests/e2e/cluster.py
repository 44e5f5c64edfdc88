"""A silt cluster for end-to-end tests: etcd (1 or 3 members), an
S3-compatible server (moto or SeaweedFS) and N `silt agent` processes, all
started and stopped by PID through localstack/stack.py.

Every agent gets its own zone (agent i, counting from 1, is `a<i>` in zone
`z<i>`), its own Kafka and HTTP ports (chosen at run time), its own data
directory and log file, and SILT_LEASE_TTL=3s, so that a dead agent leaves
Metadata within a few seconds. A client whose `client.id` contains
`silt_az=z<i>` sees agent i as the leader of every partition, so it writes
(or reads) through that agent only: see `Cluster.client_id(i)`.

    c = Cluster(tmp_path, agents=3, etcd_members=3, s3="moto").start()
    c.bootstrap              # every agent, comma-separated
    c.kill9(1); c.restart(1)  # agent a2 (index 1): crash, then start again
    c.stop_all()              # SIGTERM every agent (clean shutdown)
    c.metrics(0)              # {"silt_object_store_puts_total": 42.0, ...}
    c.close()                 # stops everything by PID; safe to call twice

Also here: a background producer load that records every delivery report,
and reading a topic through one chosen agent. The checks on what was read
are in verify.py; raw Kafka requests (Metadata with a chosen client.id) in
localstack/rawkafka.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import rawkafka
import roundtrip as rt
import stack

DEFAULT_SILT_BIN = "/var/tmp/silt-target/debug/silt"
HOST = stack.HOST
READY_TIMEOUT_S = 40.0


def silt_bin() -> str:
    """The silt binary under test: $SILT_BIN, else the debug build."""
    binary = os.environ.get("SILT_BIN", DEFAULT_SILT_BIN)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise RuntimeError(f"silt binary not found or not executable: {binary} (set SILT_BIN)")
    return binary


# --------------------------------------------------------------------------
# Agents and the cluster
# --------------------------------------------------------------------------


class Agent(stack.Server):
    """One `silt agent` process. Its id, zone, ports and directories stay the
    same across restarts."""

    ready_timeout = READY_TIMEOUT_S

    def __init__(self, index: int, workdir: Path, cluster: "Cluster"):
        self.index = index
        self.agent_id = f"a{index + 1}"
        self.zone = f"z{index + 1}"
        self.name = f"agent {self.agent_id} zone {self.zone}"
        self.cluster = cluster
        self.data_dir = workdir / self.agent_id
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port, http_port = stack.free_ports(2)
        super().__init__(workdir / f"{self.agent_id}.log", port, http_port, cwd=self.data_dir)

    def command(self) -> list[str]:
        c = self.cluster
        return [
            c.binary, "agent",
            "--agent-id", self.agent_id,
            "--cluster", c.name,
            "--etcd", ",".join(c.etcd.endpoints),
            "--bucket", c.s3_env["SILT_BUCKET"],
            "--listen", self.addr,
            "--advertise", self.addr,
            "--zone", self.zone,
            "--data-dir", str(self.data_dir),
            "--http", f"{HOST}:{self.http_port}",
        ]

    def environment(self) -> dict:
        # Nothing from the caller's SILT_* environment leaks into the agent.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SILT_", "AWS_"))}
        env.update({k: v for k, v in self.cluster.s3_env.items() if k.startswith("AWS_")})
        env.update({"SILT_LOG": "info", "NO_COLOR": "1", "SILT_LEASE_TTL": "3s"})
        extra = self.cluster.agent_env
        env.update(extra(self.index) if callable(extra) else extra)
        return env

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Cluster:
    def __init__(self, workdir, agents: int = 3, etcd_members: int = 3, s3: str = "moto",
                 agent_env=None, name: str = "e2e", etcd_tls: dict | None = None):
        """agent_env: extra environment for every agent, a dict or a function
        of the agent's index returning one (e.g. a fault seed per agent)."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = silt_bin()
        self.name = name
        self.agent_env = agent_env if callable(agent_env) else dict(agent_env or {})
        self.etcd = stack.Etcd(self.dir / "stack", members=etcd_members, tls=etcd_tls)
        self.s3 = stack.S3_KINDS[s3](self.dir / "stack")
        self.s3_env: dict = {}
        self.agents = [Agent(i, self.dir / "agents", self) for i in range(agents)]
        self.closed = False

    # -- addresses -----------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return ",".join(a.addr for a in self.agents)

    @staticmethod
    def client_id(i: int, name: str = "silt-e2e") -> str:
        """A client.id that makes agent i the leader of every partition."""
        return f"{name},silt_az=z{i + 1}"

    def node_id(self, i: int) -> int:
        """Agent i's broker node id, as Metadata reports it (by its rack)."""
        md = rawkafka.metadata(self.agents[i].addr)
        for node, (_, port, rack) in md.brokers.items():
            if rack == self.agents[i].zone:
                return node
        raise AssertionError(f"agent {i} is not in its own Metadata: {md.brokers}")

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "Cluster":
        t0 = time.monotonic()
        try:
            self.etcd.start()
            self.s3.start()
            self.s3_env = self.s3.env("silt")
            rt.log(f"cluster: etcd ({len(self.etcd.members)} members) and {self.s3.kind} up "
                   f"in {time.monotonic() - t0:.1f}s")
            for a in self.agents:
                a.start(wait=False)
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        rt.log(f"cluster: {len(self.agents)} agents ready in {time.monotonic() - t0:.1f}s "
               f"({', '.join(f'{a.agent_id}={a.addr}' for a in self.agents)})")
        return self

    def live(self) -> list[Agent]:
        return [a for a in self.agents if a.should_run]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Every running agent listens and its Metadata lists exactly the
        running agents as brokers (with their zones as racks)."""
        live = [i for i, a in enumerate(self.agents) if a.should_run]
        for i in live:
            self.agents[i].wait_ready(timeout)
        self.wait_brokers(live, timeout, RuntimeError)

    def wait_brokers(self, addrs_of: list[int], timeout: float = 30.0,
                     error: type[Exception] = AssertionError) -> None:
        """Wait until the Metadata of every agent in `addrs_of` lists exactly
        those agents (after a crash: the dead one left); `error` after
        `timeout` seconds."""
        want = sorted((HOST, self.agents[i].port, self.agents[i].zone) for i in addrs_of)
        deadline = time.monotonic() + timeout
        while True:
            seen = {}
            for i in addrs_of:
                try:
                    seen[i] = sorted(rawkafka.metadata(self.agents[i].addr).brokers.values())
                except rawkafka.NO_ANSWER as e:
                    seen[i] = repr(e)
            if all(v == want for v in seen.values()):
                return
            dead = [self.agents[i] for i in addrs_of if not self.agents[i].alive()]
            if dead:
                raise RuntimeError(f"agent {dead[0].agent_id} exited\n{dead[0].log_tail()}")
            if time.monotonic() > deadline:
                raise error(f"Metadata of agents {[self.agents[i].agent_id for i in addrs_of]} "
                            f"after {timeout:.0f}s: want brokers {want}, saw {seen}")
            time.sleep(0.2)

    def agent_lease(self, i: int) -> int:
        """The etcd lease holding agent i's membership key (0 if none),
        read through etcd's JSON gateway."""
        import base64
        import json

        key = f"/silt/{self.name}/agents/{self.agents[i].agent_id}"
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        for endpoint in self.etcd.endpoints:
            r = stack.http(f"{endpoint}/v3/kv/range", body, timeout=5.0)
            if r and r[0] == 200:
                kvs = json.loads(r[1]).get("kvs") or []
                return int(kvs[0].get("lease", 0)) if kvs else 0
        raise RuntimeError(f"no etcd member answered a range request for {key}")

    def revoke_agent_lease(self, i: int) -> int:
        """Revoke agent i's membership lease, as etcd does when keep-alives
        stop arriving for longer than the TTL. Returns the lease id."""
        import json

        lease = self.agent_lease(i)
        assert lease, f"agent {self.agents[i].agent_id} has no membership lease"
        body = json.dumps({"ID": str(lease)}).encode()
        for endpoint in self.etcd.endpoints:
            r = stack.http(f"{endpoint}/v3/lease/revoke", body, timeout=5.0)
            if r and r[0] == 200:
                rt.log(f"cluster: revoked membership lease {lease:x} of agent "
                       f"{self.agents[i].agent_id}")
                return lease
        raise RuntimeError(f"no etcd member revoked lease {lease:x}")

    def kill9(self, i: int) -> None:
        rt.log(f"cluster: kill -9 agent {self.agents[i].agent_id} (pid {self.agents[i].pid})")
        self.agents[i].kill9()

    def restart(self, i: int) -> None:
        """Start agent i again (same id, ports, directories), stopping it
        first if it runs; wait until every running agent lists it."""
        a = self.agents[i]
        if a.alive():
            a.stop()
        a.start(wait=False)
        self.wait_ready()
        rt.log(f"cluster: agent {a.agent_id} restarted (pid {a.pid})")

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every agent; returns their exit codes."""
        codes = {}
        for a in self.agents:  # all at once, then wait for each
            if a.alive():
                os.kill(a.pid, signal.SIGTERM)
        for a in self.agents:
            codes[a.agent_id] = a.stop()
        rt.log(f"cluster: agents stopped, exit codes {codes}")
        return codes

    def start_all(self) -> None:
        for a in self.agents:
            if not a.alive():
                a.start(wait=False)
        self.wait_ready()

    def crashed(self) -> dict[str, int]:
        return {a.agent_id: rc for a in self.agents if (rc := a.crashed()) is not None}

    def metrics(self, i: int) -> dict[str, float]:
        m = self.agents[i].metrics()
        if m is None:
            raise RuntimeError(f"agent {self.agents[i].agent_id}: no answer from /metrics")
        return m

    def close(self) -> None:
        """Stop every process this cluster started, by PID. Safe to call
        twice and after a partial start."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for a in self.agents:
            try:
                a.stop(signal.SIGKILL)
            except Exception as e:  # keep stopping the rest
                errors.append(f"{a.agent_id}: {e!r}")
        for what, stop_fn in (("etcd", self.etcd.stop), (self.s3.kind, self.s3.stop)):
            try:
                stop_fn()
            except Exception as e:
                errors.append(f"{what}: {e!r}")
        if errors:
            raise RuntimeError("cluster teardown: " + "; ".join(errors))

    def log_tails(self) -> str:
        parts = [a.log_tail() for a in self.agents]
        for name in self.etcd.members:
            parts.append(f"etcd {name} log={self.etcd.log(name)}\n"
                         f"{stack.tail(self.etcd.log(name), 1500)}")
        parts.append(f"{self.s3.kind} log={self.s3.log}\n{stack.tail(self.s3.log, 1500)}")
        return "\n\n".join(parts)


# --------------------------------------------------------------------------
# Producer load in the background
# --------------------------------------------------------------------------


@dataclass
class ProducerSpec:
    name: str
    records: list
    config: dict  # confluent-kafka settings on top of the defaults below
    # Send a record again after a failed delivery report, up to this many
    # times (retries made by the application: each is a new send).
    resend: int = 0


@dataclass
class LoadResult:
    acks: dict[int, tuple[int, int]] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)  # idx -> delivery error
    undelivered: dict[str, int] = field(default_factory=dict)  # producer -> after flush
    seconds: float = 0.0


class Load:
    """confluent-kafka producers, one thread each, each sending its records
    (to the partition named by the record) and keeping every delivery
    report. `reported()` counts reports so far, `acked_by(name)` one
    producer's acknowledgements, `longest_gap()` the longest time without
    any acknowledgement; `wait()` joins. `abort_all()` stops every load
    still running (test teardown). `on_report(name, idx, err, msg, resent)`,
    if given, sees every delivery report as it arrives (resent: the record
    was sent again after this failure, see ProducerSpec.resend)."""

    running: "set[Load]" = set()

    def __init__(self, bootstrap: str, topic: str, specs: list[ProducerSpec],
                 flush_timeout: float = 120.0, pace: float = 0.0, on_report=None):
        self.bootstrap, self.topic, self.specs = bootstrap, topic, specs
        self.on_report = on_report
        self.flush_timeout = flush_timeout
        self.pace = pace  # seconds to sleep after each 100 records (0: none)
        self.result = LoadResult()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []  # exceptions in producer threads
        self.t0 = 0.0
        self.per_producer: dict[str, int] = {s.name: 0 for s in specs}
        self.ack_times: list[float] = []
        self.fail_times: list[tuple[float, str]] = []  # (monotonic time, error)
        self.aborted = threading.Event()

    def config(self, spec: ProducerSpec) -> dict:
        conf = {
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 10,
            "message.max.bytes": rt.MAX_MESSAGE_BYTES,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "message.timeout.ms": 60_000,
            "topic.metadata.refresh.interval.ms": 2_000,
        }
        conf.update(spec.config)
        return conf

    def _run(self, spec: ProducerSpec) -> None:
        from confluent_kafka import Producer

        try:
            producer = Producer(self.config(spec))
            sends: dict[int, int] = {}

            def send(r, wait: bool = True) -> None:
                sends[r.idx] = sends.get(r.idx, 0) + 1
                while True:
                    try:
                        producer.produce(
                            self.topic, value=r.value, key=r.key, partition=r.partition,
                            headers=r.headers,
                            on_delivery=lambda err, msg, r=r: on_delivery(r, err, msg),
                        )
                        return
                    except BufferError:
                        if not wait or self.aborted.is_set():
                            raise
                        producer.poll(0.05)

            def on_delivery(r, err, msg):
                resent = (err is not None and sends[r.idx] <= spec.resend
                          and not self.aborted.is_set())
                if resent:
                    try:
                        send(r, wait=False)  # called inside poll(): must not wait
                    except BufferError:
                        resent = False
                with self.lock:
                    if err is not None:
                        self.result.failures[r.idx] = str(err)
                        self.fail_times.append((time.monotonic(), str(err)))
                    else:
                        self.result.failures.pop(r.idx, None)  # an earlier send failed
                        self.result.acks[r.idx] = (msg.partition(), msg.offset())
                        self.per_producer[spec.name] += 1
                        self.ack_times.append(time.monotonic())
                    if self.on_report is not None:
                        self.on_report(spec.name, r.idx, err, msg, resent)

            for n, r in enumerate(spec.records):
                if self.aborted.is_set():
                    producer.purge()
                    break
                try:
                    send(r)
                except BufferError:
                    break  # aborted while the queue was full
                producer.poll(0)
                if self.pace and n % 100 == 99:
                    time.sleep(self.pace)
            deadline = time.monotonic() + self.flush_timeout
            remaining = len(producer)
            while remaining and time.monotonic() < deadline:
                if self.aborted.is_set():
                    producer.purge()
                remaining = producer.flush(0.5)
            if remaining:
                with self.lock:
                    self.result.undelivered[spec.name] = remaining
        except Exception as e:
            with self.lock:
                self.errors.append(f"producer {spec.name}: {e!r}")

    def start(self) -> "Load":
        Load.running.add(self)
        self.t0 = time.monotonic()
        for spec in self.specs:
            t = threading.Thread(target=self._run, args=(spec,), name=f"load-{spec.name}",
                                 daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def reported(self) -> tuple[int, int]:
        """(acknowledged, failed) delivery reports so far."""
        with self.lock:
            return len(self.result.acks), len(self.result.failures)

    def wait_acked(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.reported()[0] < n:
            if not any(t.is_alive() for t in self.threads):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.reported()} (acked, failed) delivery reports "
                                     f"after {timeout:.0f}s; wanted {n} acks")
            time.sleep(0.05)

    def failures_after(self, t: float) -> list[tuple[float, str]]:
        """Failed delivery reports that arrived after monotonic time t."""
        with self.lock:
            return [f for f in self.fail_times if f[0] > t]

    def acked_by(self, name: str) -> int:
        with self.lock:
            return self.per_producer[name]

    def longest_gap(self) -> tuple[float, float]:
        """(seconds, start relative to the load's start) of the longest
        interval without an acknowledgement."""
        with self.lock:
            times = [self.t0] + sorted(self.ack_times)
        best = (0.0, 0.0)
        for a, b in zip(times, times[1:]):
            if b - a > best[0]:
                best = (b - a, a - self.t0)
        return best

    def wait_acked_by(self, name: str, n: int, timeout: float) -> float:
        """Wait until producer `name` has n acknowledgements; returns the
        seconds waited."""
        t0 = time.monotonic()
        while self.acked_by(name) < n:
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"producer {name}: {self.acked_by(name)} acks after "
                                     f"{timeout:.0f}s, wanted {n}")
            time.sleep(0.05)
        return time.monotonic() - t0

    @classmethod
    def abort_all(cls, timeout: float = 10.0) -> None:
        for load in list(cls.running):
            load.aborted.set()
        for load in list(cls.running):
            for t in load.threads:
                t.join(timeout)
            cls.running.discard(load)

    def wait(self, timeout: float) -> LoadResult:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self.threads):
            Load.running.discard(self)
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            raise AssertionError(f"producers {stuck} still running after {timeout:.0f}s "
                                 f"(reports so far: {self.reported()})")
        if self.errors:
            raise AssertionError("; ".join(self.errors))
        self.result.seconds = time.monotonic() - self.t0
        total = sum(len(s.records) for s in self.specs)
        gap, at = self.longest_gap()
        rt.log(f"load: {len(self.result.acks)}/{total} records acknowledged, "
               f"{len(self.result.failures)} failed, by {len(self.specs)} producers in "
               f"{self.result.seconds:.1f}s (longest time without an ack: {gap:.1f}s "
               f"from t={at:.1f}s)")
        return self.result


def run_load(bootstrap: str, topic: str, specs: list[ProducerSpec],
             timeout: float = 180.0) -> LoadResult:
    return Load(bootstrap, topic, specs).start().wait(timeout)


def failure_summary(failures: dict[int, str], limit: int = 5) -> str:
    from collections import Counter

    kinds = Counter(failures.values())
    return ", ".join(f"{n} x {err!r}" for err, n in kinds.most_common(limit))


# --------------------------------------------------------------------------
# Reading through one agent, membership
# --------------------------------------------------------------------------


def consume_via(cluster: Cluster, i: int, topic: str, partitions: int):
    """Read the whole topic through agent i (it leads every partition for
    this client.id). Returns (messages per partition, high watermarks)."""
    cid = cluster.client_id(i, "silt-e2e-reader")
    md = rawkafka.metadata(cluster.agents[i].addr, [topic], client_id=cid)
    node = cluster.node_id(i)
    leaders = md.leaders.get(topic, {})
    assert sorted(leaders) == list(range(partitions)) and set(leaders.values()) == {node}, (
        f"agent {cluster.agents[i].agent_id}: Metadata for client.id {cid!r} should make node "
        f"{node} the leader of all {partitions} partitions of {topic}, got {leaders}"
    )
    return rt.consume_confluent(cluster.bootstrap, topic, partitions,
                                extra_config={"client.id": cid})


class MembershipWatch:
    """Asks the given agents for Metadata every `interval` seconds in the
    background and records every answer that does not list all of them
    (an agent that is alive but dropped out of the membership)."""

    def __init__(self, cluster: Cluster, indices: list[int], interval: float = 0.5):
        self.cluster, self.indices, self.interval = cluster, list(indices), interval
        self.want = {(HOST, cluster.agents[i].port) for i in indices}
        self.gaps: list[tuple[float, str, list]] = []  # (t, asked agent, missing ports)
        self.samples = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="membership-watch", daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            for i in self.indices:
                a = self.cluster.agents[i]
                try:
                    seen = {(h, p) for h, p, _ in
                            rawkafka.metadata(a.addr, timeout=2.0).brokers.values()}
                except rawkafka.NO_ANSWER:
                    continue
                self.samples += 1
                if not self.want <= seen:
                    missing = sorted(p for _, p in self.want - seen)
                    self.gaps.append((time.monotonic() - self.t0, a.agent_id, missing))

    def __enter__(self) -> "MembershipWatch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(10)

    def gaps_after(self, t: float) -> list[tuple[float, str, list]]:
        """Gaps recorded after monotonic time t."""
        return [g for g in self.gaps if g[0] + self.t0 > t]

    def summary(self) -> str:
        if not self.gaps:
            return f"membership stable ({self.samples} Metadata samples)"
        ports = {self.cluster.agents[i].port: self.cluster.agents[i].agent_id for i in self.indices}
        first = self.gaps[0]
        return (f"{len(self.gaps)} of {self.samples} Metadata samples missed live agents; "
                f"first at t={first[0]:.1f}s: {first[1]} did not list "
                f"{[ports.get(p, p) for p in first[2]]}; last at t={self.gaps[-1][0]:.1f}s")
