#!/usr/bin/env python3
"""An HTTP proxy in front of an S3 server that injects faults on command.

Agents talk to the proxy (AWS_ENDPOINT_URL); the proxy forwards each
request unchanged (the Host header included, so signatures still match) to
the upstream server. A control port switches faults on and off while a run
goes on:

    POST /fault  {"error_rate": 0.5, "mode": "before", "latency_ms": 0, "seed": 7}
    POST /heal   back to plain forwarding
    GET  /stats  {"requests": n, "errors": n, "delayed": n, "by_mode": {...}}
    GET  /health 200

Faults (each request drawn at random with `error_rate`):
    before  answer 503 SlowDown without forwarding (nothing happened)
    after   forward, then answer 503 instead of the real answer (the request
            took effect but its answer is lost: an ambiguous failure)
    drop    forward, then close the connection without answering
latency_ms delays every request by that long before it is forwarded.

    python3 s3proxy.py --listen PORT --control PORT --upstream http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
              "trailer", "upgrade", "expect"}
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b'<Message>injected by the fault proxy</Message></Error>')
MODES = ("before", "after", "drop")


class Faults:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.error_rate = 0.0
        self.mode = "before"
        self.latency = 0.0
        self.rng = random.Random(0)
        self.stats = {"requests": 0, "errors": 0, "delayed": 0,
                      "by_mode": {m: 0 for m in MODES}}

    def set(self, spec: dict) -> None:
        mode = spec.get("mode", "before")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        rate = float(spec.get("error_rate", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error_rate {rate}: expected a number between 0 and 1")
        with self.lock:
            self.error_rate, self.mode = rate, mode
            self.latency = float(spec.get("latency_ms", 0)) / 1000.0
            self.rng = random.Random(spec.get("seed", 0))

    def draw(self) -> tuple[float, str | None]:
        """(delay in seconds, fault mode or None) for the next request."""
        with self.lock:
            self.stats["requests"] += 1
            fault = self.mode if self.error_rate and self.rng.random() < self.error_rate else None
            if fault:
                self.stats["errors"] += 1
                self.stats["by_mode"][fault] += 1
            if self.latency:
                self.stats["delayed"] += 1
            return self.latency, fault

    def snapshot(self) -> dict:
        with self.lock:
            return json.loads(json.dumps(self.stats))


FAULTS = Faults()
UPSTREAM = ("127.0.0.1", 0)
_local = threading.local()


def upstream_conn(fresh: bool = False) -> http.client.HTTPConnection:
    conn = getattr(_local, "conn", None)
    if conn is None or fresh:
        if conn is not None:
            conn.close()
        conn = _local.conn = http.client.HTTPConnection(*UPSTREAM, timeout=60)
    return conn


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per fault only (below)
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _forward(self, body: bytes):
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if body or self.command in ("PUT", "POST"):
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        for attempt in (0, 1):  # a kept-alive upstream connection may have closed
            conn = upstream_conn(fresh=attempt > 0)
            try:
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders(body or None)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise

    def _answer(self, status: int, reason: str, headers, data: bytes) -> None:
        self.send_response_only(status, reason)
        length = None
        for k, v in headers:
            if k.lower() in HOP_BY_HOP:
                continue
            if k.lower() == "content-length":
                length = v
                continue
            self.send_header(k, v)
        # HEAD answers keep the upstream's length (of the object) and no body.
        self.send_header("Content-Length", length if self.command == "HEAD" and length
                         else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        body = self._body()
        delay, fault = FAULTS.draw()
        if delay:
            time.sleep(delay)
        if fault == "before":
            self._answer(503, "Slow Down", [("Content-Type", "application/xml")], SLOW_DOWN)
            return
        try:
            status, reason, headers, data = self._forward(body)
        except (http.client.HTTPException, OSError) as e:
            self._answer(502, "Bad Gateway", [("Content-Type", "text/plain")],
                         f"upstream: {e!r}".encode())
            return
        if fault == "after":
            self._answer(503, "Slow Down", [("Content-Type", "application/xml")], SLOW_DOWN)
        elif fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._answer(status, reason, headers, data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class ControlHandler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def _reply(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._reply(200, {"ok": True})
        elif self.path == "/stats":
            self._reply(200, FAULTS.snapshot())
        else:
            self._reply(404, {"error": self.path})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            spec = json.loads(self.rfile.read(n) or b"{}")
            if self.path == "/fault":
                FAULTS.set(spec)
            elif self.path == "/heal":
                FAULTS.set({})
            else:
                return self._reply(404, {"error": self.path})
        except (ValueError, TypeError) as e:
            return self._reply(400, {"error": str(e)})
        print(f"{time.strftime('%F %T')} {self.path} {json.dumps(spec)}", flush=True)
        self._reply(200, FAULTS.snapshot())


def main(argv=None) -> int:
    global UPSTREAM
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=int, required=True, help="proxy port on 127.0.0.1")
    ap.add_argument("--control", type=int, required=True, help="control port on 127.0.0.1")
    ap.add_argument("--upstream", required=True, help="http://HOST:PORT of the S3 server")
    a = ap.parse_args(argv)
    u = urlsplit(a.upstream)
    UPSTREAM = (u.hostname, u.port or 80)
    proxy = ThreadingHTTPServer(("127.0.0.1", a.listen), ProxyHandler)
    control = ThreadingHTTPServer(("127.0.0.1", a.control), ControlHandler)
    proxy.daemon_threads = control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(f"proxy 127.0.0.1:{a.listen} -> {a.upstream}, control on {a.control}", flush=True)
    proxy.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
