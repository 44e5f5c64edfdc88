"""Hand-rolled Kafka requests, for checks that must see exactly what one
broker answers to one request with a chosen client.id (no client library in
between): ApiVersions v0 (the API versions it advertises), Metadata v1
(brokers with their racks, partition leaders), and the group requests
FindCoordinator v0, OffsetCommit v2, OffsetFetch v1 and DescribeGroups v0.

    rawkafka.api_versions("127.0.0.1:9092")       # [(key, name, min, max), ...]
    rawkafka.metadata("127.0.0.1:9092", ["t"], client_id="x,silt_az=z1")

A broker that does not answer raises one of NO_ANSWER.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

# A broker that is down, closed the connection or answered garbage.
NO_ANSWER = (OSError, struct.error)

API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch", 32: "DescribeConfigs",
    33: "AlterConfigs", 37: "CreatePartitions", 42: "DeleteGroups", 44: "IncrementalAlterConfigs",
    47: "OffsetDelete", 60: "DescribeCluster",
}
CORRELATION_ID = 7


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos : self.pos + n].decode()
        self.pos += n
        return s

    def blob(self) -> bytes | None:
        n = self.take(">i")
        if n < 0:
            return None
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        out += chunk
    return out


def _kstr(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(addr: str, api_key: int, version: int, body: bytes, client_id: str,
            timeout: float = 5.0) -> _Reader:
    """One request (header v1) on a new connection to `addr` (HOST:PORT);
    returns a reader positioned after the response's correlation id."""
    host, port = addr.rsplit(":", 1)
    req = struct.pack(">hhi", api_key, version, CORRELATION_ID) + _kstr(client_id) + body
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(req)) + req)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        r = _Reader(_recv_exact(s, size))
    if r.take(">i") != CORRELATION_ID:
        raise AssertionError(f"{addr}: {API_NAMES.get(api_key, api_key)} response with the "
                             f"wrong correlation id")
    return r


def api_versions(addr: str, client_id: str = "silt-compat") -> list[tuple[int, str, int, int]]:
    """ApiVersions v0: sorted (api key, name, min version, max version)."""
    r = request(addr, 18, 0, b"", client_id, timeout=10.0)
    err = r.take(">h")
    assert err == 0, err
    out = []
    for _ in range(r.take(">i")):
        key, lo, hi = r.take(">h"), r.take(">h"), r.take(">h")
        out.append((key, API_NAMES.get(key, f"api {key}"), lo, hi))
    return sorted(out)


@dataclass
class MetadataView:
    brokers: dict[int, tuple[str, int, str | None]]  # node id -> (host, port, rack)
    leaders: dict[str, dict[int, int]]  # topic -> partition -> leader node id
    topic_errors: dict[str, int]


def metadata(addr: str, topics: list[str] | None = None, client_id: str = "silt-e2e",
             timeout: float = 5.0) -> MetadataView:
    """Metadata v1 for `topics` (None: all) from the broker at `addr`."""
    body = struct.pack(">i", -1) if topics is None else (
        struct.pack(">i", len(topics)) + b"".join(_kstr(t) for t in topics)
    )
    r = request(addr, 3, 1, body, client_id, timeout)
    brokers = {}
    for _ in range(r.take(">i")):
        node = r.take(">i")
        bhost = r.string()
        bport = r.take(">i")
        brokers[node] = (bhost, bport, r.string())
    r.take(">i")  # controller id
    leaders: dict[str, dict[int, int]] = {}
    errors: dict[str, int] = {}
    for _ in range(r.take(">i")):
        err = r.take(">h")
        name = r.string()
        r.take(">b")  # is_internal
        errors[name] = err
        parts = leaders.setdefault(name, {})
        for _ in range(r.take(">i")):
            r.take(">h")
            index = r.take(">i")
            parts[index] = r.take(">i")
            for _ in range(2):  # replicas, isr
                for _ in range(r.take(">i")):
                    r.take(">i")
    return MetadataView(brokers, leaders, errors)


def find_coordinator(addr: str, group: str, client_id: str = "silt-e2e") -> tuple[int, int]:
    """FindCoordinator v0: (error code, coordinator node id)."""
    r = request(addr, 10, 0, _kstr(group), client_id)
    err, node = r.take(">h"), r.take(">i")
    return err, node


