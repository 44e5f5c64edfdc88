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
    loadgen.py sasl-attempts --addr HOST:PORT --cafile CA --user U --password P
                       [--threads N] [--count N] [--start-at T] [--until T]
                       [--per-connection N] [--interval S] [--give-up MS] [--pipeline N]
                       [--times-out FILE]

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

produce --config KEY=VALUE (repeatable) adds librdkafka settings (e.g.
SASL_SSL); --lat-at-out FILE writes (send time in epoch seconds, latency in
µs) pairs of float64, so that the latencies can be split by time window.

sasl-attempts makes SASL PLAIN authentication attempts over TLS with a raw
Kafka client (python ssl + socket, no library): SaslHandshake v1 for PLAIN,
then SaslAuthenticate v0 with "\\0USER\\0PASSWORD". N threads, each with one
attempt in flight; after an answer a thread tries the next attempt on the same
connection and opens a new one only once the server has closed it, so the
attempts answered per connection are counted. --count attempts in all (0: no
limit), none started before --start-at or after --until (epoch seconds);
--interval S: a thread waits S seconds between attempts; --per-connection N:
at most N attempts on one connection (1: a fresh connection each time);
--give-up MS: an attacker that does not wait for a delayed failure: with no
SaslAuthenticate answer in MS milliseconds it closes the connection and
counts the attempt as failed.
--pipeline N instead writes N handshake + authenticate pairs on one
connection at once and counts the answers until the server closes it.
--times-out gets one record of 4 float64 per attempt: start (epoch s),
connection set-up s (TCP + TLS; 0 on a reused connection), s from the
handshake to the authenticate answer, outcome (the SaslAuthenticate
error_code: 0 accepted, 58 SASL_AUTHENTICATION_FAILED; -1 the connection
closed before an answer; -2 another error; -3 given up, --give-up).
"""

from __future__ import annotations

import argparse
import array
import base64
import http.client
import json
import os
import resource
import socket
import ssl
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

    lat_at = array.array("d")
    unpack = HEADER.unpack_from

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
            return
        # librdkafka's own measure: produce() call to acknowledgement.
        lat.append(msg.latency() * 1e6)
        if args.lat_at_out:
            lat_at.append(unpack(msg.value())[0] / 1e9)
            lat_at.append(msg.latency() * 1e6)

    conf = dict(PRODUCER_CONFIG)
    conf["bootstrap.servers"] = args.bootstrap
    conf["client.id"] = f"bench-producer-{args.id}"
    for kv in args.config:
        k, _, v = kv.partition("=")
        conf[k] = v
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
    if args.lat_at_out:
        with open(args.lat_at_out, "wb") as f:
            lat_at.tofile(f)
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


# ------------------------------------------------------------------ SASL attempts (raw Kafka protocol)

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36


class Closed(Exception):
    """The server closed the connection."""


def kafka_request(api_key: int, version: int, corr: int, body: bytes, client_id: bytes = b"bench-sasl") -> bytes:
    """A Kafka request frame with a v1 request header (int16 api key, int16
    version, int32 correlation id, nullable string client id)."""
    msg = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id + body
    return struct.pack(">i", len(msg)) + msg


def sasl_pair(mechanism: str, auth: bytes, corr: int) -> tuple[bytes, bytes]:
    """SaslHandshake v1 (string mechanism) and SaslAuthenticate v0 (bytes)."""
    m = mechanism.encode()
    return (kafka_request(SASL_HANDSHAKE, 1, corr, struct.pack(">h", len(m)) + m),
            kafka_request(SASL_AUTHENTICATE, 0, corr + 1, struct.pack(">i", len(auth)) + auth))


def recv_exact(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError, BrokenPipeError) as e:
            raise Closed(type(e).__name__) from None
        if not chunk:
            raise Closed("EOF")
        buf += chunk
    return buf


def read_response(sock) -> tuple[int, bytes]:
    """(correlation id, body) of one response (v0 response header)."""
    size, = struct.unpack(">i", recv_exact(sock, 4))
    data = recv_exact(sock, size)
    return struct.unpack_from(">i", data)[0], data[4:]


def tls_connect(host: str, port: int, ctx: ssl.SSLContext, timeout: float, source: str | None = None):
    raw = socket.create_connection((host, port), timeout=timeout,
                                   source_address=(source, 0) if source else None)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


def sasl_attempts(args) -> dict:
    host, _, port = args.addr.rpartition(":")
    port = int(port)
    ctx = ssl.create_default_context(cafile=args.cafile)
    auth = b"\0" + args.user.encode() + b"\0" + args.password.encode()
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    start = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.pipeline:
        return sasl_pipeline(args, host, port, ctx, auth, start, ru0)
    until = args.until or float("inf")
    lock = threading.Lock()
    rec = array.array("d")
    per_conn: list[int] = []
    errors: list[str] = []
    started = [0]

    def err(why: str) -> None:
        with lock:
            if len(errors) < 5:
                errors.append(why[:300])

    def worker(thread: int) -> None:
        sock = None
        on_conn = 0
        corr = 0
        mine = array.array("d")
        counts = []
        first = True
        while True:
            if time.time() >= until:
                break
            with lock:
                if args.count and started[0] >= args.count:
                    break
                started[0] += 1
            if args.interval and not first:
                time.sleep(args.interval)
                if time.time() >= until:
                    break
            first = False
            while True:  # until the attempt is made (a reused connection may turn out closed)
                t0 = time.time()
                connect_s = 0.0
                fresh = sock is None
                if fresh:
                    try:
                        sock = tls_connect(host, port, ctx, args.timeout, args.source)
                    except (OSError, ssl.SSLError) as e:
                        err(f"connect: {type(e).__name__}: {e}")
                        mine.extend((t0, time.time() - t0, 0.0, -2.0))
                        sock = None
                        time.sleep(0.05)
                        break
                    connect_s = time.time() - t0
                    on_conn = 0
                t1 = time.time()
                hs, au = sasl_pair(args.mechanism, auth, corr)
                corr += 2
                try:
                    sock.sendall(hs)
                    _, body = read_response(sock)
                    code, = struct.unpack_from(">h", body)
                    if code != 0:
                        raise RuntimeError(f"SaslHandshake error_code {code}")
                    sock.sendall(au)
                    if args.give_up:
                        sock.settimeout(args.give_up / 1000.0)
                    try:
                        _, body = read_response(sock)
                    except (socket.timeout, TimeoutError):
                        if not args.give_up:
                            raise
                        # No answer in time: taken as a failure, not waited for.
                        mine.extend((t0, connect_s, time.time() - t1, -3.0))
                        sock.close()
                        sock = None
                        counts.append(on_conn)
                        break
                    code, = struct.unpack_from(">h", body)
                except (Closed, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError,
                        ssl.SSLZeroReturnError) as e:
                    sock.close()
                    sock = None
                    if not fresh:
                        # The server closed the connection after the last
                        # answer: this attempt needs a new one.
                        counts.append(on_conn)
                        continue
                    counts.append(0)
                    err(f"closed before an answer: {e}")
                    mine.extend((t0, connect_s, time.time() - t1, -1.0))
                    break
                except (OSError, RuntimeError, struct.error) as e:
                    err(f"{type(e).__name__}: {e}")
                    mine.extend((t0, connect_s, time.time() - t1, -2.0))
                    sock.close()
                    sock = None
                    counts.append(on_conn)
                    break
                mine.extend((t0, connect_s, time.time() - t1, float(code)))
                on_conn += 1
                if on_conn >= args.per_connection:
                    sock.close()
                    sock = None
                    counts.append(on_conn)
                break
        if sock is not None:
            sock.close()
            counts.append(on_conn)
        with lock:
            rec.extend(mine)
            per_conn.extend(counts)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = time.monotonic()
    if args.times_out:
        with open(args.times_out, "wb") as f:
            rec.tofile(f)
    codes = [int(rec[i + 3]) for i in range(0, len(rec), 4)]
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "attempts": len(codes),
        "accepted": codes.count(0),
        "failed": codes.count(58),
        "closed_before_answer": codes.count(-1),
        "errors": codes.count(-2),
        "gave_up": codes.count(-3),
        "other_codes": sorted({c for c in codes if c not in (0, 58, -1, -2, -3)}),
        "connections": len(per_conn),
        "max_attempts_per_connection": max(per_conn, default=0),
        "answered_per_connection": sum(per_conn),
        "first_errors": errors,
        "elapsed_s": done - start,
        "cpu_s": (ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
    }


def sasl_pipeline(args, host, port, ctx, auth, start, ru0) -> dict:
    """--pipeline N: N handshake + authenticate pairs written at once on one
    connection; the answers read until the server closes it."""
    sock = tls_connect(host, port, ctx, args.timeout, args.source)
    frames = b"".join(b"".join(sasl_pair(args.mechanism, auth, 2 * i)) for i in range(args.pipeline))
    sent_error = None

    def send() -> None:
        nonlocal sent_error
        try:
            sock.sendall(frames)
        except (OSError, ssl.SSLError) as e:
            sent_error = f"{type(e).__name__}: {e}"

    # Written from another thread: the server stops reading after the first
    # failure, and a write blocked on a full socket buffer must not keep the
    # answers from being read.
    t = threading.Thread(target=send, daemon=True)
    t.start()
    handshakes, auth_codes, how = 0, [], "EOF"
    t0 = time.time()
    first_answer_s = None
    try:
        while True:
            corr, body = read_response(sock)
            if corr % 2 == 0:
                handshakes += 1
            else:
                auth_codes.append(struct.unpack_from(">h", body)[0])
                first_answer_s = first_answer_s or time.time() - t0
    except Closed as e:
        how = str(e)
    except (OSError, ssl.SSLError) as e:
        how = f"{type(e).__name__}: {e}"
    closed_s = time.time() - t0
    sock.close()
    t.join(5)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "pairs_sent": args.pipeline,
        "bytes_sent": len(frames),
        "send_error": sent_error,
        "handshake_answers": handshakes,
        "authenticate_answers": len(auth_codes),
        "authenticate_codes": sorted(set(auth_codes)),
        "closed_by": how,
        "first_answer_s": first_answer_s,
        "closed_after_s": closed_s,
        "elapsed_s": time.monotonic() - start,
        "cpu_s": (ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
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
    pp.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                    help="a librdkafka setting added to the producer's (repeatable)")
    pp.add_argument("--lat-at-out", help="(send time epoch s, latency µs) float64 pairs")
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
    sp = sub.add_parser("sasl-attempts")
    sp.add_argument("--addr", required=True, help="HOST:PORT of a SASL_SSL listener")
    sp.add_argument("--cafile", required=True, help="CA certificate (PEM) of the server's certificate")
    sp.add_argument("--user", required=True)
    sp.add_argument("--password", required=True)
    sp.add_argument("--mechanism", default="PLAIN")
    sp.add_argument("--threads", type=int, default=1, help="attempts in flight (one connection each)")
    sp.add_argument("--count", type=int, default=0, help="attempts in all (0: until --until)")
    sp.add_argument("--start-at", type=float, default=0.0, help="epoch seconds of the first attempt")
    sp.add_argument("--until", type=float, default=0.0, help="epoch seconds: no attempt started after")
    sp.add_argument("--per-connection", type=int, default=1_000_000, help="attempts on one connection at most")
    sp.add_argument("--interval", type=float, default=0.0, help="seconds between a thread's attempts")
    sp.add_argument("--pipeline", type=int, default=0, help="N pairs written at once on one connection")
    sp.add_argument("--give-up", type=float, default=0.0,
                    help="ms to wait for the SaslAuthenticate answer before closing the connection and "
                         "counting the attempt as failed (0: wait)")
    sp.add_argument("--timeout", type=float, default=60.0, help="socket timeout, seconds")
    sp.add_argument("--id", type=int, default=0)
    sp.add_argument("--source", default=None,
                    help="source IP address of the connections (another loopback address: another host)")
    sp.add_argument("--times-out")
    args = ap.parse_args(argv)
    result = {"produce": produce, "consume": consume, "http-produce": http_produce,
              "sasl-attempts": sasl_attempts}[args.cmd](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
