"""Reads the API versions a broker advertises (ApiVersions v0, raw socket)."""

import socket
import struct

NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch", 32: "DescribeConfigs",
    33: "AlterConfigs", 37: "CreatePartitions", 42: "DeleteGroups", 44: "IncrementalAlterConfigs",
    47: "OffsetDelete", 60: "DescribeCluster",
}


def fetch_api_versions(bootstrap):
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"silt-compat"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _read(s, 4))
        data = _read(s, size)
    corr, err, n = struct.unpack(">ihi", data[:10])
    assert err == 0, err
    out = []
    for i in range(n):
        key, lo, hi = struct.unpack(">hhh", data[10 + 6 * i: 16 + 6 * i])
        out.append((key, NAMES.get(key, f"api {key}"), lo, hi))
    return sorted(out)


def _read(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf
