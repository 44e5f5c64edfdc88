#!/usr/bin/env python3
"""Load generator worker for the benchmark: one process, one librdkafka client.

The orchestrator (bench.py) starts several of these in parallel so that the
Python side is not the ceiling. Every broker is driven by exactly the same
code and client settings (confluent-kafka, i.e. librdkafka).

    loadgen.py produce --bootstrap B --topic T --partitions N --seconds S
                       [--rate R] [--size 1024] [--lat-out FILE]
                       [--count N] [--keys K] [--random-values]
    loadgen.py consume --bootstrap B --topic T --partitions 0,1,2 --count N
                       [--timeout S] [--lat-out FILE]
    loadgen.py http-produce --url http://HOST:PORT --path /v3/clusters/C/topics/T/records
                       --batch B --threads N --seconds S [--size 1024] [--lat-out FILE]

Each prints one JSON line with its counts and times on stdout. Latencies (in
microseconds, float64) go to --lat-out as raw native doubles.

Produce latency is librdkafka's own per-message latency (from the produce()
call to the acknowledgement, Message.latency()). Every value starts with a
16-byte header: the wall-clock send time in nanoseconds (time.time_ns, shared
by all processes on this machine) and a sequence number, so a consumer can
compute the end-to-end latency without any shared state.

With --keys K (flat out only) each record gets one of K keys
("key-000000"…), in turn, and goes to the partition `key index % N`, so
every record of a key is in the same partition (what a compacted topic
needs); --random-values fills the rest of each value with random bytes
instead of zeros, so that compression has nothing to gain from the padding.

http-produce drives silt's HTTP API (docs/http-api.md) instead: N threads,
each with its own keep-alive connection (http.client, HTTP/1.1), POST one
request of B records (concatenated JSON objects, BINARY base64 values of
--size bytes, the same 16-byte header + padding as Kafka values) and wait for
its answer before sending the next. Latency is per request (send to the last
byte of the answer, which comes after the commit). A request counts as
delivered only if its status is 200 and every one of its B delivery reports
has error_code 200; anything else is counted as failed.
"""

from __future__ import annotations

import argparse
import array
import base64
import http.client
import json
import os
import resource
import struct
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

HEADER = struct.Struct("<qq")

# The same producer settings for every broker. acks=all; no idempotence so
# that in-flight requests per connection are not capped at 5 (with a 250 ms
# flush, a cap of 5 would make the client, not the broker, the limit).
PRODUCER_CONFIG = {
    "acks": "all",
    "enable.idempotence": False,
    "linger.ms": 10,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "compression.type": "none",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 65_536,
    "message.timeout.ms": 120_000,
    "request.timeout.ms": 60_000,
    "socket.send.buffer.bytes": 4 * 1024 * 1024,
}

CONSUMER_CONFIG = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "fetch.wait.max.ms": 100,
    "fetch.min.bytes": 1,
    "fetch.max.bytes": 52_428_800,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
    "queued.max.messages.kbytes": 262_144,
    "socket.receive.buffer.bytes": 4 * 1024 * 1024,
}