def offset_commit(addr: str, group: str, topic: str, offsets: dict[int, int],
                  client_id: str = "silt-e2e") -> dict[int, int]:
    """A simple commit (OffsetCommit v2, generation -1, no member) of
    partition -> offset; returns partition -> error code."""
    body = _kstr(group) + struct.pack(">i", -1) + _kstr("") + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + _kstr(topic) + struct.pack(">i", len(offsets))
    for p, o in offsets.items():
        body += struct.pack(">iq", p, o) + _kstr(None)
    r = request(addr, 8, 2, body, client_id)
    out = {}
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            p = r.take(">i")
            out[p] = r.take(">h")
    return out


def offset_fetch(addr: str, group: str, topic: str, partitions: list[int],
                 client_id: str = "silt-e2e") -> dict[int, tuple[int, int]]:
    """OffsetFetch v1: partition -> (committed offset, error code)."""
    body = _kstr(group) + struct.pack(">i", 1) + _kstr(topic) + struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">i", p) for p in partitions)
    r = request(addr, 9, 1, body, client_id)
    out = {}
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            p, o = r.take(">i"), r.take(">q")
            r.string()
            out[p] = (o, r.take(">h"))
    return out


@dataclass
class GroupView:
    error: int
    state: str | None  # "Stable", "PreparingRebalance", "CompletingRebalance", "Empty", "Dead"
    protocol: str | None  # the chosen assignor, e.g. "range" (empty unless Stable)
    members: dict[str, str]  # member id -> client id


def describe_group(addr: str, group: str, client_id: str = "silt-e2e",
                   timeout: float = 5.0) -> GroupView:
    """DescribeGroups v0 for one group, from the broker at `addr` (its
    coordinator, or the answer is NOT_COORDINATOR)."""
    r = request(addr, 15, 0, struct.pack(">i", 1) + _kstr(group), client_id, timeout)
    n = r.take(">i")
    if n != 1:
        raise AssertionError(f"{addr}: DescribeGroups for one group answered {n} groups")
    err = r.take(">h")
    r.string()  # group id
    state = r.string()
    r.string()  # protocol type
    protocol = r.string()
    members = {}
    for _ in range(r.take(">i")):
        member_id, member_client = r.string(), r.string()
        r.string()  # client host
        r.blob()  # member metadata
        r.blob()  # member assignment
        members[member_id] = member_client
    return GroupView(err, state, protocol, members)


@dataclass
class ConfigView:
    value: str | None
    read_only: bool
    source: int  # 1 topic, 4 static broker, 5 default
    sensitive: bool
    type: int  # 1 BOOLEAN, 2 STRING, 3 INT, 4 SHORT, 5 LONG, 6 DOUBLE, 7 LIST, 9 PASSWORD
    synonyms: list[tuple[str, str | None, int]]
    documentation: str | None


def describe_configs(addr: str, resource_type: int, name: str, keys: list[str] | None = None,
                     client_id: str = "silt-e2e",
                     timeout: float = 5.0) -> tuple[int, str | None, dict[str, ConfigView]]:
    """DescribeConfigs v3 (synonyms and documentation included) for one
    resource (2 topic, 4 broker): (error code, error message, configs)."""
    body = struct.pack(">ib", 1, resource_type) + _kstr(name)
    if keys is None:
        body += struct.pack(">i", -1)
    else:
        body += struct.pack(">i", len(keys)) + b"".join(_kstr(k) for k in keys)
    body += struct.pack(">??", True, True)
    r = request(addr, 32, 3, body, client_id, timeout)
    r.take(">i")  # throttle
    n = r.take(">i")
    if n != 1:
        raise AssertionError(f"{addr}: DescribeConfigs for one resource answered {n}")
    err, msg = r.take(">h"), r.string()
    r.take(">b")
    r.string()
    configs = {}
    for _ in range(r.take(">i")):
        cname, value = r.string(), r.string()
        read_only, source, sensitive = r.take(">?"), r.take(">b"), r.take(">?")
        synonyms = []
        for _ in range(r.take(">i")):
            synonyms.append((r.string(), r.string(), r.take(">b")))
        ctype, doc = r.take(">b"), r.string()
        configs[cname] = ConfigView(value, read_only, source, sensitive, ctype, synonyms, doc)
    return err, msg, configs
