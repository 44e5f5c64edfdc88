"""checker.py on small hand-made histories: clean ones pass, and every kind
of anomaly is flagged (and only that kind)."""

from __future__ import annotations

import copy

from checker import check, compact, record_value

IDEM, PLAIN = "idem", "plain"


def base() -> dict:
    """Two producers, two partitions; every record acknowledged where it is,
    all agents agree, a consumer read and committed in order."""
    producers = {IDEM: {"idempotent": True, "partitions": [0, 0, 1]},
                 PLAIN: {"idempotent": False, "partitions": [1, 0]}}
    log = {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1)], 1: [(IDEM, 2), (PLAIN, 0)]}
    reports = []
    for p, rids in log.items():
        for off, (prod, seq) in enumerate(rids):
            reports.append([1.0 + off, prod, seq, p, off, None, False])
    return {
        "producers": producers,
        "reports": reports,
        "reads": {a: read(log) for a in ("a1", "a2", "a3")},
        "group": {
            "consumed": [[2.0, "g1", 0, 0, record_value(IDEM, 0)],
                         [2.0, "g1", 0, 1, record_value(PLAIN, 1)]],
            "commits": [[2.1, 2.2, "g1", {"0": 1}, {"0": True}, None],
                        [2.3, 2.4, "g1", {"0": 2}, {"0": True}, None]],
            "final_committed": {"0": 2},
        },
        "incidents": [],
    }


def read(log: dict) -> dict:
    return {"high": {str(p): len(r) for p, r in log.items()},
            "records": {str(p): [[off, record_value(*rid) if isinstance(rid, tuple) else rid]
                                 for off, rid in enumerate(r)] for p, r in log.items()},
            "error": None}


def set_log(h: dict, log: dict, agents=("a1", "a2", "a3")) -> None:
    for a in agents:
        h["reads"][a] = read(log)


def only(h: dict, kind: str, n: int = 1) -> None:
    v = check(h)
    assert dict(v.anomalies) == {kind: n}, v.details()


def test_clean_history_passes():
    v = check(base())
    assert v.total == 0, v.details()
    assert v.info["acked"] == 5 and v.info["consumed"] == 2 and v.info["commits"] == 2


def test_failed_send_may_be_absent_or_present():
    h = base()
    # plain #1 failed (not resent) and is absent; idem #2 failed and is present
    h["producers"][PLAIN]["partitions"].append(1)
    h["reports"].append([3.0, PLAIN, 2, 1, None, "_MSG_TIMED_OUT: timed out", False])
    h["reports"] = [r for r in h["reports"] if (r[1], r[2]) != (IDEM, 2)]
    h["reports"].append([3.0, IDEM, 2, 1, None, "REQUEST_TIMED_OUT: x", False])
    v = check(h)
    assert v.total == 0, v.details()
    assert v.info["unacked_present"] == 1


def test_lost_acknowledged_record():
    h = base()
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1)], 1: [(IDEM, 2), (PLAIN, 0)]})
    only(h, "lost")


def test_acknowledged_record_at_another_offset_is_moved():
    h = base()
    set_log(h, {0: [(IDEM, 0), (IDEM, 1), (PLAIN, 1)], 1: [(IDEM, 2), (PLAIN, 0)]})
    v = check(h)
    # the consumer read plain #1 at offset 1, which now holds idem #1
    assert dict(v.anomalies) == {"moved": 2, "divergent": 1}, v.details()


def test_idempotent_duplicate_is_flagged_even_after_errors():
    h = base()
    h["reports"].insert(0, [0.5, IDEM, 0, 0, None, "REQUEST_TIMED_OUT: x", True])
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1), (IDEM, 0)], 1: [(IDEM, 2), (PLAIN, 0)]})
    only(h, "duplicate")


def test_plain_duplicate_after_failed_send_is_allowed():
    h = base()
    # plain #1: first send failed (resent), the resend was acknowledged at 1;
    # the failed send was stored anyway, at offset 3.
    h["reports"].insert(0, [0.5, PLAIN, 1, 0, None, "REQUEST_TIMED_OUT: x", True])
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1), (PLAIN, 1)], 1: [(IDEM, 2), (PLAIN, 0)]})
    v = check(h)
    assert v.total == 0, v.details()
    assert v.info["duplicates_after_failed_send"] == 1


def test_plain_duplicate_without_any_send_error_is_flagged():
    h = base()
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1), (PLAIN, 1)], 1: [(IDEM, 2), (PLAIN, 0)]})
    only(h, "duplicate")


def test_plain_more_copies_than_sends_is_flagged():
    h = base()
    # one failed send, resent once: at most two copies, here three
    h["reports"].insert(0, [0.5, PLAIN, 1, 0, None, "REQUEST_TIMED_OUT: x", True])
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1), (PLAIN, 1), (PLAIN, 1)],
                1: [(IDEM, 2), (PLAIN, 0)]})
    only(h, "duplicate")


def test_failed_send_without_resend_allows_one_copy_only():
    h = base()
    h["reports"] = [r for r in h["reports"] if (r[1], r[2]) != (PLAIN, 0)]
    h["reports"].append([3.0, PLAIN, 0, 1, None, "_MSG_TIMED_OUT: x", False])
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1)], 1: [(IDEM, 2), (PLAIN, 0), (PLAIN, 0)]})
    only(h, "duplicate")


def test_agents_disagreeing_is_divergent():
    h = base()
    set_log(h, {0: [(IDEM, 0), (IDEM, 1), (PLAIN, 1)], 1: [(IDEM, 2), (PLAIN, 0)]},
            agents=("a3",))
    v = check(h)
    assert v.anomalies["divergent"] == 2, v.details()
    assert set(v.anomalies) == {"divergent"}


def test_agent_missing_records_is_divergent():
    h = base()
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1)], 1: [(IDEM, 2), (PLAIN, 0)]}, agents=("a2",))
    only(h, "divergent")


def test_gap_in_offsets():
    h = base()
    for a in h["reads"].values():
        a["records"]["1"][1][0] = 2  # offsets 0, 2
    only(h, "offset_gap", 3)


def test_read_short_of_high_watermark():
    h = base()
    h["reads"]["a1"]["high"]["1"] = 3
    v = check(h)
    assert v.anomalies["offset_gap"] == 1, v.details()


def test_unknown_and_corrupted_records():
    h = base()
    log = {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1), "stranger|0|x"],
           1: [(IDEM, 2), (PLAIN, 0), record_value(IDEM, 0)[:-1] + "!", (IDEM, 1)]}
    set_log(h, log)
    v = check(h)
    # a stranger, a changed byte, and idem #1 in a partition it was not sent
    # to (which also makes it a second copy)
    assert v.anomalies["unknown"] == 3, v.details()
    assert v.anomalies["duplicate"] == 1


def test_two_records_acknowledged_at_one_offset():
    h = base()
    h["reports"].append([4.0, PLAIN, 1, 0, 2, None, False])  # idem #1 is acked at 0/2
    v = check(h)
    assert v.anomalies["ack_conflict"] == 2, v.details()  # twice acked, shared offset


def test_acknowledged_in_another_partition():
    h = base()
    h["reports"][0][3] = 1
    only(h, "ack_invalid")


def test_idempotent_reorder():
    h = base()
    # idem #1 (sent after #0) lands before it
    set_log(h, {0: [(IDEM, 1), (PLAIN, 1), (IDEM, 0)], 1: [(IDEM, 2), (PLAIN, 0)]})
    for r in h["reports"]:
        if (r[1], r[2]) == (IDEM, 0):
            r[4] = 2
        if (r[1], r[2]) == (IDEM, 1):
            r[4] = 0
    h["group"]["consumed"] = []
    only(h, "reorder")


def test_plain_order_is_not_checked():
    h = base()
    h["producers"][PLAIN]["partitions"] = [0, 0]
    set_log(h, {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1), (PLAIN, 0)], 1: [(IDEM, 2)]})
    for r in h["reports"]:
        if (r[1], r[2]) == (PLAIN, 0):
            r[3], r[4] = 0, 3
    v = check(h)
    assert v.total == 0, v.details()


def test_consumer_saw_what_the_log_does_not_hold():
    h = base()
    h["group"]["consumed"].append([2.0, "g2", 1, 5, record_value(IDEM, 2)])
    h["group"]["consumed"].append([2.0, "g2", 0, 2, record_value(IDEM, 0)])
    only(h, "divergent", 2)


