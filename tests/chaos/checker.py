"""Checks one fault-campaign history (history.json) against what Kafka
promises a client. Pure functions of the history: no cluster needed, so the
rules are unit-tested with hand-made histories (test_checker.py).

The property: an acknowledged write is never lost, keeps its offset, and is
never duplicated beyond what the producer's own retries allow.

History (format 1), written by campaign.py; times are seconds since the run
started; partition-keyed maps have string keys in JSON:

    config     {"compacted": bool, ...}  the topic's cleanup.policy is compact
               (absent: not compacted)
    producers  {name: {"idempotent": bool, "partitions": [partition of seq 0, 1, ...],
                       "keys": [key of seq 0, 1, ...]}}   (keys: compacted only)
               each record is identified by its value, record_value(name, seq)
    reports    [[t, producer, seq, partition, offset, error, resent], ...]
               one per delivery report: error None = acknowledged at
               (partition, offset); otherwise the send failed and, if
               resent, the application sent the same record again
    group      {"consumed": [[t, consumer, partition, offset, value], ...],
                "commits": [[t_start, t_end, consumer, {p: offset}, {p: ok}, error], ...],
                "final_committed": {p: offset}}   (OffsetFetch after healing; -1001: none)
    reads      {agent: {"high": {p: hw}, "records": {p: [[offset, value], ...]},
                        "error": None or text}}  whole topic read through that agent
               (compacted: [offset, value, key], the key as read)
    transactions  {"txns": [[t, txn, records, outcome, error], ...],
                   "reads": {agent: {"values": [value, ...], "error": None or text}}}
               a transactional producer's transactions on their own topic:
               txn_value(txn, i, records) for i < records, outcome
               "committed" or "aborted" when the producer was told so, else
               "unknown"; each agent's read_committed read of that topic
    incidents  [[t, kind, target, text], ...]  recorded by the campaign
    load_errors [text, ...]  producers that failed or never finished
    nemesis, proxy, faults, jobs ...  (not checked here)

Values read (in `group.consumed` and `reads`) are stored compact(value):
"=producer|seq" when the value is exactly record_value(producer, seq),
else the value itself (sent values never start with "=").

Rules. Each broken rule is an anomaly of the kind named in brackets:

0. The run. No agent or etcd member exits on its own [crashed]; every
   fault heals (a killed process starts again, the agents list each other)
   [heal_failed]; the harness itself ran to the end [harness]; every
   producer finished once the cluster was healed [client_error].
1. Reads. Every agent answers a full read once the cluster is healed
   [read_failed]. In each read, a partition's offsets are dense from 0 up
   to its high watermark [offset_gap]. All reads agree: the same high
   watermarks and the same record at every offset [divergent]. The first
   complete read is "the log" for the rules below.
2. Content. Every record in the log is one some producer sent, byte for
   byte, in the partition it was sent to [unknown].
3. Acknowledged writes. A delivery report without error names the partition
   the record was sent to [ack_invalid]; no two records are acknowledged at
   the same offset [ack_conflict]; the log holds the record at exactly the
   acknowledged offset [lost if the log does not hold it at all, moved if it
   holds it only elsewhere]. A record whose every send failed may or may not
   be in the log (a failed or timed-out produce is ambiguous in Kafka).
4. Duplicates, i.e. one record (value) at two or more offsets:
   - idempotent producer: never, whatever errors were reported
     [duplicate]. (librdkafka retries inside one idempotent session are
     deduplicated by the broker; the application never resends. One
     client-side path is flagged too: when messages time out inside a
     request still in flight, librdkafka bumps the epoch and sends that
     request's other messages again under the new epoch, so a broker that
     still appends the old request stores them twice; the campaign's
     message timeout outlasts its faults to keep this path rare.)
   - non-idempotent producer: these run with librdkafka `retries=0`, so
     every copy comes from a send the application made, and each send
     stores the record at most once. The application sends a record again
     only after a failed delivery report, so a record may be in the log at
     most (1 + its resends) times; its copies beyond the acknowledged one
     are "duplicates after a failed/retried send", counted, not anomalies.
     More copies than sends - in particular a second copy of a record
     acknowledged at its first send, with no send error ever reported -
     is [duplicate]. (Even with retries=0, librdkafka sends a request's
     messages again, silently, when the broker it went to leaves Metadata;
     a Kafka broker that lost its leadership can no longer commit the
     first request, so a second copy is still an anomaly.)
5. Order. For an idempotent producer, in each partition, its acknowledged
   records are at offsets in the order it sent them (sequence order)
   [reorder]. (Not checked for non-idempotent producers: Kafka does not
   promise order across failed sends there.)
7. Transactions. Every agent's read_committed read of the transactional
   topic succeeds [read_failed] and returns the same records
   [txn_divergent]; each is one a transaction sent [txn_unknown], once
   [txn_duplicate]; a transaction's records are all there or none
   [txn_partial]; those of a transaction acknowledged committed are there
   [txn_lost], those of one acknowledged aborted are not
   [txn_aborted_visible].
6. Consumers. Every record a group consumer received at (partition,
   offset) is the log's record at that offset, below the high watermark
   [divergent]. A consumer group's committed offset for a partition never
   goes backwards: for two successful commits X and Y where X's answer
   came before Y was sent, Y's offset >= X's; and the offset the group
   reads back after healing is >= every successfully committed one
   [commit_backwards]. Overlapping commits are not ordered.

A compacted topic (config.compacted): the cleaner removes records
superseded by a later record of their key, and every record it keeps stays
at its offset; the newest record of a key is never removed (the campaign
sends no tombstones). Every record names its key through its value
(producers' "keys"). Rules 0 and 5 stand as above; the others become:

1c. Reads. Every agent answers a full read once the cluster is healed
   [read_failed]. In each read, a partition's offsets are strictly
   increasing, below its high watermark, and the last is the high
   watermark - 1 (it holds the newest record of its key) [offset_gap];
   offsets in between may be missing. Reads taken one after another may
   see different cleaning progress, so two reads agree when they have the
   same high watermarks and the same record at every offset both hold, and
   for an offset only one of them holds, the other holds a record of the
   same key at a higher offset (it was read after the cleaner removed the
   record) [divergent]. The first complete read is "the log".
2c. Content, in addition to rule 2: every record in the log was read with
   the key it was sent with [unknown].
3c. Acknowledged writes. As rule 3, except that the log may hold nothing
   at the acknowledged offset when it holds a record of the same key at a
   higher offset of that partition (the cleaner removed the record; counted
   as acked_removed). So an acknowledged record that the log does not hold,
   with no later record of its key, is [lost]; one the log holds only at
   other offsets (none of them a later record of its key) is [moved]; and
   an acknowledged offset holding another record is [moved] or [lost] as in
   rule 3.
4c. Duplicates. As rule 4, where a record's copies are the offsets the
   log holds it at and the offsets, no longer in the log, it was
   acknowledged at (3c) or a group consumer read it at (6c): the cleaner
   removes all but the last copy of a record, which must not hide a
   duplicate.
6c. Consumers. As rule 6, except that a group consumer may have read a
   record at an offset the log no longer holds, if it is a record sent to
   that partition and the log holds a record of its key at a higher offset
   [divergent otherwise]. Committed offsets never depended on offsets being
   dense, so the commit rules stand.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field

FORMAT = 1
ANOMALY_KINDS = ("read_failed", "offset_gap", "divergent", "unknown", "ack_invalid",
                 "ack_conflict", "lost", "moved", "duplicate", "reorder", "commit_backwards",
                 "txn_divergent", "txn_unknown", "txn_duplicate", "txn_partial", "txn_lost",
                 "txn_aborted_visible")
INCIDENT_KINDS = ("crashed", "heal_failed", "harness", "client_error")
# Descriptions kept per kind (the counts are exact).
EXAMPLES = 5


def txn_value(txn: int, i: int, records: int) -> str:
    """The value of the i-th of `records` records of transaction `txn`."""
    return f"txn|{txn}|{i}|{records}"


def parse_txn_value(value: str | None) -> tuple[int, int, int] | None:
    parts = (value or "").split("|")
    if len(parts) != 4 or parts[0] != "txn":
        return None
    try:
        txn, i, n = (int(x) for x in parts[1:])
    except ValueError:
        return None
    return (txn, i, n) if 0 <= i < n else None


def check_transactions(history: dict, v: "Verdict") -> None:
    """Rule 7 of the module docstring."""
    section = history.get("transactions")
    if not section:
        return
    txns = {row[1]: row for row in section.get("txns", [])}
    reads = section.get("reads", {})
    v.info["transactions"] = len(txns)
    v.info["transactions_committed"] = sum(1 for r in txns.values() if r[3] == "committed")
    v.info["transactions_aborted"] = sum(1 for r in txns.values() if r[3] == "aborted")
    ref_name, ref = None, None
    for agent, read in sorted(reads.items()):
        if read.get("error"):
            v.flag("read_failed", f"{agent}: read_committed read of the transactional topic: "
                                  f"{read['error']}")
            continue
        values = sorted(read.get("values", []))
        if ref is None:
            ref_name, ref = agent, values
        elif values != ref:
            v.flag("txn_divergent", f"{agent} reads {len(values)} committed transactional "
                                    f"records, {ref_name} {len(ref)}")
    if ref is None:
        if txns:
            v.flag("read_failed", "no agent read the transactional topic")
        return
    seen: dict[int, Counter] = defaultdict(Counter)
    for value in ref:
        t = parse_txn_value(value)
        if t is None or t[0] not in txns or t[2] != txns[t[0]][2]:
            v.flag("txn_unknown", f"read_committed holds {_short(value)}, which no transaction sent")
            continue
        seen[t[0]][t[1]] += 1
    for txn, (_, _, n, outcome, err) in sorted(txns.items()):
        got = seen.get(txn, Counter())
        for i, c in got.items():
            if c > 1:
                v.flag("txn_duplicate", f"transaction {txn}: record {i} read {c} times")
        if got and len(got) != n:
            v.flag("txn_partial", f"transaction {txn} ({outcome}): {len(got)} of its {n} "
                                  f"records are visible")
        if outcome == "committed" and not got:
            v.flag("txn_lost", f"transaction {txn} was acknowledged committed; none of its "
                               f"{n} records is visible")
        if outcome == "aborted" and got:
            v.flag("txn_aborted_visible", f"transaction {txn} was acknowledged aborted; "
                                          f"{len(got)} of its records are visible")


def record_value(producer: str, seq: int) -> str:
    """The value of record `seq` of `producer`: it names the record and has
    a deterministic filler of 16-316 characters, so that a changed byte is
    seen."""
    digest = hashlib.blake2b(f"{producer}|{seq}".encode(), digest_size=16).hexdigest()
    filler = (digest * 10)[: 16 + (seq * 7919) % 301]
    return f"{producer}|{seq}|{filler}"


def parse_value(value: str | None) -> tuple[str, int] | None:
    """(producer, seq) named by a record value, None if it names none."""
    if value is None:
        return None
    parts = value.split("|", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def compact(value: str | None) -> str | None:
    """A value read, as stored in a history (see the module docstring)."""
    rid = parse_value(value)
    if rid is not None and value == record_value(*rid):
        return f"={rid[0]}|{rid[1]}"
    return value


def expand(stored: str | None) -> str | None:
    """The value read, from its stored form."""
    if stored is not None and stored.startswith("="):
        rid = parse_value(stored[1:] + "|")
        if rid is not None:
            return record_value(*rid)
    return stored


@dataclass
class Verdict:
    anomalies: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    info: Counter = field(default_factory=Counter)

    def flag(self, kind: str, text: str) -> None:
        assert kind in ANOMALY_KINDS + INCIDENT_KINDS, kind
        self.anomalies[kind] += 1
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(text)

    @property
    def total(self) -> int:
        return sum(self.anomalies.values())

    def summary(self) -> str:
        if not self.total:
            return "no anomalies"
        return ", ".join(f"{n} {k}" for k, n in sorted(self.anomalies.items()))

    def details(self) -> str:
        lines = []
        for kind in INCIDENT_KINDS + ANOMALY_KINDS:
            if self.anomalies[kind]:
                lines.append(f"{kind}: {self.anomalies[kind]}")
                lines += [f"  - {e}" for e in self.examples[kind]]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"anomalies": dict(self.anomalies), "examples": dict(self.examples),
                "info": dict(self.info)}


def _pmap(d: dict | None) -> dict[int, object]:
    return {int(k): v for k, v in (d or {}).items()}


def _check_read(agent: str, read: dict, v: Verdict) -> dict[int, list[str]] | None:
    """The partitions of one read as {p: [value at offset 0, 1, ...]}, None
    if the read failed."""
    if read.get("error"):
        v.flag("read_failed", f"read through {agent}: {read['error']}")
        return None
    high = _pmap(read.get("high"))
    records = _pmap(read.get("records"))
    log: dict[int, list[str]] = {}
    for p in sorted(set(high) | set(records)):
        rows = records.get(p, [])
        for pos, (off, *_) in enumerate(rows):
            if off != pos:
                v.flag("offset_gap", f"read through {agent}: partition {p}: record #{pos} "
                                     f"has offset {off}")
                break
        if len(rows) != high.get(p):
            v.flag("offset_gap", f"read through {agent}: partition {p}: {len(rows)} records "
                                 f"read, high watermark {high.get(p)}")
        log[p] = [expand(row[1]) for row in rows]
    return log


def _compare(ref_name: str, ref: dict, name: str, other: dict, v: Verdict) -> None:
    for p in sorted(set(ref) | set(other)):
        a, b = ref.get(p, []), other.get(p, [])
        if len(a) != len(b):
            v.flag("divergent", f"partition {p}: {ref_name} has {len(a)} records, "
                                f"{name} has {len(b)}")
        for off, (x, y) in enumerate(zip(a, b)):
            if x != y:
                v.flag("divergent", f"partition {p} offset {off}: {ref_name} has "
                                    f"{_short(x)}, {name} has {_short(y)}")


def _check_compacted_read(agent: str, read: dict, v: Verdict
                          ) -> tuple[dict[int, dict[int, str]], dict[int, int],
                                     dict[int, dict[int, str]]] | None:
    """One read of a compacted topic as ({p: {offset: value}}, {p: high
    watermark}, {p: {offset: key read}}), None if the read failed."""
    if read.get("error"):
        v.flag("read_failed", f"read through {agent}: {read['error']}")
        return None
    high = _pmap(read.get("high"))
    records = _pmap(read.get("records"))
    log: dict[int, dict[int, str]] = {}
    keys: dict[int, dict[int, str]] = {}
    highs: dict[int, int] = {}
    for p in sorted(set(high) | set(records)):
        rows = records.get(p, [])
        hw = high.get(p)
        held = log[p] = {}
        keys[p] = {}
        for row in rows:
            held.setdefault(row[0], expand(row[1]))
            if len(row) > 2:
                keys[p].setdefault(row[0], row[2])
        if hw is None:
            v.flag("offset_gap", f"read through {agent}: partition {p}: {len(rows)} records "
                                 f"read, no high watermark")
            highs[p] = max(held, default=-1) + 1
            continue
        highs[p] = hw
        prev = -1
        for pos, row in enumerate(rows):
            if row[0] <= prev or row[0] >= hw:
                v.flag("offset_gap", f"read through {agent}: partition {p}: record #{pos} has "
                                     f"offset {row[0]}, after {prev}, high watermark {hw}")
                break
            prev = row[0]
        end = rows[-1][0] if rows else -1
        if end != hw - 1:
            v.flag("offset_gap", f"read through {agent}: partition {p}: the read ends at offset "
                                 f"{end}, high watermark {hw}")
    return log, highs, keys


def _latest(log: dict[int, dict[int, str]], key_of) -> dict[int, dict[str, int]]:
    """{p: {key: the highest offset holding a record of that key}}."""
    out: dict[int, dict[str, int]] = {}
    for p, held in log.items():
        top = out[p] = {}
        for off, val in held.items():
            k = key_of(val)
            if k is not None and off > top.get(k, -1):
                top[k] = off
    return out


def _compare_compacted(ref_name: str, ref: tuple, name: str, other: tuple, key_of,
                       v: Verdict) -> None:
    """Rule 1c's agreement of two reads of a compacted topic."""
    (a_log, a_high), (b_log, b_high) = ref, other
    latest = {ref_name: _latest(a_log, key_of), name: _latest(b_log, key_of)}
    for p in sorted(set(a_high) | set(b_high)):
        if a_high.get(p) != b_high.get(p):
            v.flag("divergent", f"partition {p}: high watermark {a_high.get(p)} through "
                                f"{ref_name}, {b_high.get(p)} through {name}")
        a, b = a_log.get(p, {}), b_log.get(p, {})
        for off in sorted(set(a) | set(b)):
            if off in a and off in b:
                if a[off] != b[off]:
                    v.flag("divergent", f"partition {p} offset {off}: {ref_name} has "
                                        f"{_short(a[off])}, {name} has {_short(b[off])}")
                continue
            holder, lacker, val = (ref_name, name, a[off]) if off in a else (name, ref_name, b[off])
            k = key_of(val)
            if k is None or latest[lacker].get(p, {}).get(k, -1) <= off:
                v.flag("divergent", f"partition {p} offset {off}: {holder} has {_short(val)}, "
                                    f"{lacker} has neither it nor a later record of its key "
                                    f"{k!r}")


