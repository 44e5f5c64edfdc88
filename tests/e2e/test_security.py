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


# --------------------------------------------------------------------------
# Kafka clients over TLS and SASL, and the authorizer
# --------------------------------------------------------------------------

ADMIN_PW = "admin-Pw-4f1c"
ALICE_PW = "alice-Pw-92aa"


class Secure:
    """A cluster of two agents, each with PLAINTEXT (for the harness),
    SASL_SSL and SSL listeners; ACLs on; `admin` a super user."""

    def __init__(self, tmp_path, extra: dict | None = None):
        self.extra = extra or {}
        self.ca = certs.CertAuthority(tmp_path / "pki")
        self.server = self.ca.issue("agent", hosts=[HOST, "localhost"])
        self.carol = self.ca.issue("carol", client=True, org="silt-tests")
        self.ports = {i: dict(zip(("sasl_ssl", "ssl", "rest"), stack.free_ports(3))) for i in range(2)}

        def env(i):
            a = self.c.agents[i]
            p = self.ports[i]
            return {
                "SILT_LISTENERS": f"PLAINTEXT://{a.addr},SASL_SSL://{HOST}:{p['sasl_ssl']},SSL://{HOST}:{p['ssl']}",
                "SILT_SSL_CERTIFICATE_FILE": str(self.server.cert),
                "SILT_SSL_KEY_FILE": str(self.server.key),
                "SILT_SSL_CA_FILE": str(self.ca.cert),
                "SILT_SSL_CLIENT_AUTH": "requested",
                "SILT_AUTHORIZER": "acl",
                "SILT_SUPER_USERS": "User:admin",
                "SILT_CONNECTION_FAILED_AUTHENTICATION_DELAY": "20ms",
                "SILT_REST": f"{HOST}:{p['rest']}",
                "SILT_REST_AUTHENTICATION": "basic",
                "SILT_REST_TLS": "true",
                "SILT_HTTP_AUTHENTICATION": "basic",
                **self.extra,
            }

        self.c = cluster.Cluster(tmp_path / "c", agents=2, etcd_members=1, name="sec", agent_env=env)

    def start(self):
        self.c.etcd.start()
        out = subprocess.run(
            [self.c.binary, "users", "add", "admin", "--cluster", self.c.name,
             "--etcd", ",".join(self.c.etcd.endpoints)],
            input=ADMIN_PW + "\n", capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert ADMIN_PW not in out.stdout + out.stderr
        self.c.start()
        return self

    def sasl(self, i=0):
        return f"{HOST}:{self.ports[i]['sasl_ssl']}"

    def ssl_addr(self, i=0):
        return f"{HOST}:{self.ports[i]['ssl']}"

    def conf(self, user, password, mechanism="SCRAM-SHA-512", i=0):
        return {"bootstrap.servers": self.sasl(i), "security.protocol": "SASL_SSL",
                "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password,
                "ssl.ca.location": str(self.ca.cert)}

    def admin(self, i=0):
        from confluent_kafka.admin import AdminClient
        return AdminClient(self.conf("admin", ADMIN_PW, i=i))


@pytest.fixture
def secure(tmp_path):
    s = Secure(tmp_path)
    try:
        yield s.start()
    finally:
        s.c.close()


def acl(rt, name, who, op, perm="ALLOW", pattern="LITERAL"):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    return AclBinding(getattr(ResourceType, rt), name, getattr(ResourcePatternType, pattern), who, "*",
                      getattr(AclOperation, op), getattr(AclPermissionType, perm))


def wait(futures, timeout=30):
    return {k: f.result(timeout=timeout) for k, f in futures.items()}


def set_password(admin, user, password, mechanisms=("SCRAM_SHA_512", "SCRAM_SHA_256")):
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    ups = [UserScramCredentialUpsertion(user, ScramCredentialInfo(getattr(ScramMechanism, m), 8192),
                                        password.encode()) for m in mechanisms]
    for f in admin.alter_user_scram_credentials(ups).values():
        f.result(timeout=30)


def round_trip_confluent(conf, topic, group, n=10, tag="c"):
    p = Producer({**conf, "acks": "all"})
    acked = []
    for i in range(n):
        p.produce(topic, value=f"{tag}{i}".encode(), partition=0,
                  on_delivery=lambda err, m: acked.append(err))
    assert p.flush(60) == 0
    assert acked == [None] * n, acked
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline and not any(v == f"{tag}{n - 1}".encode() for v in got):
            m = c.poll(1.0)
            if m is not None and not m.error():
                got.append(m.value())
        assert [f"{tag}{i}".encode() for i in range(n)] == [v for v in got if v.startswith(tag.encode())]
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_kafka_clients_over_sasl_ssl_and_ssl_with_acls(secure):
    from confluent_kafka.admin import NewTopic
    admin = secure.admin()
    wait(admin.create_topics([NewTopic("orders", 1), NewTopic("logs-app", 1), NewTopic("secret", 1)]))
    set_password(admin, "alice", ALICE_PW)
    users = wait(admin.describe_user_scram_credentials(["alice"]))
    assert {i.mechanism.name for i in users["alice"].scram_credential_infos} == {"SCRAM_SHA_512", "SCRAM_SHA_256"}
    # alice: orders read/write, group g1; carol (certificate): logs- prefixed.
    wait(admin.create_acls([
        acl("TOPIC", "orders", "User:alice", "WRITE"),
        acl("TOPIC", "orders", "User:alice", "READ"),
        acl("GROUP", "g1", "User:alice", "READ"),
        acl("GROUP", "kp", "User:alice", "READ"),
        acl("GROUP", "kc", "User:alice", "READ"),
        acl("TOPIC", "logs-", "User:CN=carol,O=silt-tests", "ALL", pattern="PREFIXED"),
        acl("GROUP", "g2", "User:CN=carol,O=silt-tests", "READ"),
    ]))
    # confluent-kafka, SASL_SSL SCRAM-SHA-512.
    round_trip_confluent(secure.conf("alice", ALICE_PW), "orders", "g1", tag="s512-")
    # ...and through the other agent, SCRAM-SHA-256 (ACLs reached it).
    round_trip_confluent(secure.conf("alice", ALICE_PW, "SCRAM-SHA-256", i=1), "orders", "g1", tag="s256-")
    # confluent-kafka, SASL_SSL PLAIN.
    round_trip_confluent(secure.conf("alice", ALICE_PW, "PLAIN"), "orders", "g1", tag="plain-")
    # confluent-kafka, SSL with a client certificate: principal from its subject.
    ssl_conf = {"bootstrap.servers": secure.ssl_addr(), "security.protocol": "SSL",
                "ssl.ca.location": str(secure.ca.cert),
                "ssl.certificate.location": str(secure.carol.cert),
                "ssl.key.location": str(secure.carol.key)}
    round_trip_confluent(ssl_conf, "logs-app", "g2", tag="cert-")

    # kafka-python: SASL_SSL SCRAM-SHA-512 and PLAIN, SSL with a certificate.
    import ssl as pyssl
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    ctx = pyssl.create_default_context(cafile=str(secure.ca.cert))
    for mech in ("SCRAM-SHA-512", "PLAIN"):
        kw = dict(bootstrap_servers=secure.sasl(), security_protocol="SASL_SSL", ssl_context=ctx,
                  sasl_mechanism=mech, sasl_plain_username="alice", sasl_plain_password=ALICE_PW)
        p = KafkaProducer(acks="all", **kw)
        meta = p.send("orders", value=f"kp-{mech}".encode(), partition=0).get(timeout=60)
        p.close()
        c = KafkaConsumer(group_id="kp", enable_auto_commit=False, consumer_timeout_ms=10_000, **kw)
        c.assign([KTP("orders", 0)])
        c.seek(KTP("orders", 0), meta.offset)
        got = next(iter(c))
        assert (got.offset, got.value) == (meta.offset, f"kp-{mech}".encode())
        c.commit()
        c.close()
    cctx = pyssl.create_default_context(cafile=str(secure.ca.cert))
    cctx.load_cert_chain(str(secure.carol.cert), str(secure.carol.key))
    p = KafkaProducer(bootstrap_servers=secure.ssl_addr(), security_protocol="SSL", ssl_context=cctx, acks="all")
    assert p.send("logs-app", value=b"kp-cert", partition=0).get(timeout=60).offset >= 0
    p.close()

    # kcat: SASL_SSL with each mechanism and SSL with a certificate:
    # produce, consume, and a group consumer.
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed"
    sasl = lambda mech: ["-b", secure.sasl(), "-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanism={mech}",
                         "-X", "sasl.username=alice", "-X", f"sasl.password={ALICE_PW}",
                         "-X", f"ssl.ca.location={secure.ca.cert}"]
    cert = ["-b", secure.ssl_addr(), "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={secure.ca.cert}",
            "-X", f"ssl.certificate.location={secure.carol.cert}", "-X", f"ssl.key.location={secure.carol.key}"]
    for name, common, topic in [("SCRAM-SHA-256", sasl("SCRAM-SHA-256"), "orders"),
                                ("SCRAM-SHA-512", sasl("SCRAM-SHA-512"), "orders"),
                                ("PLAIN", sasl("PLAIN"), "orders"), ("SSL", cert, "logs-app")]:
        line = f"kcat-{name}".encode()
        out = subprocess.run([kcat, *common, "-P", "-t", topic, "-p", "0"], input=line + b"\n",
                             capture_output=True, timeout=60)
        assert out.returncode == 0, (name, out.stderr.decode(errors="replace"))
        out = subprocess.run([kcat, *common, "-C", "-t", topic, "-p", "0", "-o", "-1", "-e", "-f", "%s\n"],
                             capture_output=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == line, (name, out)
    # A group consumer (kcat -G): once it has its assignment, a record
    # produced reaches it.
    group = subprocess.Popen([kcat, *sasl("SCRAM-SHA-512"), "-u", "-G", "kc", "-f", "%s\n", "orders"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        import select
        deadline, seen, errs = time.monotonic() + 60, b"", b""
        while b"assigned" not in errs and time.monotonic() < deadline:
            r, _, _ = select.select([group.stderr], [], [], 1.0)
            if r:
                errs += os.read(group.stderr.fileno(), 65536)
        assert b"assigned" in errs, errs[-2000:]
        out = subprocess.run([kcat, *sasl("SCRAM-SHA-512"), "-P", "-t", "orders", "-p", "0"],
                             input=b"kcat-group\n", capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        while b"kcat-group" not in seen and time.monotonic() < deadline + 30:
            r, _, _ = select.select([group.stdout], [], [], 1.0)
            if r:
                seen += os.read(group.stdout.fileno(), 65536)
    finally:
        group.terminate()
        group.communicate(timeout=30)
    assert b"kcat-group" in seen, seen[-500:]

    # kafka-python's admin client over SASL_SSL.
    from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic
    ka = KafkaAdminClient(bootstrap_servers=secure.sasl(), security_protocol="SASL_SSL", ssl_context=ctx,
                          sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="admin",
                          sasl_plain_password=ADMIN_PW)
    ka.create_topics([KNewTopic("kp-admin", 1, 1)])
    assert "kp-admin" in ka.list_topics()
    ka.close()

    # What alice may not do: Kafka's errors.
    from confluent_kafka import KafkaError, KafkaException
    alice = secure.conf("alice", ALICE_PW)
    p = Producer({**alice, "acks": "all"})
    errs = []
    p.produce("secret", value=b"x", partition=0, on_delivery=lambda err, m: errs.append(err))
    p.flush(30)
    assert errs and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errs
    # Metadata shows her only what she may describe.
    from confluent_kafka.admin import AdminClient
    a_admin = AdminClient(alice)
    topics = set(a_admin.list_topics(timeout=30).topics)
    assert "orders" in topics and "secret" not in topics and "logs-app" not in topics, topics
    with pytest.raises(KafkaException) as e:
        wait(a_admin.create_topics([NewTopic("alices", 1)]))
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        wait(a_admin.delete_topics(["orders"]))
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    c = Consumer({**alice, "group.id": "not-hers", "auto.offset.reset": "earliest"})
    c.subscribe(["orders"])
    err = None
    deadline = time.monotonic() + 30
    while err is None and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error():
            err = m.error()
    c.close()
    assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    # Fetch needs READ: WRITE alone is refused.
    wait(admin.create_topics([NewTopic("inbox", 1)]))
    wait(admin.create_acls([acl("TOPIC", "inbox", "User:alice", "WRITE")]))
    c = Consumer({**alice, "group.id": "g1", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("inbox", 0, 0)])
    err, deadline = None, time.monotonic() + 30
    while err is None and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error():
            err = m.error()
    c.close()
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # A deny wins over her allow; removing it restores her, on both agents.
    wait(admin.create_acls([acl("TOPIC", "orders", "User:alice", "WRITE", perm="DENY")]))
    time.sleep(1.0)
    for i in range(2):
        p = Producer({**secure.conf("alice", ALICE_PW, i=i), "acks": "all"})
        errs = []
        p.produce("orders", value=b"denied", partition=0, on_delivery=lambda err, m: errs.append(err))
        p.flush(30)
        assert errs and errs[0] is not None and errs[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (i, errs)
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    deleted = wait(admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*",
        AclOperation.WRITE, AclPermissionType.DENY)]))
    assert sum(len(v) for v in deleted.values()) == 1, deleted
    time.sleep(1.0)
    round_trip_confluent(secure.conf("alice", ALICE_PW, i=1), "orders", "g1", n=2, tag="again-")

    # Deleting her credentials (AdminClient) locks her out.
    from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion
    for f in admin.alter_user_scram_credentials([
            UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_512),
            UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256)]).values():
        f.result(timeout=30)
    time.sleep(1.0)
    gone = AdminClient({**secure.conf("alice", ALICE_PW, i=1), "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        gone.list_topics(timeout=3)


def test_bad_credentials_and_certificates_are_refused_and_others_go_on(secure, tmp_path):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = secure.admin()
    wait(admin.create_topics([NewTopic("t", 1)]))
    set_password(admin, "alice", ALICE_PW, ("SCRAM_SHA_512",))

    def refused(conf):
        errors = []
        a = AdminClient({**conf, "error_cb": lambda e: errors.append(e)})
        with pytest.raises(Exception):
            a.list_topics(timeout=5)
        # Serves the error callbacks; refusals from this address are slowed
        # down more and more (the throttle), so allow for it.
        deadline = time.monotonic() + 20
        while not errors and time.monotonic() < deadline:
            a.poll(0.5)
        return errors

    cases = {
        "wrong password": secure.conf("alice", "nope"),
        "unknown user": secure.conf("mallory", "nope"),
        "mechanism without a credential": secure.conf("alice", ALICE_PW, "SCRAM-SHA-256"),
        "plain text on the TLS port": {"bootstrap.servers": secure.sasl(), "security.protocol": "SASL_PLAINTEXT",
                                       "sasl.mechanism": "PLAIN", "sasl.username": "alice",
                                       "sasl.password": ALICE_PW},
    }
    for name, conf in cases.items():
        errors = refused(conf)
        assert errors, name
        if name != "plain text on the TLS port":
            assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), (name, errors)
    # Certificates: expired, and from a CA the agent does not trust.
    expired = secure.ca.issue("old", client=True, days=-1)
    stranger = certs.CertAuthority(tmp_path / "other").issue("eve", client=True)
    for name, cert in {"expired": expired, "unknown CA": stranger}.items():
        errors = refused({"bootstrap.servers": secure.ssl_addr(), "security.protocol": "SSL",
                          "ssl.ca.location": str(secure.ca.cert),
                          "ssl.certificate.location": str(cert.cert), "ssl.key.location": str(cert.key)})
        assert errors, name
    # The agents kept serving.
    a = AdminClient(secure.conf("alice", ALICE_PW))
    assert "t" not in a.list_topics(timeout=30).topics  # no ACL: not shown
    assert "t" in secure.admin(1).list_topics(timeout=30).topics
    # Nothing secret in the agents' logs.
    for agent in secure.c.agents:
        text = agent.log_text()
        assert ALICE_PW not in text and ADMIN_PW not in text and "nope" not in text


def https(secure, method, path, body=None, user=None, password=None, i=0):
    """(status, body, headers) of a request to agent i's HTTP API over TLS."""
    import base64 as b64
    import ssl as pyssl
    import urllib.error
    import urllib.request
    ctx = pyssl.create_default_context(cafile=str(secure.ca.cert))
    headers = {"content-type": "application/json"}
    if user is not None:
        headers["authorization"] = "Basic " + b64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"https://{HOST}:{secure.ports[i]['rest']}{path}",
                                 data=None if body is None else json.dumps(body).encode(),
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_http_api_and_metrics_require_a_user_and_obey_acls(secure):
    from confluent_kafka.admin import NewTopic
    admin = secure.admin()
    wait(admin.create_topics([NewTopic("web", 1), NewTopic("private", 1)]))
    set_password(admin, "alice", ALICE_PW, ("SCRAM_SHA_512",))
    wait(admin.create_acls([acl("TOPIC", "web", "User:alice", "WRITE"),
                            acl("TOPIC", "web", "User:alice", "READ")]))
    cid = "silt-sec"
    base = f"/v3/clusters/{cid}/topics"
    # Health is open; everything else needs a user.
    assert https(secure, "GET", "/health")[0] == 200
    status, body, headers = https(secure, "GET", base)
    assert status == 401 and json.loads(body)["error_code"] == 40101, body
    assert headers.get("www-authenticate", headers.get("WWW-Authenticate", "")).startswith("Basic")
    assert https(secure, "GET", base, user="alice", password="wrong")[0] == 401
    assert https(secure, "GET", base, user="nobody", password="x")[0] == 401
    # alice sees and writes only what her ACLs give her.
    status, body, _ = https(secure, "GET", base, user="alice", password=ALICE_PW)
    assert status == 200, body
    names = {t["topic_name"] for t in json.loads(body)["data"]}
    assert names == {"web"}, names
    rec = {"partition_id": 0, "value": {"type": "STRING", "data": "over https"}}
    status, body, _ = https(secure, "POST", f"{base}/web/records", rec, "alice", ALICE_PW)
    assert status == 200 and json.loads(body)["error_code"] == 200, body
    status, body, _ = https(secure, "POST", f"{base}/private/records", rec, "alice", ALICE_PW)
    assert status == 403 and json.loads(body)["error_code"] == 40301, body
    status, body, _ = https(secure, "GET", f"{base}/private/partitions/0/records?offset=0",
                           user="alice", password=ALICE_PW)
    assert status == 403, body
    status, body, _ = https(secure, "POST", base, {"topic_name": "alices"}, "alice", ALICE_PW)
    assert status == 403, body
    # The super user may do anything.
    status, body, _ = https(secure, "GET", f"{base}/web/partitions/0/records?offset=0",
                           user="admin", password=ADMIN_PW)
    assert status == 200 and [r["value"]["data"] for r in json.loads(body)["records"]] == ["b3ZlciBodHRwcw=="], body
    # /metrics: a user with DESCRIBE on the cluster (the super user), not alice.
    import base64 as b64
    import urllib.error
    import urllib.request
    url = f"http://{HOST}:{secure.c.agents[0].http_port}/metrics"
    def metrics(user, pw):
        req = urllib.request.Request(url, headers={} if user is None else {
            "authorization": "Basic " + b64.b64encode(f"{user}:{pw}".encode()).decode()})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
    assert metrics(None, None)[0] == 401
    assert metrics("alice", ALICE_PW)[0] == 403
    status, body = metrics("admin", ADMIN_PW)
    assert status == 200 and b"silt_topics" in body
    assert stack.http(f"http://{HOST}:{secure.c.agents[0].http_port}/health")[0] == 200


def metric(secure, name):
    import base64 as b64
    import urllib.request
    req = urllib.request.Request(
        f"http://{HOST}:{secure.c.agents[0].http_port}/metrics",
        headers={"authorization": "Basic " + b64.b64encode(f"admin:{ADMIN_PW}".encode()).decode()})
    with urllib.request.urlopen(req, timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_sessions_expire_and_clients_re_authenticate(tmp_path):
    """connections_max_reauth (KIP-368): librdkafka re-authenticates on
    its connection before the session ends and keeps producing;
    kafka-python, whose re-authentication fails on its side, has its
    connection closed and goes on over a new one. (That an expired session
    admits nothing but SASL requests is a unit test of the session.)"""
    s = Secure(tmp_path, {"SILT_CONNECTIONS_MAX_REAUTH": "2s", "SILT_REST_AUTHENTICATION": "none"})
    try:
        s.start()
        from confluent_kafka.admin import NewTopic
        admin = s.admin()
        wait(admin.create_topics([NewTopic("re", 1)]))
        set_password(admin, "alice", ALICE_PW, ("SCRAM_SHA_512",))
        wait(admin.create_acls([acl("TOPIC", "re", "User:alice", "WRITE")]))
        p = Producer({**s.conf("alice", ALICE_PW), "acks": "all"})
        acked = []
        for i in range(14):
            p.produce("re", value=f"r{i}".encode(), partition=0, on_delivery=lambda err, m: acked.append(err))
            p.poll(0.5)
        assert p.flush(30) == 0 and acked == [None] * 14, acked
        assert metric(s, "silt_sasl_reauthentications_total") >= 1

        import ssl as pyssl
        from kafka import KafkaProducer
        kp = KafkaProducer(bootstrap_servers=s.sasl(), security_protocol="SASL_SSL",
                           ssl_context=pyssl.create_default_context(cafile=str(s.ca.cert)),
                           sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                           sasl_plain_password=ALICE_PW, acks="all", retries=5)
        kp.send("re", value=b"before", partition=0).get(timeout=30)
        time.sleep(3)
        kp.send("re", value=b"after", partition=0).get(timeout=60)
        kp.close()

        # The HTTP API without authentication, under the authorizer: its
        # callers are User:ANONYMOUS, who may do nothing here.
        rec = {"partition_id": 0, "value": {"type": "STRING", "data": "anon"}}
        status, body, _ = https(s, "POST", "/v3/clusters/silt-sec/topics/re/records", rec)
        assert status == 403 and json.loads(body)["error_code"] == 40301, body
        status, body, _ = https(s, "GET", "/v3/clusters/silt-sec/topics")
        assert status == 200 and json.loads(body)["data"] == [], body
    finally:
        s.c.close()


def test_tls_certificate_is_reloaded_on_sighup_and_a_bad_one_is_ignored(tmp_path):
    import hashlib
    import signal
    import socket
    import ssl as pyssl

    s = Secure(tmp_path)
    try:
        s.start()
        agent = s.c.agents[0]

        def served():
            ctx = pyssl.create_default_context(cafile=str(s.ca.cert))
            with socket.create_connection((HOST, s.ports[0]["ssl"]), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=HOST) as tls:
                    return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

        first = served()
        # A new certificate in place of the old files, then SIGHUP.
        new = s.ca.issue("agent-2", hosts=[HOST, "localhost"])
        s.server.cert.write_bytes(new.cert.read_bytes())
        s.server.key.write_bytes(new.key.read_bytes())
        os.kill(agent.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while served() == first and time.monotonic() < deadline:
            time.sleep(0.2)
        second = served()
        assert second != first, "the new certificate is not served"
        assert hashlib.sha256(
            pyssl.PEM_cert_to_DER_cert(new.cert.read_text())).hexdigest() == second
        # A broken file is refused; the certificate in use stays.
        s.server.cert.write_text("not a certificate\n")
        os.kill(agent.pid, signal.SIGHUP)
        time.sleep(1.0)
        assert served() == second
        assert agent.alive()
        assert "TLS reload failed" in agent.log_text()
        # Kafka clients still connect.
        round_trip_confluent(
            {"bootstrap.servers": s.sasl(), "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
             "sasl.username": "admin", "sasl.password": ADMIN_PW, "ssl.ca.location": str(s.ca.cert)},
            "reload", "g-reload", n=2, tag="r-")
    finally:
        s.c.close()


def test_users_and_acls_changed_through_one_agent_apply_on_the_other_within_a_second(secure):
    """AlterUserScramCredentials and CreateAcls through agent a1; agent a2
    honours them within a second (its watch on the metadata store)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = secure.admin(0)
    wait(admin.create_topics([NewTopic("fast", 1)]))

    def seconds_until(check, limit=10.0):
        t0 = time.monotonic()
        while not check():
            assert time.monotonic() - t0 < limit, "never applied"
            time.sleep(0.05)
        return time.monotonic() - t0

    def can_log_in(i):
        a = AdminClient({**secure.conf("dave", "dave-Pw-1", i=i), "socket.timeout.ms": 2000})
        try:
            a.list_topics(timeout=2)
            return True
        except Exception:
            return False

    other = secure.admin(1)

    def known_on_other():
        try:
            d = other.describe_user_scram_credentials(["dave"])["dave"].result(timeout=5)
            return bool(d.scram_credential_infos)
        except Exception:
            return False

    assert not known_on_other()
    set_password(admin, "dave", "dave-Pw-1", ("SCRAM_SHA_512",))
    took = seconds_until(known_on_other)
    print(f"user known on the other agent after {took:.3f}s")
    assert took < 1.0, took
    assert can_log_in(1)

    def sees_fast(i):
        a = AdminClient(secure.conf("dave", "dave-Pw-1", i=i))
        return "fast" in a.list_topics(timeout=5).topics

    assert not sees_fast(1)
    wait(admin.create_acls([acl("TOPIC", "fast", "User:dave", "DESCRIBE")]))
    t0 = time.monotonic()
    took = seconds_until(lambda: sees_fast(1))
    print(f"ACL applied on the other agent after {took:.3f}s")
    assert took < 1.0, took
