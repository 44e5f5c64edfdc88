"""Security of silt's own connections, with real parts.

1. test_agents_reach_etcd_over_tls_with_client_certificates: etcd serves its
   clients over TLS and requires a client certificate its CA signed
   (`--client-cert-auth`). An agent given the CA, a certificate and its key
   works (records produced are read back); an agent without a certificate,
   with a certificate from another CA, or without the CA cannot start, and
   says which setting is wrong.
2. test_agents_log_in_to_etcd_with_a_password: etcd with `auth enable`. An
   agent with `etcd_user`/`etcd_password` works; with a wrong password it
   cannot start; the password appears in no output of either.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import certs
import cluster
import stack

HOST = stack.HOST


def produce_and_read(bootstrap: str, topic: str, n: int = 20) -> None:
    """n records acknowledged with acks=all, then read back in order."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), partition=0,
                  on_delivery=lambda err, m: acked.append((err, m.offset() if m else None)))
    assert p.flush(60) == 0
    assert [e for e, _ in acked] == [None] * n, acked
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got, deadline = [], time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
        assert got == [(i, f"v{i}".encode()) for i in range(n)]
    finally:
        c.close()


def run_agent(c: cluster.Cluster, env: dict, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """A `silt agent` of cluster `c` run to its end (it is expected to fail
    at start): its exit code and output."""
    a = c.agents[0]
    port, http_port = stack.free_ports(2)
    data = c.dir / f"extra-{port}"
    data.mkdir()
    cmd = [c.binary, "agent", "--agent-id", f"x{port}", "--cluster", c.name,
           "--etcd", ",".join(c.etcd.endpoints), "--bucket", c.s3_env["SILT_BUCKET"],
           "--listen", f"{HOST}:{port}", "--data-dir", str(data), "--http", f"{HOST}:{http_port}"]
    base = {k: v for k, v in a.environment().items() if not k.startswith("SILT_ETCD_")}
    base.update(env)
    return subprocess.run(cmd, env=base, capture_output=True, text=True, timeout=timeout)


def test_agents_reach_etcd_over_tls_with_client_certificates(tmp_path):
    ca = certs.CertAuthority(tmp_path / "pki")
    server = ca.issue("etcd", hosts=[HOST, "localhost"])
    agent_cert = ca.issue("silt-agent", client=True)
    tls = {"ca": ca.cert, "cert": server.cert, "key": server.key,
           "client_cert": agent_cert.cert, "client_key": agent_cert.key}
    good = {"SILT_ETCD_CA_FILE": str(ca.cert), "SILT_ETCD_CERT_FILE": str(agent_cert.cert),
            "SILT_ETCD_KEY_FILE": str(agent_cert.key)}
    c = cluster.Cluster(tmp_path / "c", agents=1, etcd_members=1, name="tls",
                        etcd_tls=tls, agent_env=good)
    try:
        c.start()
        assert all(e.startswith("https://") for e in c.etcd.endpoints)
        produce_and_read(c.bootstrap, "secure-meta")

        # No client certificate: etcd refuses the handshake.
        r = run_agent(c, {"SILT_ETCD_CA_FILE": str(ca.cert)})
        assert r.returncode != 0, r.stderr[-2000:]
        assert "etcd" in (r.stdout + r.stderr), r.stderr[-2000:]

        # A certificate from a CA etcd does not trust.
        other = certs.CertAuthority(tmp_path / "other")
        stranger = other.issue("stranger", client=True)
        r = run_agent(c, {"SILT_ETCD_CA_FILE": str(ca.cert),
                          "SILT_ETCD_CERT_FILE": str(stranger.cert),
                          "SILT_ETCD_KEY_FILE": str(stranger.key)})
        assert r.returncode != 0, r.stderr[-2000:]
        assert "etcd" in (r.stdout + r.stderr), r.stderr[-2000:]

        # An agent that does not trust etcd's CA.
        r = run_agent(c, {"SILT_ETCD_CA_FILE": str(other.cert),
                          "SILT_ETCD_CERT_FILE": str(agent_cert.cert),
                          "SILT_ETCD_KEY_FILE": str(agent_cert.key)})
        assert r.returncode != 0, r.stderr[-2000:]

        # https:// endpoints without a CA: refused at once, naming the setting.
        r = run_agent(c, {}, timeout=30)
        assert r.returncode != 0
        assert "etcd_ca_file" in (r.stdout + r.stderr), r.stderr[-2000:]

        # The first agent kept working through all of that.
        produce_and_read(c.bootstrap, "secure-meta-2")
    finally:
        c.close()


def etcdctl(endpoint: str, *args: str, user: str | None = None) -> str:
    binary = shutil.which("etcdctl")
    assert binary, "etcdctl is not installed (scripts/install-test-deps.sh installs etcd-client)"
    cmd = [binary, "--endpoints", endpoint]
    if user:
        cmd += ["--user", user]
    out = subprocess.run(cmd + list(args), env={**os.environ, "ETCDCTL_API": "3"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"etcdctl {args}: {out.stdout}{out.stderr}"
    return out.stdout


def test_agents_log_in_to_etcd_with_a_password(tmp_path):
    password = "Pw-7c1e-hunter2-zz9"
    c = cluster.Cluster(tmp_path / "c", agents=1, etcd_members=1, name="auth",
                        agent_env={"SILT_ETCD_USER": "root", "SILT_ETCD_PASSWORD": password})
    try:
        c.etcd.start()
        endpoint = c.etcd.endpoints[0]
        etcdctl(endpoint, "user", "add", f"root:{password}")
        etcdctl(endpoint, "user", "grant-role", "root", "root")
        etcdctl(endpoint, "auth", "enable")
        # Without credentials etcd now refuses.
        out = subprocess.run([shutil.which("etcdctl"), "--endpoints", endpoint, "get", "x"],
                             env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode != 0 and "user name is empty" in out.stderr, out.stderr
        c.start()
        produce_and_read(c.bootstrap, "authed")
        # The agent's keys are in etcd, under the user it logged in as.
        keys = etcdctl(endpoint, "get", "--prefix", "--keys-only", f"/silt/{c.name}/agents/",
                       user=f"root:{password}")
        assert f"/silt/{c.name}/agents/a1" in keys, keys

        r = run_agent(c, {"SILT_ETCD_USER": "root", "SILT_ETCD_PASSWORD": "wrong-Pw-55aa"})
        assert r.returncode != 0, r.stderr[-2000:]
        out = r.stdout + r.stderr
        assert "etcd" in out, out[-2000:]
        assert "wrong-Pw-55aa" not in out, "the password was printed"
        # A password of digits stays a string (not read as a number) and is
        # not printed when refused.
        r = run_agent(c, {"SILT_ETCD_USER": "root", "SILT_ETCD_PASSWORD": "123456789"})
        assert r.returncode != 0
        assert "123456789" not in r.stdout + r.stderr
        assert password not in c.agents[0].log_text(), "the password was logged"
        produce_and_read(c.bootstrap, "authed-2")
    finally:
        c.close()


def test_the_bucket_is_reached_over_http_only_when_allowed(tmp_path):
    """An http:// S3 endpoint is refused unless AWS_ALLOW_HTTP=true says
    plain HTTP is intended."""
    c = cluster.Cluster(tmp_path / "c", agents=1, etcd_members=1, name="https")
    try:
        c.start()
        assert c.agents[0].environment().get("AWS_ALLOW_HTTP") == "true"
        assert c.s3_env["AWS_ENDPOINT_URL"].startswith("http://"), c.s3_env
        r = run_agent(c, {"AWS_ALLOW_HTTP": "false"}, timeout=60)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out[-2000:]
        assert "setting bucket" in out and "HTTP" in out, out[-2000:]
    finally:
        c.close()
