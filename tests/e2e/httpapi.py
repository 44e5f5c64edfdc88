"""A small client for silt's HTTP API (docs/http-api.md), standard library
only, for the end-to-end tests (test_http.py).

    api = Client("127.0.0.1", 18082)
    api.cluster_id()                                    # "silt-dev"
    api.create_topic("clicks", partitions=3)            # Response
    reports = api.produce_ok("clicks", [record(value=string("x"))])
    page = api.fetch_ok("clicks", 0, offset=0, format="string")

Every request opens its own connection and sends `Connection: close`; the
body is written in full even if the server answers (and closes) before it
has read all of it (a 413 for an oversized body), and the answer is read
after that: `Response` has the status, headers and body bytes.

Record bodies are built with `record()`, `string()`, `binary()`, `json_data()`
and `header()`; `stored()` gives the bytes a key or value is stored as,
`decode()` the bytes of a key or value a fetch answered.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass, field

JSON = "application/json"


def dumps(obj) -> str:
    """Compact JSON, so that a JSON key or value is known byte for byte (the
    server stores JSON data exactly as the request wrote it)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def string(s: str | None) -> dict:
    return {"type": "STRING", "data": s}


def binary(b: bytes | None) -> dict:
    return {"type": "BINARY", "data": None if b is None else b64(b)}


def json_data(v) -> dict:
    return {"type": "JSON", "data": v}


def header(name: str, value: bytes | None) -> dict:
    return {"name": name, "value": None if value is None else b64(value)}


_MISSING = object()


def record(key=_MISSING, value=_MISSING, headers=None, timestamp=_MISSING,
           partition: int | None = None) -> dict:
    """A produce body for one record; fields left out are not sent."""
    r: dict = {}
    if partition is not None:
        r["partition_id"] = partition
    if headers is not None:
        r["headers"] = headers
    if key is not _MISSING:
        r["key"] = key
    if value is not _MISSING:
        r["value"] = value
    if timestamp is not _MISSING:
        r["timestamp"] = timestamp
    return r


def stored(d: dict | None) -> bytes | None:
    """The bytes a key or value sent as `d` ({"type", "data"} or None/left
    out) is stored as (docs/http-api.md, Produce)."""
    if d is None or d.get("data") is None:
        return None
    kind, data = d["type"], d["data"]
    if kind == "BINARY":
        return base64.b64decode(data, validate=True)
    if kind == "STRING":
        return data.encode("utf-8")
    if kind == "JSON":
        return dumps(data).encode("utf-8")
    raise ValueError(f"unknown type {kind!r}")


def decode(d: dict | None, fmt: str = "binary") -> bytes | None:
    """The bytes of a key or value as a fetch answered it; checks that its
    type is the one `fmt` gives for those bytes (binary: always BINARY;
    string: STRING when valid UTF-8, else BINARY)."""
    if d is None or d.get("data") is None:
        return None
    kind, data = d.get("type"), d["data"]
    if kind == "BINARY":
        assert isinstance(data, str), f"BINARY data is not a string: {d!r}"
        b = base64.b64decode(data, validate=True)
    elif kind == "STRING":
        assert isinstance(data, str), f"STRING data is not a string: {d!r}"
        b = data.encode("utf-8")
    else:
        raise AssertionError(f"fetch answered type {kind!r} (want BINARY or STRING): {d!r}")
    want = "BINARY" if fmt == "binary" or not is_utf8(b) else "STRING"
    assert kind == want, f"format={fmt}: {b!r} answered as {kind}, want {want}: {d!r}"
    return b


def decode_headers(hs) -> list[tuple[str, bytes | None]]:
    """A fetch's headers (format=binary: values base64 or null)."""
    assert isinstance(hs, list), f"headers is not a list: {hs!r}"
    return [(h["name"], None if h.get("value") is None else base64.b64decode(h["value"], validate=True))
            for h in hs]