def _short(value: str | None) -> str:
    if value is None:
        return "None"
    return repr(value[:40] + ("..." if len(value) > 40 else ""))


def check(history: dict) -> Verdict:
    """Applies the rules of the module docstring to a history."""
    v = Verdict()
    producers = history.get("producers", {})

    # 0. the run
    for t, kind, target, text in history.get("incidents", []):
        v.flag(kind if kind in INCIDENT_KINDS else "harness",
               f"t={t:.1f}s {target}: {text.splitlines()[0] if text else ''}")
    for text in history.get("load_errors", []):
        v.flag("client_error", text)

    # 7. transactions (their own topic; checked even when reads of the main
    # topic failed)
    check_transactions(history, v)

    compacted = bool((history.get("config") or {}).get("compacted"))

    def key_of(val: str | None) -> str | None:
        """The key a record was sent with (compacted topics), None for a
        value no producer sent."""
        rid = parse_value(val)
        keys = (producers.get(rid[0]) or {}).get("keys") if rid else None
        if keys is None or rid[1] >= len(keys) or val != record_value(*rid):
            return None
        return keys[rid[1]]

    # 1. reads; the log as {p: {offset: value}} with its high watermarks
    reads = history.get("reads", {})
    if not reads:
        v.flag("read_failed", "no read of the topic in the history")
    read_keys: dict[int, dict[int, str]] = {}
    if compacted:
        got = {}
        for agent in sorted(reads):
            one = _check_compacted_read(agent, reads[agent], v)
            if one is not None:
                got[agent] = one
        if not got:
            return v
        ref_name = sorted(got)[0]
        log, high, read_keys = got[ref_name]
        for name in sorted(got)[1:]:
            _compare_compacted(ref_name, (log, high), name, got[name][:2], key_of, v)
    else:
        logs = {}
        for agent in sorted(reads):
            dense = _check_read(agent, reads[agent], v)
            if dense is not None:
                logs[agent] = dense
        if not logs:
            return v
        ref_name = sorted(logs)[0]
        for name in sorted(logs)[1:]:
            _compare(ref_name, logs[ref_name], name, logs[name], v)
        log = {p: dict(enumerate(values)) for p, values in logs[ref_name].items()}
        high = {p: len(values) for p, values in logs[ref_name].items()}
    v.info["records_in_log"] = sum(len(x) for x in log.values())
    if compacted:
        v.info["offsets_removed"] = sum(high[p] - len(held) for p, held in log.items())
    latest = _latest(log, key_of) if compacted else {}

    def superseded(p: int, val: str | None, off: int) -> bool:
        """The log holds a record of val's key above `off` (compacted)."""
        k = key_of(val)
        return k is not None and latest.get(p, {}).get(k, -1) > off

    # 2. content; where each record is
    where: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for p, held in sorted(log.items()):
        for off, val in sorted(held.items()):
            rid = parse_value(val)
            spec = producers.get(rid[0]) if rid else None
            if (spec is None or rid[1] >= len(spec["partitions"])
                    or val != record_value(*rid)):
                v.flag("unknown", f"partition {p} offset {off}: {_short(val)} was never sent")
                continue
            if spec["partitions"][rid[1]] != p:
                v.flag("unknown", f"partition {p} offset {off}: {rid[0]} #{rid[1]} was sent to "
                                  f"partition {spec['partitions'][rid[1]]}")
            got_key = read_keys.get(p, {}).get(off)
            if got_key is not None and got_key != key_of(val):
                v.flag("unknown", f"partition {p} offset {off}: {rid[0]} #{rid[1]} read with key "
                                  f"{got_key!r}, sent with {key_of(val)!r}")
            where[rid].append((p, off))

    # 3. acknowledged writes
    acked: dict[tuple[str, int], tuple[int, int]] = {}
    failed: Counter = Counter()  # failed sends per record
    resends: Counter = Counter()  # sends after the first, per record
    owner: dict[tuple[int, int], tuple[str, int]] = {}
    # Offsets the log no longer holds but a record was acknowledged or read
    # at (compacted): copies of it for rule 4.
    removed: dict[tuple[str, int], set[tuple[int, int]]] = defaultdict(set)
    for t, prod, seq, p, off, err, resent in history.get("reports", []):
        rid = (prod, seq)
        if err is not None:
            failed[rid] += 1
            resends[rid] += 1 if resent else 0
            continue
        v.info["acked"] += 1
        sent_to = producers[prod]["partitions"][seq]
        if p != sent_to or off is None or off < 0:
            v.flag("ack_invalid", f"{prod} #{seq} sent to partition {sent_to}, acknowledged "
                                  f"at partition {p} offset {off} (t={t:.1f}s)")
            continue
        if rid in acked:
            v.flag("ack_conflict", f"{prod} #{seq} acknowledged twice: at {acked[rid]} and "
                                   f"at {(p, off)}")
        acked[rid] = (p, off)
        prev = owner.setdefault((p, off), rid)
        if prev != rid:
            v.flag("ack_conflict", f"partition {p} offset {off} acknowledged for {prev[0]} "
                                   f"#{prev[1]} and for {prod} #{seq}")
    v.info["failed_reports"] = sum(failed.values())
    for rid, (p, off) in sorted(acked.items()):
        held = log.get(p, {})
        value = record_value(*rid)
        if off in held and held[off] == value:
            continue
        hw = high.get(p, 0)
        if compacted and off < hw and off not in held and superseded(p, value, off):
            v.info["acked_removed"] += 1
            removed[rid].add((p, off))
            continue
        found = where.get(rid)
        at = (f"offset {off} holds {_short(held[off])}" if off in held
              else f"offset {off} holds nothing" if off < hw else f"high watermark {hw}")
        if found:
            v.flag("moved", f"{rid[0]} #{rid[1]} acknowledged at partition {p} offset {off}, "
                            f"found at {found} ({at})")
        else:
            v.flag("lost", f"{rid[0]} #{rid[1]} acknowledged at partition {p} offset {off}, "
                           f"not in the log ({at})")
    v.info["unacked_present"] = sum(1 for rid in where if rid not in acked)

    # 6. (first part, before 4: a record a group consumer read at an offset
    # the cleaner removed since is one more copy of it)
    group = history.get("group") or {}
    for t, consumer, p, off, val in group.get("consumed", []):
        val = expand(val)
        held = log.get(p, {})
        hw = high.get(p, 0)
        if off < hw and off in held and held[off] == val:
            continue
        if compacted and off < hw and off not in held and superseded(p, val, off):
            rid = parse_value(val)
            parts = producers[rid[0]]["partitions"]
            if rid[1] < len(parts) and parts[rid[1]] == p:
                removed[rid].add((p, off))  # removed by the cleaner since
                continue
        now = (_short(held[off]) if off in held and off < hw
               else f"nothing (high watermark {hw})" if not compacted or off >= hw
               else "nothing there and no later record of its key")
        v.flag("divergent", f"group consumer {consumer} read {_short(val)} at partition {p} "
                            f"offset {off} (t={t:.1f}s); the log holds {now}")

    # 4. duplicates: each send stores a record at most once
    for rid in sorted(set(where) | set(removed)):
        places = where.get(rid, []) + sorted(removed.get(rid, set()) - set(where.get(rid, [])))
        if len(places) < 2:
            continue
        prod, seq = rid
        sends = 1 + resends[rid]
        what = (f"{prod} #{seq} at {len(places)} offsets {places}; {sends} sends, "
                f"{failed[rid]} failed, acknowledged at {acked.get(rid)}")
        if producers[prod].get("idempotent"):
            v.flag("duplicate", f"idempotent producer: {what}")
        elif len(places) > sends:
            v.flag("duplicate", f"more copies than sends: {what}")
        else:
            v.info["duplicates_after_failed_send"] += len(places) - 1

    # 5. order of idempotent producers' acknowledged records
    by_stream: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for (prod, seq), (p, off) in acked.items():
        if producers[prod].get("idempotent"):
            by_stream[(prod, p)].append((seq, off))
    for (prod, p), rows in sorted(by_stream.items()):
        rows.sort()
        for (s1, o1), (s2, o2) in zip(rows, rows[1:]):
            if o2 <= o1:
                v.flag("reorder", f"{prod}, partition {p}: #{s1} acknowledged at offset {o1}, "
                                  f"later #{s2} at offset {o2}")

    # 6. consumer group (the records read are checked above)
    v.info["consumed"] = len(group.get("consumed", []))
    commits: dict[int, list[tuple[float, float, int, str]]] = defaultdict(list)
    for t0, t1, consumer, offsets, ok, _err in group.get("commits", []):
        ok = _pmap(ok)
        for p, off in _pmap(offsets).items():
            if ok.get(p):
                commits[p].append((t0, t1, off, consumer))
    v.info["commits"] = sum(len(c) for c in commits.values())
    for p, rows in sorted(commits.items()):
        # Sweep by start time, tracking the highest commit answered before.
        by_end = sorted(rows, key=lambda r: r[1])
        best = None  # the highest offset among commits answered so far
        i = 0
        for t0, t1, off, consumer in sorted(rows):
            while i < len(by_end) and by_end[i][1] < t0:
                if best is None or by_end[i][2] > best[2]:
                    best = by_end[i]
                i += 1
            if best is not None and off < best[2]:
                v.flag("commit_backwards",
                       f"partition {p}: {consumer} committed offset {off} at t={t0:.2f}s after "
                       f"{best[3]}'s commit of {best[2]} was answered at t={best[1]:.2f}s")
    final = _pmap(group.get("final_committed"))
    for p, rows in sorted(commits.items()):
        top = max(rows, key=lambda r: r[2])
        if p in final and final[p] < top[2]:
            v.flag("commit_backwards",
                   f"partition {p}: the group's committed offset read back after healing is "
                   f"{final[p]}, below the {top[2]} {top[3]} committed at t={top[1]:.2f}s")

    return v