def test_commit_going_backwards():
    h = base()
    h["group"]["commits"].append([3.0, 3.1, "g2", {"0": 1}, {"0": True}, None])
    only(h, "commit_backwards")


def test_overlapping_commits_are_not_ordered():
    h = base()
    h["group"]["commits"].append([2.15, 2.5, "g2", {"0": 0}, {"0": True}, None])
    h["group"]["commits"].append([2.35, 2.6, "g2", {"0": 1}, {"0": True}, None])
    # 2.35 starts after 2.2 answered commit 1: offset 1 is fine; 2.15 overlaps
    v = check(h)
    assert v.total == 0, v.details()


def test_failed_commit_does_not_count():
    h = base()
    h["group"]["commits"].append([3.0, 3.1, "g2", {"0": 0}, {"0": False}, "ILLEGAL_GENERATION"])
    v = check(h)
    assert v.total == 0, v.details()


def test_final_committed_offset_lower_than_a_commit():
    h = base()
    h["group"]["final_committed"] = {"0": 1}
    only(h, "commit_backwards")


def test_failed_read_and_no_reads():
    h = base()
    h["reads"]["a2"] = {"high": {}, "records": {}, "error": "AssertionError('stalled')"}
    only(h, "read_failed")
    h["reads"] = {}
    only(h, "read_failed")


def test_incidents_and_client_errors_fail_the_run():
    h = base()
    h["incidents"] = [[5.0, "crashed", "a2", "exit code 101\npanicked"],
                      [9.0, "heal_failed", "etcd m1", "not healthy"]]
    h["load_errors"] = ["producers ['load-idem'] still running after 180s"]
    v = check(h)
    assert dict(v.anomalies) == {"crashed": 1, "heal_failed": 1, "client_error": 1}


def test_history_is_not_modified():
    h = base()
    set_log(h, {0: [(IDEM, 0), (IDEM, 0)], 1: []})
    before = copy.deepcopy(h)
    assert check(h).total
    assert h == before


def test_compact_values_are_read_as_the_values_they_stand_for():
    h = base()
    for r in h["reads"].values():
        for rows in r["records"].values():
            for row in rows:
                row[1] = compact(row[1])
    h["group"]["consumed"] = [row[:4] + [compact(row[4])] for row in h["group"]["consumed"]]
    assert h["reads"]["a1"]["records"]["0"][0][1] == "=idem|0"
    assert check(h).total == 0
    changed = record_value(IDEM, 2)[:-1] + "?"
    assert compact(changed) == changed
    h["reads"]["a2"]["records"]["1"][0][1] = compact(changed)
    v = check(h)
    assert v.anomalies["divergent"] == 1, v.details()


# --------------------------------------------------------------------------
# Compacted topics (rules 1c, 2c, 3c and 6c)
# --------------------------------------------------------------------------

# Partition 0 as written: idem #0 (key a), plain #1 (b), idem #1 (a), plain
# #3 (b, its send failed but it was stored), idem #3 (e), idem #4 (b).
# Partition 1: idem #2 (c), plain #0 (c), plain #2 (d).
WRITTEN = {0: [(IDEM, 0), (PLAIN, 1), (IDEM, 1), (PLAIN, 3), (IDEM, 3), (IDEM, 4)],
           1: [(IDEM, 2), (PLAIN, 0), (PLAIN, 2)]}
# What the cleaner keeps: the last record of every key.
CLEANED = {0: {2: (IDEM, 1), 4: (IDEM, 3), 5: (IDEM, 4)}, 1: {1: (PLAIN, 0), 2: (PLAIN, 2)}}


def compacted_base() -> dict:
    """A compacted topic: a1 and a3 were read after the cleaner ran, a2
    before; every acknowledged record is either where it was acknowledged
    or superseded; the group read records the cleaner removed since."""
    producers = {IDEM: {"idempotent": True, "partitions": [0, 0, 1, 0, 0],
                        "keys": ["a", "a", "c", "e", "b"]},
                 PLAIN: {"idempotent": False, "partitions": [1, 0, 1, 0],
                         "keys": ["c", "b", "d", "b"]}}
    reports = []
    for p, rids in WRITTEN.items():
        for off, (prod, seq) in enumerate(rids):
            if (prod, seq) == (PLAIN, 3):
                reports.append([1.0 + off, prod, seq, p, None, "REQUEST_TIMED_OUT: x", False])
            else:
                reports.append([1.0 + off, prod, seq, p, off, None, False])
    h = {
        "config": {"compacted": True},
        "producers": producers,
        "reports": reports,
        "reads": {"a1": sparse_read(CLEANED, producers), "a2": sparse_read(
            {p: dict(enumerate(r)) for p, r in WRITTEN.items()}, producers),
                  "a3": sparse_read(CLEANED, producers)},
        "group": {
            "consumed": [[2.0, "g1", 0, 0, record_value(IDEM, 0)],
                         [2.0, "g1", 0, 1, record_value(PLAIN, 1)]],
            "commits": [[2.1, 2.2, "g1", {"0": 1}, {"0": True}, None],
                        [2.3, 2.4, "g1", {"0": 2}, {"0": True}, None]],
            "final_committed": {"0": 2},
        },
        "incidents": [],
    }
    return h


def sparse_read(log: dict, producers: dict, high: dict | None = None) -> dict:
    """A read of a compacted topic: {p: {offset: (producer, seq)}}, keys as
    sent; the high watermarks of WRITTEN unless given."""
    high = high or {p: len(r) for p, r in WRITTEN.items()}
    return {"high": {str(p): h for p, h in high.items()},
            "records": {str(p): [[off, compact(record_value(*rid)),
                                  producers[rid[0]]["keys"][rid[1]]]
                                 for off, rid in sorted(log.get(p, {}).items())]
                        for p in high},
            "error": None}


def set_sparse(h: dict, log: dict, agents=("a1", "a2", "a3"), high: dict | None = None) -> None:
    for a in agents:
        h["reads"][a] = sparse_read(log, h["producers"], high)


def without(log: dict, p: int, off: int) -> dict:
    out = {q: dict(held) for q, held in log.items()}
    del out[p][off]
    return out


def test_compacted_history_passes():
    v = check(compacted_base())
    assert v.total == 0, v.details()
    # idem #0, plain #1 (partition 0) and idem #2 (partition 1) were removed
    assert v.info["acked_removed"] == 3 and v.info["offsets_removed"] == 4
    assert v.info["acked"] == 8 and v.info["records_in_log"] == 5


def test_compacted_uncleaned_history_passes():
    h = compacted_base()
    set_sparse(h, {p: dict(enumerate(r)) for p, r in WRITTEN.items()})
    v = check(h)
    assert v.total == 0, v.details()
    assert v.info["acked_removed"] == 0 and v.info["duplicates_after_failed_send"] == 0


def test_compacted_removed_record_without_a_later_record_of_its_key_is_lost():
    h = compacted_base()
    # idem #3 is the only record of key e: the cleaner must keep it
    set_sparse(h, without(CLEANED, 0, 4))
    only(h, "lost")


def test_compacted_removed_latest_record_of_a_key_is_lost_with_what_it_superseded():
    h = compacted_base()
    # without idem #1 nothing supersedes idem #0 either (both key a)
    set_sparse(h, without(CLEANED, 0, 2))
    v = check(h)
    # and the group read idem #0 at offset 0, which nothing supersedes now
    assert dict(v.anomalies) == {"lost": 2, "divergent": 1}, v.details()


def test_compacted_record_at_a_wrong_offset_is_moved():
    h = compacted_base()
    log = without(CLEANED, 0, 4)
    log[0][3] = (IDEM, 3)  # acknowledged at 4
    set_sparse(h, log)
    only(h, "moved")


def test_compacted_acknowledged_offset_holding_another_record():
    h = compacted_base()
    log = without(CLEANED, 0, 4)
    log[0][3] = (IDEM, 3)
    log[0][4] = (PLAIN, 3)  # idem #3's offset holds another record of key b
    set_sparse(h, log)
    v = check(h)
    # idem #3 is only elsewhere; plain #3 (key b) at 4 is superseded by
    # idem #4 at 5, which the cleaner would have removed, but that is allowed
    assert dict(v.anomalies) == {"moved": 1}, v.details()


def test_compacted_superseded_by_a_record_of_another_partition_is_lost():
    h = compacted_base()
    h["producers"][PLAIN]["keys"][2] = "e"  # plain #2 (partition 1) has idem #3's key
    log = without(CLEANED, 0, 4)
    set_sparse(h, log)
    h["reads"]["a2"] = sparse_read(without({p: dict(enumerate(r)) for p, r in WRITTEN.items()},
                                           0, 4), h["producers"])
    only(h, "lost")


def test_compacted_later_copy_of_the_same_record_supersedes_it():
    h = compacted_base()
    # plain #3's failed send was stored at offset 3, its resend acknowledged
    # at 6: the cleaner removed the copy at 3 (and idem #4 at 5, key b)
    h["reports"] = [r for r in h["reports"] if (r[1], r[2]) != (PLAIN, 3)]
    h["reports"] += [[3.0, PLAIN, 3, 0, None, "REQUEST_TIMED_OUT: x", True],
                     [6.0, PLAIN, 3, 0, 6, None, False]]
    high = {0: 7, 1: 3}
    log = without(CLEANED, 0, 5)
    log[0][6] = (PLAIN, 3)
    set_sparse(h, log, high=high)
    v = check(h)
    assert v.total == 0, v.details()
    # and with the acknowledged copy removed, nothing supersedes it
    set_sparse(h, without(log, 0, 6), high=high)
    v = check(h)
    # nor idem #4 and plain #1 (key b), which the group read at offset 1
    assert dict(v.anomalies) == {"lost": 3, "offset_gap": 3, "divergent": 1}, v.details()


def test_compacted_reads_out_of_order_or_short_of_the_high_watermark():
    h = compacted_base()
    h["reads"]["a1"]["records"]["0"].reverse()
    v = check(h)
    assert v.anomalies["offset_gap"] == 2, v.details()  # out of order, ends at 2
    h = compacted_base()
    h["reads"]["a3"]["high"]["1"] = 4  # the last offset, 3, must hold a record
    v = check(h)
    assert v.anomalies["offset_gap"] == 1 and v.anomalies["divergent"] == 1, v.details()


def test_compacted_reads_at_different_cleaning_progress_agree():
    h = compacted_base()
    # a2 was cleaned partially: partition 0 up to offset 1 only
    set_sparse(h, {0: {2: (IDEM, 1), 3: (PLAIN, 3), 4: (IDEM, 3), 5: (IDEM, 4)},
                   1: dict(enumerate(WRITTEN[1]))}, agents=("a2",))
    v = check(h)
    assert v.total == 0, v.details()


def test_compacted_read_missing_a_record_the_other_read_keeps_is_divergent():
    h = compacted_base()
    # a3 lacks plain #2, the only record of key d (not acknowledged: no lost)
    h["reports"] = [r for r in h["reports"] if (r[1], r[2]) != (PLAIN, 2)]
    set_sparse(h, without(CLEANED, 1, 2), agents=("a3",))
    v = check(h)
    assert v.anomalies["divergent"] == 1, v.details()
    assert set(v.anomalies) == {"divergent", "offset_gap"}  # a3 also ends short


def test_compacted_reads_with_different_records_or_high_watermarks_are_divergent():
    h = compacted_base()
    log = {q: dict(held) for q, held in CLEANED.items()}
    log[1][1] = (IDEM, 2)  # a3 holds idem #2 where a1 holds plain #0
    set_sparse(h, log, agents=("a3",))
    v = check(h)
    assert v.anomalies["divergent"] == 1, v.details()
    h = compacted_base()
    set_sparse(h, {0: CLEANED[0], 1: {**CLEANED[1], 3: (PLAIN, 2)}}, agents=("a3",),
               high={0: 6, 1: 4})
    v = check(h)
    # a higher high watermark; plain #2 at offset 3 too (also a duplicate
    # of a record acknowledged once, but the checker counts a1's log only)
    assert v.anomalies["divergent"] == 2, v.details()


def test_compacted_key_read_differs_from_the_key_sent():
    h = compacted_base()
    h["reads"]["a1"]["records"]["0"][0][2] = "z"
    v = check(h)
    assert v.anomalies["unknown"] == 1, v.details()


