"""Checks on what a broker delivered: every test decides here whether its
records were kept.

A record (roundtrip.Rec) has an index `idx`, a unique id `rid` (also in its
header "id"), the partition it was sent to, key, value and headers. A consume
pass is {partition: [Consumed]} in offset order; `acks` maps a record's idx
to the (partition, offset) its delivery report gave.

* check_acks, check_exactly_once: every acknowledged record read back once,
  byte for byte, at its acknowledged offset; offsets dense from 0.
* check_at_least_once: the same where producers retried (a record may be
  stored twice, but each offset holds one record that some producer sent).
* check_send_order: a producer without retries appended in send order.
* check_dense_acks, check_appended_after: offsets of records produced later.
* check_same_bytes: two consume passes are identical.
* check_values_once: records told apart by their value (no id header).
* check_kcat_partition: kcat's line-based records (no offsets reported).
* account, check_processed: what group consumers processed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable


@dataclass
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def short(b: bytes | None, limit: int = 48) -> str:
    if b is None:
        return "None"
    if len(b) <= limit:
        return repr(b)
    return f"{b[:limit]!r}... ({len(b)} bytes)"


def record_id(headers: list[tuple[str, bytes | None]]) -> bytes | None:
    for k, v in headers:
        if k == "id":
            return v
    return None


# --------------------------------------------------------------------------
# Acknowledgements and consume passes
# --------------------------------------------------------------------------


def _one_record_per_offset(acked: Iterable[tuple[int, tuple[int, int]]]) -> None:
    """No two acknowledgements (idx, (partition, offset)) name the same offset."""
    owner: dict[tuple[int, int], int] = {}
    for idx, po in acked:
        prev = owner.setdefault(po, idx)
        if prev != idx:
            raise AssertionError(f"partition {po[0]} offset {po[1]} acknowledged for two "
                                 f"records: idx {prev} and idx {idx}")


def check_acks(records: list, acks: dict[int, tuple[int, int]]) -> None:
    """Every record acknowledged, in the partition it was sent to, with
    distinct offsets."""
    missing = [r.idx for r in records if r.idx not in acks]
    if missing:
        raise AssertionError(
            f"{len(missing)} of {len(records)} records were not acknowledged "
            f"(first idx: {missing[:10]})"
        )
    for r in records:
        p, off = acks[r.idx]
        if p != r.partition:
            raise AssertionError(
                f"record {r.rid.decode()} sent to partition {r.partition} "
                f"but acknowledged in partition {p} at offset {off}"
            )
        if off < 0:
            raise AssertionError(
                f"record {r.rid.decode()} acknowledged with invalid offset {off} "
                f"in partition {p}"
            )
    _one_record_per_offset((r.idx, acks[r.idx]) for r in records)


def _read(consumed: dict, partitions: int, high_watermarks: dict[int, int] | None = None):
    """(partition, message) for every message of a consume pass, after
    checking that it is in its partition at the next dense offset from 0;
    after each partition, that it held as many records as its high
    watermark says."""
    for p in range(partitions):
        msgs = consumed.get(p, [])
        for pos, m in enumerate(msgs):
            if m.partition != p:
                raise AssertionError(f"partition {p} offset {m.offset}: message reports "
                                     f"partition {m.partition}")
            if m.offset != pos:
                prev = msgs[pos - 1].offset if pos else None
                raise AssertionError(
                    f"partition {p}: offsets not dense from 0: message #{pos} has offset "
                    f"{m.offset} (previous offset {prev})"
                )
            yield p, m
        if high_watermarks is not None and len(msgs) != high_watermarks.get(p):
            raise AssertionError(
                f"partition {p}: read {len(msgs)} records but the high watermark is "
                f"{high_watermarks.get(p)}"
            )


def _check_as_sent(where: str, m: Consumed, rec) -> None:
    """The record read is, byte for byte, the one sent."""
    what = f"{where} ({rec.rid.decode()}, codec {rec.codec})"
    if m.key != rec.key:
        raise AssertionError(f"{what}: key differs: got {short(m.key)}, sent {short(rec.key)}")
    if m.value != rec.value:
        diff_at = next(
            (i for i, (a, b) in enumerate(zip(m.value or b"", rec.value or b"")) if a != b),
            None,
        )
        raise AssertionError(
            f"{what}: value differs (first differing byte {diff_at}): got {short(m.value)}, "
            f"sent {short(rec.value)}"
        )
    if list(m.headers) != list(rec.headers):
        raise AssertionError(f"{what}: headers differ: got {m.headers!r}, sent {rec.headers!r}")


def check_exactly_once(
    records: list,
    acks: dict[int, tuple[int, int]],
    consumed: dict[int, list[Consumed]],
    partitions: int,
    high_watermarks: dict[int, int] | None = None,
) -> None:
    """A consume pass against acknowledged records: every record acknowledged
    (check_acks) and read back exactly once, byte for byte, at its
    acknowledged partition/offset; offsets dense from 0 (up to the high
    watermark); nothing else read."""
    check_acks(records, acks)
    by_rid = {r.rid: r for r in records}
    seen: set[int] = set()
    for p, m in _read(consumed, partitions, high_watermarks):
        where = f"partition {p} offset {m.offset}"
        rid = record_id(m.headers)
        if rid is None:
            raise AssertionError(
                f"{where}: unexpected record without 'id' header: key={short(m.key)} "
                f"value={short(m.value)} headers={m.headers!r}"
            )
        rec = by_rid.get(rid)
        if rec is None:
            raise AssertionError(f"{where}: unexpected record id {rid!r}")
        if rec.idx in seen:
            raise AssertionError(f"{where}: record {rid.decode()} read more than once")
        seen.add(rec.idx)
        ap, aoff = acks[rec.idx]
        if (ap, aoff) != (p, m.offset):
            raise AssertionError(
                f"{where}: record {rid.decode()} was acknowledged at partition {ap} offset {aoff}"
            )
        _check_as_sent(where, m, rec)
    not_read = [r for r in records if r.idx not in seen]
    if not_read:
        r = not_read[0]
        raise AssertionError(
            f"{len(not_read)} acknowledged records were never read back; first: "
            f"{r.rid.decode()} acknowledged at partition/offset {acks[r.idx]}"
        )


@dataclass
class AtLeastOnce:
    duplicates: int  # extra copies of records (retried after a lost answer)
    unacked_present: int  # records never acknowledged, but stored


def check_at_least_once(records: list, acks: dict[int, tuple[int, int]], consumed: dict,
                        partitions: int,
                        high_watermarks: dict[int, int] | None = None) -> AtLeastOnce:
    """For runs where producers retry and brokers may die:

    * offsets are dense from 0 in each partition (and reach the high
      watermark), each offset holds one record;
    * every record read is one that some producer sent, byte for byte, in
      the partition it was sent to;
    * every acknowledged record is at its acknowledged partition/offset,
      and no two acknowledgements name the same offset.

    Copies of records at other offsets (a retry after a lost answer) are
    allowed and counted."""
    by_rid = {r.rid: r for r in records}
    _one_record_per_offset(acks.items())
    copies: dict[int, int] = {}
    for p, m in _read(consumed, partitions, high_watermarks):
        where = f"partition {p} offset {m.offset}"
        rid = record_id(m.headers)
        rec = by_rid.get(rid)
        if rec is None:
            raise AssertionError(f"{where}: record {rid!r} was never produced "
                                 f"(key {short(m.key)}, value {short(m.value)})")
        if rec.partition != p:
            raise AssertionError(f"{where}: record {rid.decode()} was sent to partition "
                                 f"{rec.partition}")
        _check_as_sent(where, m, rec)
        copies[rec.idx] = copies.get(rec.idx, 0) + 1
    by_idx = {r.idx: r for r in records}
    lost = []
    for idx, (p, off) in sorted(acks.items()):
        msgs = consumed.get(p, [])
        got = record_id(msgs[off].headers) if 0 <= off < len(msgs) else None
        if got != by_idx[idx].rid:
            lost.append((idx, p, off, got))
    if lost:
        idx, p, off, got = lost[0]
        raise AssertionError(
            f"{len(lost)} acknowledged records are not at their acknowledged offsets; first: "
            f"{by_idx[idx].rid.decode()} acknowledged at partition {p} offset "
            f"{off}, which holds {got!r} (partition has {len(consumed.get(p, []))} records)"
        )
    duplicates = sum(n - 1 for n in copies.values())
    unacked = sum(1 for idx in copies if idx not in acks)
    return AtLeastOnce(duplicates, unacked)


def check_send_order(records: list, acks: dict[int, tuple[int, int]],
                     producer_of: Callable[[object], str]) -> None:
    """Producers without retries: the records one producer sent to one
    partition were appended in the order sent, even with several requests in
    flight. `records` are in send order; `producer_of(r)` names the producer
    of record r; records never acknowledged are skipped."""
    last: dict[tuple[str, int], object] = {}
    for r in records:
        if r.idx not in acks:
            continue
        k = (producer_of(r), r.partition)
        prev = last.get(k)
        if prev is not None and acks[r.idx][1] <= acks[prev.idx][1]:
            raise AssertionError(
                f"{k[0]}, partition {r.partition}: sent {prev.rid.decode()} before "
                f"{r.rid.decode()}, but they were appended at offsets {acks[prev.idx][1]} and "
                f"{acks[r.idx][1]} (order of one producer's records in a partition not preserved)"
            )
        last[k] = r


def check_dense_acks(acked: Iterable[tuple[int, int]], start: dict[int, int] | None = None) -> None:
    """In each partition the acknowledged (partition, offset)s are exactly
    start[p], start[p] + 1, ... (from 0 without `start`): nothing skipped,
    nothing given twice."""
    per_part: dict[int, list[int]] = defaultdict(list)
    for p, off in acked:
        per_part[p].append(off)
    for p, offs in sorted(per_part.items()):
        offs.sort()
        first = start[p] if start is not None else 0
        expected = list(range(first, first + len(offs)))
        if offs != expected:
            raise AssertionError(
                f"partition {p}: acknowledged offsets {offs[:5]}... are not dense from {first} "
                f"(expected {expected[:5]}...)"
            )


def check_appended_after(records: list, acks: dict[int, tuple[int, int]],
                         high: dict[int, int]) -> None:
    """Records produced after a read that saw high watermarks `high` got
    offsets at or above them."""
    for r in records:
        p, off = acks[r.idx]
        if off < high[p]:
            raise AssertionError(
                f"record {r.rid.decode()} produced later got offset {off} in partition {p}, "
                f"below the earlier high watermark {high[p]}"
            )


def check_same_bytes(reference: dict, other: dict, partitions: int, what: str) -> None:
    """Two consume passes returned identical records at identical offsets."""
    for p in range(partitions):
        a, b = reference.get(p, []), other.get(p, [])
        for x, y in zip(a, b):
            if (x.offset, x.key, x.value, list(x.headers)) != (y.offset, y.key, y.value,
                                                               list(y.headers)):
                raise AssertionError(
                    f"{what}: partition {p} offset {x.offset}: records differ: "
                    f"{record_id(x.headers)!r} (key {short(x.key)}, value "
                    f"{short(x.value)}) vs {record_id(y.headers)!r} at offset "
                    f"{y.offset} (key {short(y.key)}, value {short(y.value)})"
                )
        if len(a) != len(b):
            raise AssertionError(f"{what}: partition {p}: {len(a)} vs {len(b)} records")


def check_values_once(consumed: dict[int, list[Consumed]], partitions: int,
                      acked: dict[bytes, tuple[int, int]]) -> None:
    """Records told apart by their value: no value stored twice, offsets
    dense from 0, every acknowledged value at its acknowledged
    (partition, offset)."""
    seen = Counter(m.value for msgs in consumed.values() for m in msgs)
    dups = [v for v, c in seen.items() if c > 1]
    if dups:
        raise AssertionError(f"{len(dups)} records committed twice, e.g. {dups[:5]}")
    by_offset = {(p, m.offset): m.value for p, m in _read(consumed, partitions)}
    for value, where in acked.items():
        if by_offset.get(where) != value:
            raise AssertionError(f"{value!r} acknowledged at {where}, found {by_offset.get(where)!r}")


# --------------------------------------------------------------------------
# kcat (line based, reports no offsets on produce)
# --------------------------------------------------------------------------


def _enc(s: bytes | None) -> str | None:
    return None if s is None else s.decode("ascii")


def check_kcat_partition(p: int, expected: list, got: list[dict]) -> None:
    """Partition p holds exactly `expected` (kcat text records with a "codec"
    header), intact, at offsets 0..n-1, in the order sent. Content is checked
    before order, so that a reordering is reported as such rather than as a
    key/value mismatch."""
    # 1. dense offsets from 0
    for pos, m in enumerate(got):
        if m.get("partition") != p:
            raise AssertionError(
                f"kcat partition {p} message #{pos}: reports partition {m.get('partition')}"
            )
        if m.get("offset") != pos:
            prev = got[pos - 1].get("offset") if pos else None
            raise AssertionError(
                f"partition {p}: offsets not dense from 0: message #{pos} has offset "
                f"{m.get('offset')} (previous {prev})"
            )

    # 2. the same records, each exactly once, byte for byte
    def sent(r) -> tuple:
        return (_enc(r.key), _enc(r.value), ("codec", r.codec))

    def read(m: dict) -> tuple:
        h = m.get("headers") or []
        return (m.get("key"), m.get("payload"), tuple(h))

    want = Counter(sent(r) for r in expected)
    have = Counter(read(m) for m in got)
    if want != have:
        missing = want - have
        extra = have - want
        first_extra = next(
            (pos for pos, m in enumerate(got) if read(m) in extra), None
        )
        detail = ""
        if first_extra is not None:
            m = got[first_extra]
            detail = (
                f"; first unexpected record at offset {first_extra}: key={m.get('key')!r:.60} "
                f"payload={m.get('payload')!r:.80} headers={m.get('headers')!r}"
            )
        if missing:
            k, v, h = next(iter(missing))
            detail += f"; first missing: key={k!r:.60} payload={v!r:.80} headers={list(h)!r}"
        raise AssertionError(
            f"kcat partition {p}: read {len(got)} records, sent {len(expected)}; "
            f"{sum(missing.values())} sent records not read back, "
            f"{sum(extra.values())} read records not sent (or altered){detail}"
        )

    # 3. in the order sent
    sent_pos: dict[tuple, list[int]] = defaultdict(list)
    for pos, r in enumerate(expected):
        sent_pos[sent(r)].append(pos)
    for pos, (m, r) in enumerate(zip(got, expected)):
        if read(m) != sent(r):
            other = sent_pos[read(m)]
            m_id = (m.get("payload") or "").split(":", 1)[0] or "(null payload)"
            raise AssertionError(
                f"partition {p}: order not preserved: offset {pos} holds {m_id} "
                f"(sent as message #{other[0]} of this partition), but message #{pos} sent "
                f"was {r.rid.decode()} (codec {r.codec}); each (partition, codec) chunk was "
                f"produced by one kcat process without retries"
            )


# --------------------------------------------------------------------------
# Consumer groups: what was processed (groupkit.Ledger events)
# --------------------------------------------------------------------------


@dataclass
class Accounting:
    processed: int  # processing events
    unique: int
    lost: list[bytes]  # produced, never processed
    unexpected: list[bytes]  # processed, never produced
    duplicates: int  # extra processing events
    uncommitted: int  # processing events whose commit failed
    unexplained: dict[bytes, list]  # duplicates not covered by a failed commit
    per_consumer: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.processed} processed ({self.unique} unique) by {self.per_consumer}; "
                f"{len(self.lost)} lost, {len(self.unexpected)} unexpected, {self.duplicates} "
                f"duplicates, {self.uncommitted} processed but not committed, "
                f"{len(self.unexplained)} duplicates without a failed commit")


def account(events: list, expected: set[bytes]) -> Accounting:
    """Compares processing events (consumer, partition, offset, rid,
    committed) with the ids produced. A record processed n > 1 times is
    explained only if at least n - 1 of its processings were followed by a
    failed commit (the consumer lost the partition before it could record
    its progress)."""
    seen: dict[bytes, list] = defaultdict(list)
    for e in events:
        seen[e.rid].append(e)
    unexplained = {}
    for rid, evs in seen.items():
        if len(evs) > 1 and sum(1 for e in evs if not e.committed) < len(evs) - 1:
            unexplained[rid] = evs
    return Accounting(
        processed=len(events),
        unique=len(seen),
        lost=sorted(expected - seen.keys()),
        unexpected=sorted(seen.keys() - expected),
        duplicates=len(events) - len(seen),
        uncommitted=sum(1 for e in events if not e.committed),
        unexplained=unexplained,
        per_consumer=dict(Counter(e.consumer for e in events)),
    )


def describe_events(evs: list) -> str:
    return "; ".join(f"{e.consumer} p{e.partition}@{e.offset} committed={e.committed}"
                     for e in evs)


def check_processed(acc: Accounting, what: str) -> None:
    """No loss, nothing unknown, and every duplicate explained by a failed
    commit."""
    assert not acc.lost, (f"{what}: {len(acc.lost)} produced records were never processed, "
                          f"e.g. {acc.lost[:5]}; {acc.summary()}")
    assert not acc.unexpected, f"{what}: unknown records processed: {acc.unexpected[:5]}"
    if acc.unexplained:
        rid, evs = next(iter(acc.unexplained.items()))
        raise AssertionError(
            f"{what}: {len(acc.unexplained)} records processed more than once although the "
            f"commit after processing them succeeded; e.g. {rid!r}: {describe_events(evs)}; "
            f"{acc.summary()}")
