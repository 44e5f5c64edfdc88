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