def produce(args) -> dict:
    errors: list[str] = []
    lat = array.array("d")
    now_ns = time.time_ns

    def on_error_only(err, msg):
        if err is not None:
            errors.append(str(err))

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
            return
        # librdkafka's own measure: produce() call to acknowledgement.
        lat.append(msg.latency() * 1e6)

    conf = dict(PRODUCER_CONFIG)
    conf["bootstrap.servers"] = args.bootstrap
    conf["client.id"] = f"bench-producer-{args.id}"
    if args.rate <= 0:
        # Flat out: delivery reports only for errors, to keep Python's cost
        # per message minimal.
        conf["delivery.report.only.error"] = True
        conf["on_delivery"] = on_error_only
    else:
        conf["on_delivery"] = on_delivery
    p = Producer(conf)

    # Warm up metadata so that the first produce does not time its lookup.
    p.list_topics(args.topic, timeout=30)

    pad = b"\x00" * (args.size - HEADER.size)
    parts = args.partitions
    offset = args.id  # spread processes over partitions
    sent = 0
    start = time.monotonic()
    end = start + args.seconds
    pack = HEADER.pack
    prod = p.produce
    topic = args.topic
    limit = args.count if args.count > 0 else None
    if args.keys > 0:
        if args.rate > 0:
            raise SystemExit("--keys: flat out only (no --rate)")
        keys = [b"key-%06d" % i for i in range(args.keys)]
        nkeys = len(keys)
        first = (offset * 7919) % nkeys  # processes start at different keys
        urandom = os.urandom
        padn = len(pad)
        while True:
            for _ in range(1000 if limit is None else min(1000, limit - sent)):
                k = (first + sent) % nkeys
                value = pack(now_ns(), sent) + (urandom(padn) if args.random_values else pad)
                while True:
                    try:
                        prod(topic, value, keys[k], partition=k % parts)
                        break
                    except BufferError:
                        p.poll(0.002)
                sent += 1
            p.poll(0)
            if time.monotonic() >= end or (limit is not None and sent >= limit):
                break
    elif args.rate <= 0:
        while True:
            for _ in range(1000 if limit is None else min(1000, limit - sent)):
                value = pack(now_ns(), sent) + pad
                part = (sent + offset) % parts
                while True:
                    try:
                        prod(topic, value, partition=part)
                        break
                    except BufferError:
                        p.poll(0.002)
                sent += 1
            p.poll(0)
            if time.monotonic() >= end or (limit is not None and sent >= limit):
                break
    else:
        rate = args.rate
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - start) * rate)
            n = 0
            while sent < due and n < 2000:
                value = pack(now_ns(), sent) + pad
                part = (sent + offset) % parts
                try:
                    prod(topic, value, partition=part)
                except BufferError:
                    p.poll(0.001)
                    continue
                sent += 1
                n += 1
            p.poll(0)
            if sent >= due:
                time.sleep(0.0005)
    produced_until = time.monotonic()
    left = p.flush(180)
    done = time.monotonic()
    if args.lat_out:
        with open(args.lat_out, "wb") as f:
            lat.tofile(f)
    delivered = sent - left - len(errors)
    key_bytes = len(b"key-%06d" % 0) if args.keys > 0 else 0
    return {
        "sent": sent,
        "delivered": delivered,
        "undelivered": left,
        "errors": len(errors),
        "first_errors": errors[:5],
        "bytes": delivered * args.size,
        "key_bytes": delivered * key_bytes,
        "produce_s": produced_until - start,
        "elapsed_s": done - start,
        "latencies": len(lat),
    }


def consume(args) -> dict:
    conf = dict(CONSUMER_CONFIG)
    conf["bootstrap.servers"] = args.bootstrap
    conf["group.id"] = f"bench-{args.topic}-{args.id}"  # never joined or committed
    conf["client.id"] = f"bench-consumer-{args.id}"
    c = Consumer(conf)
    parts = [int(x) for x in args.partitions.split(",") if x != ""]
    c.assign([TopicPartition(args.topic, p, 0) for p in parts])
    lat = array.array("d")
    now_ns = time.time_ns
    got = 0
    nbytes = 0
    errors: list[str] = []
    start = time.monotonic()
    first = last = None
    deadline = start + args.timeout
    idle_since = time.monotonic()
    while got < args.count:
        now = time.monotonic()
        if now > deadline or (first is not None and now - idle_since > args.idle):
            break
        msgs = c.consume(10_000, 0.2)
        if not msgs:
            continue
        idle_since = time.monotonic()
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    errors.append(str(err))
                continue
            v = m.value()
            got += 1
            nbytes += len(v)
            if args.lat_out:
                lat.append((now_ns() - HEADER.unpack_from(v)[0]) / 1000.0)
        if first is None:
            first = time.monotonic()
        last = time.monotonic()
    c.close()
    if args.lat_out:
        with open(args.lat_out, "wb") as f:
            lat.tofile(f)
    return {
        "records": got,
        "bytes": nbytes,
        "errors": len(errors),
        "first_errors": errors[:5],
        "elapsed_s": (last or time.monotonic()) - start,
        "first_record_s": (first - start) if first else None,
    }