def is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def rfc3339_ms(s: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 time."""
    assert isinstance(s, str), f"timestamp {s!r} is not an RFC 3339 string"
    t = dt.datetime.fromisoformat(s.replace("z", "Z").replace("Z", "+00:00"))
    assert t.tzinfo is not None, f"timestamp {s!r} has no time zone"
    return round(t.timestamp() * 1000)


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


@dataclass
class Response:
    method: str
    path: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    send_error: str | None = None  # the body could not be sent in full

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"{self}: the body is not JSON ({e})") from None

    def lines(self) -> list:
        """One JSON object per non-empty line (produce's delivery reports)."""
        out = []
        for n, line in enumerate(self.body.split(b"\n")):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise AssertionError(f"{self}: line {n} is not JSON ({e}): {line[:300]!r}") from None
        return out

    def __str__(self) -> str:
        body = self.body if len(self.body) <= 1500 else self.body[:1500] + b"..."
        extra = f" (sending the body failed: {self.send_error})" if self.send_error else ""
        return f"{self.method} {self.path} -> {self.status}{extra} {body.decode(errors='replace')}"


class Client:
    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._cluster_id: str | None = None

    # -- raw requests ---------------------------------------------------------

    def request(self, method: str, path: str, body=None, query: dict | None = None,
                content_type: str | None = JSON, timeout: float | None = None) -> Response:
        """`body`: bytes as they are, str as UTF-8, anything else as JSON."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                "Connection: close", "Accept: application/json"]
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(data)}")
            if content_type:
                head.append(f"Content-Type: {content_type}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + data
        sock = socket.create_connection((self.host, self.port), timeout=timeout or self.timeout)
        send_error = None
        try:
            try:
                sock.sendall(raw)
            except (BrokenPipeError, ConnectionResetError) as e:
                # The server answered and closed before reading everything
                # (an oversized body): its answer may still be readable.
                send_error = repr(e)
            resp = http.client.HTTPResponse(sock, method=method)
            try:
                resp.begin()
                payload = resp.read()
            except (ConnectionResetError, http.client.RemoteDisconnected) as e:
                raise AssertionError(f"{method} {path}: no answer ({e!r}); sending the body: "
                                     f"{send_error or 'ok'}") from None
            headers = {k.lower(): v for k, v in resp.getheaders()}
            return Response(method, path, resp.status, headers, payload, send_error)
        finally:
            sock.close()

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> Response:
        return self.request("DELETE", path, **kw)

    # -- paths ----------------------------------------------------------------

    def cluster_id(self) -> str:
        if self._cluster_id is None:
            r = self.get("/v3/clusters")
            assert r.status == 200, str(r)
            data = r.json()["data"]
            assert len(data) == 1, f"GET /v3/clusters lists {len(data)} clusters: {r}"
            self._cluster_id = data[0]["cluster_id"]
        return self._cluster_id

    def cluster_path(self) -> str:
        return f"/v3/clusters/{urllib.parse.quote(self.cluster_id(), safe='')}"

    def topic_path(self, topic: str | None = None) -> str:
        p = f"{self.cluster_path()}/topics"
        return p if topic is None else f"{p}/{urllib.parse.quote(topic, safe='')}"

    def records_path(self, topic: str) -> str:
        return f"{self.topic_path(topic)}/records"

    def partition_path(self, topic: str, partition=None) -> str:
        p = f"{self.topic_path(topic)}/partitions"
        return p if partition is None else f"{p}/{partition}"

    def group_path(self, group: str) -> str:
        return f"{self.cluster_path()}/consumer-groups/{urllib.parse.quote(group, safe='')}/offsets"

    # -- topics ---------------------------------------------------------------

    def create_topic(self, name: str, partitions: int | None = None,
                     replication_factor: int | None = None,
                     configs: dict[str, str] | None = None) -> Response:
        body: dict = {"topic_name": name}
        if partitions is not None:
            body["partitions_count"] = partitions
        if replication_factor is not None:
            body["replication_factor"] = replication_factor
        if configs:
            body["configs"] = [{"name": k, "value": v} for k, v in configs.items()]
        return self.post(self.topic_path(), body)

    def create_topic_ok(self, name: str, partitions: int | None = None, **kw) -> dict:
        r = self.create_topic(name, partitions, **kw)
        assert r.status == 201, f"create topic {name}: {r}"
        return r.json()

    # -- produce --------------------------------------------------------------

    @staticmethod
    def stream_body(records: list[dict], sep: str = "\n") -> bytes:
        """Several records in one body: concatenated JSON objects."""
        return sep.join(dumps(r) for r in records).encode()

    def produce(self, topic: str, records: list[dict], sep: str = "\n") -> Response:
        return self.post(self.records_path(topic), self.stream_body(records, sep))

    def produce_ok(self, topic: str, records: list[dict], sep: str = "\n") -> list[dict]:
        """The delivery reports of a produce that must succeed: status 200,
        one report per record, each with error_code 200."""
        r = self.produce(topic, records, sep)
        assert r.status == 200, f"produce of {len(records)} records to {topic}: {r}"
        reports = r.lines()
        assert len(reports) == len(records), (
            f"produce of {len(records)} records answered {len(reports)} delivery reports: {r}")
        bad = [(i, rep) for i, rep in enumerate(reports) if rep.get("error_code") != 200]
        assert not bad, f"delivery reports with error_code != 200: {bad}"
        return reports

    # -- fetch ----------------------------------------------------------------

    def fetch(self, topic: str, partition, offset=None, max_bytes=None, max_wait_ms=None,
              format=None, timeout: float | None = None) -> Response:
        q = {k: v for k, v in (("offset", offset), ("max_bytes", max_bytes),
                               ("max_wait_ms", max_wait_ms), ("format", format)) if v is not None}
        return self.get(f"{self.partition_path(topic, partition)}/records", query=q,
                        timeout=timeout)

    def fetch_ok(self, topic: str, partition: int, **kw) -> dict:
        r = self.fetch(topic, partition, **kw)
        assert r.status == 200, f"fetch {topic}/{partition} {kw}: {r}"
        return r.json()

    def high_watermark(self, topic: str, partition: int) -> int:
        return self.fetch_ok(topic, partition, offset=0, max_bytes=1)["high_watermark"]

    # -- consumer-group offsets -----------------------------------------------

    def commit_offsets(self, group: str, offsets: list[dict]) -> Response:
        return self.post(self.group_path(group), {"offsets": offsets})

    def group_offsets(self, group: str, topic: str | None = None) -> Response:
        return self.get(self.group_path(group), query={"topic": topic} if topic else None)