def test_compacted_consumer_read_a_removed_record_that_nothing_supersedes():
    h = compacted_base()
    # plain #3 (key b) read at offset 3, which the log does not hold; a later
    # record of its key is at offset 5 - fine
    h["group"]["consumed"].append([2.5, "g2", 0, 3, record_value(PLAIN, 3)])
    v = check(h)
    assert v.total == 0, v.details()
    # idem #1 (key a) read at offset 3: nothing of key a above 2, its offset
    h["group"]["consumed"].append([2.5, "g2", 0, 3, record_value(IDEM, 1)])
    # idem #0 read at partition 1 offset 0: superseded, but sent to partition 0
    h["group"]["consumed"].append([2.5, "g2", 1, 0, record_value(IDEM, 0)])
    # beyond the high watermark; and over another record
    h["group"]["consumed"].append([2.5, "g2", 0, 9, record_value(IDEM, 4)])
    h["group"]["consumed"].append([2.5, "g2", 0, 5, record_value(IDEM, 3)])
    only(h, "divergent", 4)


def test_compacted_copies_the_cleaner_removed_are_duplicates():
    h = compacted_base()
    # the group read idem #1 at offset 0 as well: the log holds it at 2, a
    # later record of its key, but an idempotent producer stores it once
    h["group"]["consumed"].append([2.5, "g2", 0, 0, record_value(IDEM, 1)])
    only(h, "duplicate")
    # plain #3's failed send may have stored it once more than its ack: it
    # was acknowledged at 3 after a failed, resent send, and is kept at 6
    h = compacted_base()
    h["reports"] = [r for r in h["reports"] if (r[1], r[2]) != (PLAIN, 3)]
    h["reports"] += [[3.0, PLAIN, 3, 0, None, "REQUEST_TIMED_OUT: x", True],
                     [3.5, PLAIN, 3, 0, 3, None, False]]
    set_sparse(h, {0: {**CLEANED[0], 6: (PLAIN, 3)}, 1: CLEANED[1]}, high={0: 7, 1: 3})
    v = check(h)
    assert v.total == 0 and v.info["duplicates_after_failed_send"] == 1, v.details()
    # a third copy, read by the group at offset 1: more copies than sends
    h["group"]["consumed"].append([2.5, "g2", 0, 1, record_value(PLAIN, 3)])
    only(h, "duplicate")


def test_non_compacted_history_with_gaps_still_fails():
    h = compacted_base()
    del h["config"]
    v = check(h)
    assert v.anomalies["offset_gap"] and v.anomalies["lost"], v.details()


def txn_history() -> dict:
    """base() with a transactional producer: 1 committed (2 records),
    2 aborted, 3 of unknown outcome that did not happen, 4 unknown that did."""
    from checker import txn_value
    h = base()
    values = [txn_value(1, 0, 2), txn_value(1, 1, 2), txn_value(4, 0, 1)]
    h["transactions"] = {
        "txns": [[1.0, 1, 2, "committed", None], [2.0, 2, 3, "aborted", None],
                 [3.0, 3, 1, "unknown", "timed out"], [4.0, 4, 1, "unknown", "timed out"]],
        "reads": {a: {"values": list(values), "error": None} for a in ("a1", "a2")},
    }
    return h


def test_transactions_whole_or_absent_pass():
    v = check(txn_history())
    assert v.total == 0, v.details()
    assert v.info["transactions_committed"] == 1


def test_transaction_rules_flag_each_kind():
    from checker import txn_value
    cases = {
        # half of a committed transaction
        "txn_partial": lambda vals: vals.remove(txn_value(1, 1, 2)),
        # an aborted transaction's record
        "txn_aborted_visible": lambda vals: vals.extend([txn_value(2, i, 3) for i in range(3)]),
        # a record read twice
        "txn_duplicate": lambda vals: vals.append(txn_value(4, 0, 1)),
        # a value nobody sent
        "txn_unknown": lambda vals: vals.append("txn|9|0|1"),
    }
    for kind, change in cases.items():
        h = txn_history()
        for read in h["transactions"]["reads"].values():
            change(read["values"])
        v = check(h)
        assert v.anomalies.get(kind), (kind, v.details())
    # an acknowledged commit missing entirely
    h = txn_history()
    for read in h["transactions"]["reads"].values():
        read["values"] = [x for x in read["values"] if not x.startswith("txn|1|")]
    assert check(h).anomalies.get("txn_lost")
    # agents that disagree
    h = txn_history()
    h["transactions"]["reads"]["a2"]["values"].pop()
    assert check(h).anomalies.get("txn_divergent")