def http_produce(args) -> dict:
    host, _, port = args.url.removeprefix("http://").rstrip("/").partition(":")
    pad = b"\x00" * (args.size - HEADER.size)
    # One body per thread, built once: the client's cost per request is the
    # socket I/O and the check of the answer, not JSON encoding.
    def body(thread: int) -> bytes:
        recs = []
        for i in range(args.batch):
            value = base64.b64encode(HEADER.pack(time.time_ns(), thread * args.batch + i) + pad).decode()
            recs.append(json.dumps({"value": {"type": "BINARY", "data": value}}, separators=(",", ":")))
        return "".join(recs).encode()

    headers = {"content-type": "application/json"}
    ok_marker = b'"error_code":200'
    lock = threading.Lock()
    lat = array.array("d")
    stats = {"requests": 0, "requests_ok": 0, "records_ok": 0, "failed_requests": 0,
             "failed_records": 0, "connections": 0, "body_bytes": 0, "answer_bytes": 0}
    errors: list[str] = []
    first_sent = [None]
    last_answer = [0.0]
    start = time.monotonic()
    end = start + args.seconds

    def fail(n_records: int, why: str) -> None:
        with lock:
            stats["failed_requests"] += 1
            stats["failed_records"] += n_records
            if len(errors) < 5:
                errors.append(why[:300])

    def worker(thread: int) -> None:
        payload = body(thread)
        conn = None
        sock = None
        my_lat = array.array("d")
        n = ok = recs = got = 0
        while time.monotonic() < end:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
            t = time.perf_counter()
            if first_sent[0] is None:
                first_sent[0] = time.monotonic()
            try:
                conn.request("POST", args.path, payload, headers)
                if conn.sock is not sock:
                    sock = conn.sock
                    with lock:
                        stats["connections"] += 1
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                n += 1
                fail(args.batch, f"{type(e).__name__}: {e}")
                conn.close()
                conn = sock = None
                continue
            dt = time.perf_counter() - t
            n += 1
            got += len(data)
            if resp.status != 200:
                fail(args.batch, f"HTTP {resp.status}: {data[:200]!r}")
                continue
            # Fast path: every report says error_code 200 (serde_json writes
            # no spaces); otherwise parse the reports to count the failures.
            if data.count(ok_marker) == args.batch and data.count(b"\n") <= args.batch:
                good = args.batch
            else:
                good = 0
                bad = []
                dec = json.JSONDecoder()
                text = data.decode(errors="replace")
                i = 0
                try:
                    while i < len(text):
                        if text[i].isspace():
                            i += 1
                            continue
                        v, i = dec.raw_decode(text, i)
                        if isinstance(v, dict) and v.get("error_code") == 200:
                            good += 1
                        else:
                            bad.append(v)
                except ValueError as e:
                    bad.append(f"undecodable answer: {e}")
                if good != args.batch:
                    fail(max(0, args.batch - good) or args.batch,
                         f"{good} of {args.batch} reports with error_code 200: {str(bad[:1])[:200]}")
                    continue
            my_lat.append(dt * 1e6)
            ok += 1
            recs += good
            with lock:
                last_answer[0] = max(last_answer[0], time.monotonic())
        if conn is not None:
            conn.close()
        with lock:
            lat.extend(my_lat)
            stats["requests"] += n
            stats["requests_ok"] += ok
            stats["records_ok"] += recs
            stats["body_bytes"] += len(payload) * n
            stats["answer_bytes"] += got

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = time.monotonic()
    if args.lat_out:
        with open(args.lat_out, "wb") as f:
            lat.tofile(f)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    t0 = first_sent[0] or start
    return {
        **stats,
        "batch": args.batch,
        "threads": args.threads,
        "first_errors": errors,
        "bytes": stats["records_ok"] * args.size,
        "elapsed_s": (last_answer[0] or done) - t0,
        "wall_s": done - start,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "latencies": len(lat),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("produce")
    pp.add_argument("--bootstrap", required=True)
    pp.add_argument("--topic", required=True)
    pp.add_argument("--partitions", type=int, required=True)
    pp.add_argument("--seconds", type=float, required=True)
    pp.add_argument("--rate", type=float, default=0.0, help="records/s; 0 = flat out")
    pp.add_argument("--size", type=int, default=1024)
    pp.add_argument("--id", type=int, default=0)
    pp.add_argument("--lat-out")
    pp.add_argument("--count", type=int, default=0,
                    help="flat out only: stop after this many records (0 = no limit; --seconds still bounds)")
    pp.add_argument("--keys", type=int, default=0,
                    help="flat out only: K keys in turn, each always to the partition key index %% N (0 = no keys)")
    pp.add_argument("--random-values", action="store_true",
                    help="random bytes after the 16-byte header instead of zeros")
    cp = sub.add_parser("consume")
    cp.add_argument("--bootstrap", required=True)
    cp.add_argument("--topic", required=True)
    cp.add_argument("--partitions", required=True, help="comma-separated")
    cp.add_argument("--count", type=int, required=True)
    cp.add_argument("--timeout", type=float, default=120.0)
    cp.add_argument("--idle", type=float, default=20.0,
                    help="once records flow, stop after this long without one")
    cp.add_argument("--id", type=int, default=0)
    cp.add_argument("--lat-out")
    hp = sub.add_parser("http-produce")
    hp.add_argument("--url", required=True, help="http://HOST:PORT")
    hp.add_argument("--path", required=True, help="/v3/clusters/C/topics/T/records")
    hp.add_argument("--batch", type=int, required=True, help="records per request")
    hp.add_argument("--threads", type=int, required=True, help="concurrent requests (one connection each)")
    hp.add_argument("--seconds", type=float, required=True)
    hp.add_argument("--size", type=int, default=1024)
    hp.add_argument("--id", type=int, default=0)
    hp.add_argument("--lat-out")
    args = ap.parse_args(argv)
    result = {"produce": produce, "consume": consume, "http-produce": http_produce}[args.cmd](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
