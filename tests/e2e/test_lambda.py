"""The Lambda functions under the cargo-lambda emulator (`cargo lambda watch`),
against real etcd and an S3-compatible server, with no agent running:

- `silt-http` serves the HTTP API: records produced through it are fetched
  through it, then an agent started later serves the same records to a Kafka
  consumer at the same offsets, and records the agent takes are seen by the
  still-warm function.
- `silt-jobs`, invoked with a scheduled-event payload (`cargo lambda invoke
  --data-file`), runs a pass of the tiering jobs; retention visibly moves the
  log start.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

import cluster
import stack

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_DIR = ROOT / "lambda"
EVENT = LAMBDA_DIR / "events" / "scheduled.json"


def cargo_lambda() -> list[str]:
    if shutil.which("cargo-lambda") is None:
        pytest.fail("cargo-lambda is not installed (scripts/install-test-deps.sh installs it)")
    return ["cargo", "lambda"]


class Emulator(stack.Server):
    """`cargo lambda watch` serving both functions of lambda/."""

    def __init__(self, workdir: Path, env: dict):
        self.name = "cargo lambda watch"
        self.env_file = workdir / "lambda.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        (port,) = stack.free_ports(1)
        super().__init__(workdir / "lambda-watch.log", port, None, cwd=LAMBDA_DIR)
        self.ready_timeout = 120.0

    def command(self) -> list[str]:
        return cargo_lambda() + [
            "watch", "--invoke-address", stack.HOST, "--invoke-port", str(self.port),
            "--env-file", str(self.env_file), "--ignore-changes",
        ]

    def ready(self) -> bool:
        return stack.listening(self.port)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0):
        # The functions run as children of the emulator, in its session and
        # process group: stop them with it.
        group = self.pid
        if group:
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                pass
        code = super().stop(sig, grace)
        if group:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return code

    def url(self, path: str) -> str:
        return f"http://{stack.HOST}:{self.port}/lambda-url/silt-http{path}"

    def invoke(self, function: str, event: Path) -> dict:
        out = subprocess.run(
            cargo_lambda() + ["invoke", function, "--invoke-address", stack.HOST,
                              "--invoke-port", str(self.port), "--data-file", str(event)],
            cwd=LAMBDA_DIR, capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, f"invoke {function}: {out.stdout}\n{out.stderr}\n{self.log_tail()}"
        return json.loads(out.stdout)


def request(method: str, url: str, body=None, timeout: float = 120.0):
    """(status, [JSON values]) of one HTTP request."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    dec, text, values, i = json.JSONDecoder(), raw.decode(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        v, i = dec.raw_decode(text, i)
        values.append(v)
    return status, values


@pytest.fixture(scope="module")
def stack_and_emulator(tmp_path_factory):
    work = tmp_path_factory.mktemp("lambda")
    c = cluster.Cluster(work, agents=1, etcd_members=1, s3="moto", name="lam")
    emu = None
    try:
        c.etcd.start()
        c.s3.start()
        c.s3_env = c.s3.env("silt")
        env = {k: v for k, v in c.s3_env.items()}
        env.update({"SILT_ETCD": ",".join(c.etcd.endpoints), "SILT_CLUSTER": c.name,
                    "SILT_FLUSH_INTERVAL": "50ms", "SILT_LOG": "info"})
        emu = Emulator(work, env)
        emu.start()
        yield c, emu
    finally:
        if emu is not None:
            emu.stop()
        c.close()


RECORDS = [
    {"partition_id": 0, "key": {"type": "STRING", "data": "k0"},
     "value": {"type": "JSON", "data": {"n": 0}},
     "headers": [{"name": "trace", "value": base64.b64encode(b"\x00\x01").decode()}],
     "timestamp": 1_700_000_000_000},
    {"partition_id": 0, "value": {"type": "BINARY", "data": base64.b64encode(b"\xff\xfe").decode()},
     "timestamp": "2026-11-30T12:00:00.250Z"},
    {"partition_id": 0, "key": {"type": "BINARY", "data": base64.b64encode(b"key-2").decode()},
     "value": {"type": "STRING", "data": "two"}, "timestamp": 1_700_000_000_002},
]
EXPECTED = [  # (key, value, headers, timestamp ms) as Kafka clients see them
    (b"k0", b'{"n": 0}', [("trace", b"\x00\x01")], 1_700_000_000_000),  # JSON as written
    (None, b"\xff\xfe", [], 1_796_040_000_250),
    (b"key-2", b"two", [], 1_700_000_000_002),
]


def b64(v):
    return None if v is None else base64.b64decode(v["data"])


