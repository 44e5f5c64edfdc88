"""Metrics, consumer lag, the dashboard and the alert rules, checked with a
real Prometheus (Debian's `prometheus` package) scraping real agents.

* test_rules_check_and_fire: `promtool check rules` on ops/prometheus/
  silt-rules.yml and `promtool test rules` on its unit tests (each alert
  fires on the series that should page and stays quiet on a healthy
  cluster); `promtool check config` on the example prometheus.yml.
* test_dashboard_and_rules_on_silt_dev: Prometheus scrapes `silt dev`
  every second under load (produce, a consumer group, a refused request);
  every query of every dashboard panel and the query of every alert and
  recording rule returns data through Prometheus's HTTP API.
* test_dashboard_lag_and_one_exporter_on_a_cluster: the same against three
  agents on etcd and moto, plus: consumer lag is exported by exactly one
  agent; the lag of a group that stops consuming grows with what is
  produced, and returns to 0 once it catches up and commits.
* test_request_histogram_matches_the_client: 200 sequential produce
  requests timed by the client; the agent's Produce histogram counted
  exactly 200, its sum is at most the client's total and at least 80 % of
  it, and its p50, p90 and p99 (interpolated in the buckets, as
  histogram_quantile does) are within a factor of two (one bucket) of the
  client's.

Run: cd tests/e2e && python3 -m pytest -q test_metrics.py
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path


import cluster as cl
import rawkafka
import roundtrip as rt
import stack
import test_cluster
from conftest import SiltBroker

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "silt-rules.yml"
DASHBOARD = OPS / "grafana" / "silt-dashboard.json"
HOST = stack.HOST

make_cluster = test_cluster.make_cluster

# Short job intervals, so that job durations have samples within a test.
JOBS_SOON = {
    "SILT_RETENTION_CHECK_INTERVAL": "2s",
    "SILT_GC_INTERVAL": "2s",
    "SILT_COMPACTION_INTERVAL": "2s",
    "SILT_CONSUMER_LAG_INTERVAL": "1s",
}


def promtool(*args: str) -> str:
    r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"promtool {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


class Prometheus(stack.Server):
    """A Prometheus server on a free loopback port scraping `targets` every
    second as job "silt", with silt's rules loaded."""

    name = "prometheus"

    def __init__(self, workdir: Path, targets: list[str]):
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "prometheus.log", cwd=workdir)
        self.dir = workdir
        self.config = workdir / "prometheus.yml"
        shutil.copy(RULES, workdir / "silt-rules.yml")
        self.config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": ["silt-rules.yml"],
            "scrape_configs": [{"job_name": "silt", "static_configs": [{"targets": targets}]}],
        }))

    def command(self) -> list[str]:
        return ["prometheus", f"--config.file={self.config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address={self.addr}"]

    def query(self, expr: str) -> list[dict]:
        url = f"http://{self.addr}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        r = stack.http(url, timeout=10.0)
        assert r is not None, f"Prometheus did not answer: {expr}"
        body = json.loads(r[1])
        assert r[0] == 200 and body.get("status") == "success", f"{expr}: {r[0]} {body}"
        return body["data"]["result"]

    def scalar(self, expr: str) -> float | None:
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None

    def wait_data(self, expr: str, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            res = self.query(expr)
            if res:
                return res
            if time.monotonic() > deadline:
                return []
            time.sleep(1.0)

    def targets_up(self) -> int:
        return int(self.scalar('sum(up{job="silt"})') or 0)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, query) for every target of every panel, with Grafana's
    rate interval set to what a 1 s scrape needs."""
    d = json.loads(DASHBOARD.read_text())
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"].replace("$__rate_interval", "30s")))
    assert len(out) >= 40, f"only {len(out)} dashboard queries"
    return out


def rule_queries() -> list[tuple[str, str]]:
    """(rule, query): a recording rule's expression; an alert's expression
    without its final comparison (what it compares is what must exist)."""
    import yaml  # PyYAML comes with the test requirements

    out = []
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        for r in g["rules"]:
            expr = r["expr"].strip()
            if "alert" in r:
                m = re.fullmatch(r"(.*\S)\s*(>|<|>=|<=|==|!=)\s*[0-9.e+-]+", expr, re.S)
                assert m, f"alert {r['alert']}: expression is not `<query> <op> <threshold>`: {expr}"
                out.append((r["alert"], m.group(1)))
            else:
                out.append((r["record"], expr))
    return out


class Trickle:
    """A producer writing a few records a second in the background, so that
    the queries run while data flows."""

    def __init__(self, bootstrap: str, topic: str):
        import threading

        from confluent_kafka import Producer

        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        self.topic, self.stop_flag = topic, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.p.produce(self.topic, b"trickle")
            self.p.poll(0)
            time.sleep(0.1)
        self.p.flush(10)

    def __enter__(self) -> "Trickle":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_flag.set()
        self.thread.join(20)


def check_all_queries(prom: Prometheus, timeout: float, live_agents: int) -> None:
    """Every dashboard and rule query returns data within `timeout` (the
    first ones wait for enough scrapes for rates); the live agents are what
    they should be (the no-live-agents rule's query returns data always)."""
    assert prom.wait_data(f"max(silt_live_agents) == {live_agents}", 30), \
        f"max(silt_live_agents): {prom.query('max(silt_live_agents)')}, want {live_agents}"
    missing = []
    deadline = time.monotonic() + timeout
    for name, expr in dashboard_queries() + rule_queries():
        if not prom.wait_data(expr, max(1.0, deadline - time.monotonic())):
            missing.append(f"{name}: {expr}")
    assert not missing, "queries without data:\n" + "\n".join(missing)


def load(bootstrap: str, topic: str, group: str, records: int = 2000) -> None:
    """Produce, consume in a group (committing), and draw two refusals:
    Metadata for an invalid topic name, and a connection that sends junk."""
    from confluent_kafka import Consumer, Producer

    rt.create_topic(bootstrap, topic, 3)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(records):
        p.produce(topic, key=str(i).encode(), value=b"v" * 100, partition=i % 3)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 60
    while got < records and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
            if got % 500 == 0 or got == records:
                c.commit(asynchronous=False)
    c.close()
    assert got >= records, f"consumed {got} of {records}"
    md = rawkafka.metadata(bootstrap.split(",")[0], ["not a valid topic name!"])
    assert md is not None
    with socket.create_connection(tuple(bootstrap.split(",")[0].rsplit(":", 1)), timeout=5) as s:
        s.sendall(b"\x00\x00\x00\x04junk")
        s.settimeout(5)
        try:
            s.recv(16)
        except OSError:
            pass


def test_rules_check_and_fire(tmp_path):
    promtool("check", "rules", str(RULES))
    promtool("test", "rules", str(OPS / "prometheus" / "silt-rules.test.yml"))
    # The example configuration, with its rules file beside it.
    shutil.copy(OPS / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(RULES, tmp_path / "silt-rules.yml")
    promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert len(rule_queries()) >= 8


def test_dashboard_and_rules_on_silt_dev(tmp_path):
    http_port = stack.free_ports(1)[0]
    broker = SiltBroker(cl.silt_bin(), tmp_path / "silt",
                        ["--http", f"{HOST}:{http_port}"], JOBS_SOON)
    prom = Prometheus(tmp_path / "prom", [f"{HOST}:{http_port}"])
    try:
        broker.start()
        prom.start()
        load(broker.bootstrap, "metrics-dev", "metrics-dev-group")
        assert prom.wait_data('up{job="silt"} == 1', 30), "Prometheus does not scrape silt dev"
        with Trickle(broker.bootstrap, "metrics-dev-trickle"):
            check_all_queries(prom, timeout=90, live_agents=1)
        # The lag of the group that read everything is 0 on every partition.
        lag = prom.query('max by (partition) (silt_consumer_group_lag{group="metrics-dev-group"})')
        assert len(lag) == 3 and all(float(s["value"][1]) == 0 for s in lag), lag
        assert broker.crashed() is None
    finally:
        prom.stop()
        broker.stop()


def lag_of(prom: Prometheus, group: str) -> float | None:
    return prom.scalar(f'sum(max by (topic, partition) (silt_consumer_group_lag{{group="{group}"}}))')


def wait_lag(prom: Prometheus, group: str, want, timeout: float) -> float:
    """Waits until the group's lag satisfies `want`; returns it."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = lag_of(prom, group)
        if seen is not None and want(seen):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"lag of {group}: last seen {seen}")


def test_dashboard_lag_and_one_exporter_on_a_cluster(make_cluster, tmp_path):
    c = make_cluster(agents=3, etcd_members=1, agent_env=JOBS_SOON)
    prom = Prometheus(tmp_path / "prom", [f"{HOST}:{a.http_port}" for a in c.agents])
    try:
        prom.start()
        load(c.bootstrap, "metrics-cluster", "metrics-cluster-group")
        deadline = time.monotonic() + 30
        while prom.targets_up() < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert prom.targets_up() == 3, "Prometheus does not scrape the three agents"
        with Trickle(c.bootstrap, "metrics-cluster-trickle"):
            check_all_queries(prom, timeout=90, live_agents=3)

        # One agent exports lag, and each partition's lag comes from one agent.
        assert prom.scalar("sum(silt_consumer_lag_exporter)") == 1.0
        per_partition = prom.query(
            'count by (group, topic, partition) (silt_consumer_group_lag{group="metrics-cluster-group"})')
        assert len(per_partition) == 3 and all(float(s["value"][1]) == 1 for s in per_partition), \
            per_partition

        # A group that stops consuming falls behind by what is produced...
        from confluent_kafka import Consumer, Producer, TopicPartition

        group, topic = "lagger", "metrics-lag"
        rt.create_topic(c.bootstrap, topic, 3)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})

        def produce(n: int) -> None:
            for i in range(n):
                p.produce(topic, value=b"x" * 50, partition=i % 3)
            assert p.flush(30) == 0

        def consume_all_and_commit(n: int, end: int) -> None:
            """Reads the n records after the committed offsets; commits the
            end of the topic (`end` records in all)."""
            cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
            cons.subscribe([topic])
            got, deadline = 0, time.monotonic() + 60
            while got < n and time.monotonic() < deadline:
                m = cons.poll(0.5)
                if m is not None and not m.error():
                    got += 1
            cons.commit(asynchronous=False)
            committed = cons.committed([TopicPartition(topic, i) for i in range(3)], timeout=10)
            cons.close()
            assert got == n, f"consumed {got} of {n}"
            assert sum(tp.offset for tp in committed) == end, committed

        produce(300)
        consume_all_and_commit(300, 300)
        assert wait_lag(prom, group, lambda v: v == 0, 30) == 0
        produce(150)
        first = wait_lag(prom, group, lambda v: v >= 150, 30)
        produce(150)
        second = wait_lag(prom, group, lambda v: v >= 300, 30)
        assert (first, second) == (150, 300), (first, second)
        # The alert's query sees the lag grow while writes go on (its
        # recording rule samples every 15 s).
        total, growth = 600, []
        deadline = time.monotonic() + 90
        while not growth and time.monotonic() < deadline:
            produce(30)
            total += 30
            growth = prom.query(f'deriv(silt:consumer_group_lag:sum{{group="{group}"}}[10m]) > 0')
            time.sleep(1.0)
        assert growth, "the lag-growth query never saw the lag grow"
        # ...and returns to 0 once it catches up.
        consume_all_and_commit(total - 300, total)
        assert wait_lag(prom, group, lambda v: v == 0, 30) == 0
    finally:
        prom.stop()


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over cumulative (le, count) buckets."""
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return buckets[-1][0]


def produce_histogram(text: str) -> tuple[list[tuple[float, float]], float, float]:
    buckets, total, count = [], 0.0, 0.0
    for line in text.splitlines():
        if not line.startswith("silt_kafka_request_duration_seconds") or 'api="Produce"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("silt_kafka_request_duration_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', name).group(1)
            buckets.append((float(le), float(value)))
        elif name.startswith("silt_kafka_request_duration_seconds_sum"):
            total = float(value)
        elif name.startswith("silt_kafka_request_duration_seconds_count"):
            count = float(value)
    buckets.sort()
    return buckets, total, count


def test_request_histogram_matches_the_client(tmp_path):
    http_port = stack.free_ports(1)[0]
    broker = SiltBroker(cl.silt_bin(), tmp_path / "silt", ["--http", f"{HOST}:{http_port}"],
                        {"SILT_FLUSH_INTERVAL": "40ms"})
    from confluent_kafka import Producer

    try:
        broker.start()
        rt.create_topic(broker.bootstrap, "timed", 1)
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                      "max.in.flight.requests.per.connection": 1})
        # Warm up (metadata, connection), then take the histogram's base.
        p.produce("timed", b"warm")
        assert p.flush(10) == 0

        def scrape() -> str:
            r = stack.http(f"http://{HOST}:{http_port}/metrics", timeout=5)
            assert r and r[0] == 200, r
            return r[1].decode()

        b0, s0, n0 = produce_histogram(scrape())
        client = []
        n = 200
        for i in range(n):
            done = []
            t = time.perf_counter()
            p.produce("timed", str(i).encode(), on_delivery=lambda e, m: done.append(e))
            p.flush(10)
            client.append(time.perf_counter() - t)
            assert done == [None], done
        b1, s1, n1 = produce_histogram(scrape())
        assert n1 - n0 == n, f"histogram counted {n1 - n0} produce requests, the client sent {n}"
        server_sum, client_sum = s1 - s0, sum(client)
        assert 0.8 * client_sum <= server_sum <= client_sum, (server_sum, client_sum)
        base = dict(b0)
        delta = [(le, c - base.get(le, 0.0)) for le, c in b1]
        client.sort()
        report = []
        for q in (0.5, 0.9, 0.99):
            want = client[min(n - 1, math.ceil(q * n) - 1)]
            got = bucket_quantile(q, delta)
            report.append(f"p{int(q * 100)}: agent {got * 1000:.1f} ms, client {want * 1000:.1f} ms")
            assert want / 2 <= got <= want * 2, "; ".join(report)
        rt.log("histogram vs client: " + "; ".join(report))
    finally:
        broker.stop()