def test_http_function_serves_produce_and_fetch_with_no_agent_then_an_agent_sees_everything(
        stack_and_emulator):
    c, emu = stack_and_emulator
    cid = f"silt-{c.name}"
    topics = emu.url(f"/v3/clusters/{cid}/topics")

    t0 = time.monotonic()
    status, body = request("GET", emu.url("/v3/clusters"))
    first_call_s = time.monotonic() - t0
    assert status == 200, body
    assert body[0]["data"][0]["cluster_id"] == cid
    status, body = request("POST", topics, {"topic_name": "lam", "partitions_count": 2})
    assert status == 201, body

    # Several records in one request: one delivery report each, dense offsets.
    payload = "".join(json.dumps(r) for r in RECORDS).encode()
    status, reports = request("POST", f"{topics}/lam/records", payload)
    assert status == 200, reports
    assert [r["error_code"] for r in reports] == [200, 200, 200], reports
    assert [r["offset"] for r in reports] == [0, 1, 2]
    assert all(r["partition_id"] == 0 for r in reports)

    status, got = request("GET", f"{topics}/lam/partitions/0/records?offset=0")
    assert status == 200, got
    recs = got[0]["records"]
    assert got[0]["high_watermark"] == 3 and got[0]["next_offset"] == 3
    assert [(r["offset"], b64(r["key"]), b64(r["value"]),
             [(h["name"], base64.b64decode(h["value"])) for h in r["headers"]], r["timestamp"])
            for r in recs] == [(i, *e) for i, e in enumerate(EXPECTED)]

    # Bad input through the function too: a 4xx with the JSON error.
    status, err = request("POST", f"{topics}/lam/records", b'{"value": {"type": "BINARY", "data": "@@"}}')
    assert status == 400 and err[0]["error_code"] == 400, err
    status, err = request("POST", f"{topics}/nope/records", {"value": None})
    assert status == 404 and err[0]["error_code"] == 40401, err

    # An agent started now serves the same records at the same offsets.
    agent = c.agents[0]
    agent.start()
    consumer = Consumer({"bootstrap.servers": agent.addr, "group.id": "lam-check",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition("lam", 0, 0)])
        seen = []
        deadline = time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error():
                continue
            seen.append((m.offset(), m.key(), m.value(),
                         [(k, v) for k, v in (m.headers() or [])], m.timestamp()[1]))
        assert seen == [(i, *e) for i, e in enumerate(EXPECTED)]
        # Nothing more than what the function acknowledged.
        assert consumer.get_watermark_offsets(TopicPartition("lam", 0), timeout=10) == (0, 3)
        assert consumer.get_watermark_offsets(TopicPartition("lam", 1), timeout=10) == (0, 0)

        # kafka-python reads the same.
        from kafka import KafkaConsumer
        from kafka import TopicPartition as KTopicPartition
        kc = KafkaConsumer(bootstrap_servers=agent.addr, enable_auto_commit=False,
                           consumer_timeout_ms=10_000)
        try:
            tp = KTopicPartition("lam", 0)
            kc.assign([tp])
            kc.seek(tp, 0)
            got_kp = []
            for m in kc:
                got_kp.append((m.offset, m.key, m.value,
                               [(k, v) for k, v in (m.headers or [])], m.timestamp))
                if len(got_kp) == 3:
                    break
            assert got_kp == [(i, *e) for i, e in enumerate(EXPECTED)]
        finally:
            kc.close()

        # A record the agent takes is seen by the still-warm function, at the
        # next offset, with its key, headers and timestamp.
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": agent.addr, "acks": "all"})
        acked = []
        p.produce("lam", key=b"kk", value=b"from-kafka", partition=0,
                  headers=[("h", b"\x07v")], timestamp=1_700_000_000_777,
                  on_delivery=lambda err, m: acked.append((err, m.offset() if m else None)))
        assert p.flush(30) == 0
        assert acked == [(None, 3)], acked
    finally:
        consumer.close()
    status, got = request("GET", f"{topics}/lam/partitions/0/records?offset=3&max_wait_ms=5000")
    assert status == 200, got
    assert [(r["offset"], b64(r["key"]), b64(r["value"]),
             [(h["name"], base64.b64decode(h["value"])) for h in r["headers"]], r["timestamp"])
            for r in got[0]["records"]] == [(3, b"kk", b"from-kafka", [("h", b"\x07v")],
                                             1_700_000_000_777)]
    status, reports = request("POST", f"{topics}/lam/records",
                              {"partition_id": 0, "value": {"type": "STRING", "data": "after"}})
    assert status == 200 and reports[0]["offset"] == 4, reports
    # The agent's own job loops would race the function's pass below.
    assert agent.stop() == 0
    print(f"silt-http first call (cold start included) {first_call_s:.2f}s")


def test_jobs_function_runs_a_pass_on_a_scheduled_event_and_retention_moves_the_log_start(
        stack_and_emulator):
    c, emu = stack_and_emulator
    cid = f"silt-{c.name}"
    topics = emu.url(f"/v3/clusters/{cid}/topics")
    status, body = request("POST", topics, {
        "topic_name": "old", "partitions_count": 1,
        "configs": [{"name": "retention.ms", "value": "3600000"}]})
    assert status == 201, body
    # Two requests, two segments: one of records from 2001, one of now.
    old = "".join(json.dumps({"value": {"type": "STRING", "data": f"old-{i}"},
                              "timestamp": 1_000_000_000_000 + i}) for i in range(5)).encode()
    status, reports = request("POST", f"{topics}/old/records", old)
    assert status == 200 and [r["offset"] for r in reports] == [0, 1, 2, 3, 4], reports
    status, reports = request("POST", f"{topics}/old/records",
                              {"value": {"type": "STRING", "data": "new"}})
    assert status == 200 and reports[0]["offset"] == 5, reports

    summary = emu.invoke("silt-jobs", EVENT)
    jobs = {j["job"]: j for j in summary["jobs"]}
    assert set(jobs) == {"retention", "compaction", "cleaner", "tables", "gc"}, summary
    assert jobs["retention"]["ran"] is True, summary
    assert jobs["retention"]["partitions_trimmed"] >= 1, summary
    assert isinstance(summary["checkpoint"], int), summary

    deadline = time.monotonic() + 10
    while True:
        status, got = request("GET", f"{topics}/old/partitions/0/records?offset=5")
        assert status == 200, got
        if got[0]["log_start_offset"] == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got[0]["log_start_offset"] == 5, got
    assert [r["offset"] for r in got[0]["records"]] == [5]
    status, err = request("GET", f"{topics}/old/partitions/0/records?offset=0")
    assert status == 416 and err[0]["error_code"] == 41601, err
