"""Consumer-group helpers for test_groups.py.

Group consumers of three libraries (confluent-kafka, kafka-python, aiokafka)
that all follow the same discipline:

* poll a small batch;
* drop records of partitions the consumer no longer owns (a rebalance
  callback that ran inside the poll call may have revoked them: such
  records belong to the next owner, which starts at the committed offset);
* "process" the rest (append them to a shared Ledger);
* commit the offsets of the processed records synchronously, and mark
  them in the ledger as committed or not (commit failed).

verify.account() then compares what was processed with what was produced.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import roundtrip as rt

POLL_BATCH = 200


# --------------------------------------------------------------------------
# What was processed
# --------------------------------------------------------------------------


@dataclass
class Event:
    consumer: str
    partition: int
    offset: int
    rid: bytes
    committed: bool  # False: the commit after processing it failed


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.commit_errors: list[str] = []  # "consumer: error"

    def add(self, consumer: str, batch: list[tuple[int, int, bytes]], committed: dict[int, bool],
            error: str | None = None) -> None:
        with self.lock:
            for p, o, rid in batch:
                self.events.append(Event(consumer, p, o, rid, committed.get(p, False)))
            if error:
                self.commit_errors.append(f"{consumer}: {error}")

    def processed_ids(self) -> set[bytes]:
        with self.lock:
            return {e.rid for e in self.events}

    def count(self, consumer: str | None = None) -> int:
        with self.lock:
            return sum(1 for e in self.events if consumer is None or e.consumer == consumer)

    def snapshot(self) -> list[Event]:
        """Every processing event so far (for verify.account)."""
        with self.lock:
            return list(self.events)


def wait_until(pred, timeout: float, what, interval: float = 0.1) -> None:
    """Wait for pred() to be true; `what` (a string or a function returning
    one) describes the state in the failure message."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s: {what() if callable(what) else what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Producer in the background (confluent-kafka, unique id per record)
# --------------------------------------------------------------------------


class PacedProducer(threading.Thread):
    """Writes `n` records `tag-i` (value = id, partition i % partitions) at
    about `rate` records per second; keeps every delivery report."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, n: int, tag: str,
                 rate: float = 1500.0):
        super().__init__(name=f"producer-{tag}", daemon=True)
        self.bootstrap, self.topic, self.partitions, self.n, self.tag = (
            bootstrap, topic, partitions, n, tag)
        self.rate = rate
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.failed: dict[bytes, str] = {}
        self.error: str | None = None
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.seconds = 0.0

    def rid(self, i: int) -> bytes:
        return f"{self.tag}-{i}".encode()

    def run(self) -> None:
        from confluent_kafka import Producer

        t0 = time.monotonic()
        try:
            p = Producer({
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": False,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 60_000,
            })

            def on_delivery(err, msg):
                with self.lock:
                    if err is not None:
                        self.failed[msg.value()] = str(err)
                    else:
                        self.acked[msg.value()] = (msg.partition(), msg.offset())

            step = 50
            for start in range(0, self.n, step):
                if self.stop_flag.is_set():
                    break
                for i in range(start, min(start + step, self.n)):
                    while True:
                        try:
                            p.produce(self.topic, value=self.rid(i),
                                      partition=i % self.partitions, on_delivery=on_delivery)
                            break
                        except BufferError:
                            p.poll(0.05)
                p.poll(0)
                # pace: record `start + step` is due at t0 + (start + step) / rate
                delay = t0 + (start + step) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            left = p.flush(60)
            if left:
                self.error = f"{left} records undelivered after flush"
        except Exception as e:  # reported by check()
            self.error = repr(e)
        self.seconds = time.monotonic() - t0

    def check(self) -> None:
        assert self.error is None, f"producer {self.tag}: {self.error}"
        assert not self.failed, (f"producer {self.tag}: {len(self.failed)} delivery failures, "
                                 f"e.g. {next(iter(self.failed.items()))}")
        assert len(self.acked) == self.n, f"producer {self.tag}: {len(self.acked)}/{self.n} acked"


def produce_ids(bootstrap: str, topic: str, partitions: int, n: int, tag: str) -> set[bytes]:
    """Produce n records at full speed; returns their ids."""
    p = PacedProducer(bootstrap, topic, partitions, n, tag, rate=1e9)
    p.start()
    p.join(120)
    assert not p.is_alive(), f"producing {n} records to {topic} took over 120 s"
    p.check()
    return set(p.acked)


# --------------------------------------------------------------------------
# Consumers
# --------------------------------------------------------------------------


OWNED_LOCK = threading.Lock()


def snapshot_owned(consumers: list) -> dict[str, set[int]]:
    """Partitions owned by each consumer that is not closed, at one instant."""
    with OWNED_LOCK:
        return {w.name: set(w.owned) for w in consumers if not w.closed.is_set()}


def next_offsets(batch: list[tuple[int, int, bytes]]) -> dict[int, int]:
    """The offsets to commit after processing `batch`: per partition, one
    past the last (partition, offset, id) processed."""
    nxt: dict[int, int] = {}
    for p, o, _ in batch:
        nxt[p] = max(nxt.get(p, -1), o + 1)
    return nxt


class _Worker(threading.Thread):
    """One group consumer in its own thread: the poll - drop - process -
    commit loop (module doc) and its state (owned partitions, stop flag,
    errors). A subclass adds one client library: _open() (a subscribed
    consumer), _poll() (the next (partition, offset, value)s), _commit() and
    _close()."""

    lib = "?"

    def __init__(self, name: str, ledger: Ledger, topic: str):
        super().__init__(name=name, daemon=True)
        self.ledger = ledger
        self.topic = topic
        self.owned: set[int] = set()
        # One lock for every consumer, so that a snapshot of who owns what
        # (snapshot_owned) is consistent across consumers.
        self.owned_lock = OWNED_LOCK
        self.assigned_ever: set[int] = set()
        self.lost_partitions = 0
        self.stale_dropped = 0
        self.batches = 0
        self.client_errors: list[str] = []  # non-fatal errors the client reported
        self.error: str | None = None
        self.stop_flag = threading.Event()
        self.closed = threading.Event()
        self.started_at = 0.0
        self.rebalances: list[tuple[float, str, list[int]]] = []

    def owned_now(self) -> set[int]:
        with self.owned_lock:
            return set(self.owned)

    def _assigned(self, parts) -> None:
        parts = list(parts)
        with self.owned_lock:
            self.owned |= set(parts)
            self.assigned_ever |= set(parts)
        self.rebalances.append((time.monotonic(), "assign", sorted(parts)))

    def _revoked(self, parts, kind: str = "revoke") -> None:
        parts = list(parts)
        with self.owned_lock:
            self.owned -= set(parts)
        self.rebalances.append((time.monotonic(), kind, sorted(parts)))

    def leave(self, timeout: float = 30.0) -> None:
        """Stop polling and close the consumer (from its own thread)."""
        self.stop_flag.set()
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"consumer {self.name} did not close within {timeout:.0f}s")

    def check(self) -> None:
        assert self.error is None, f"consumer {self.name} ({self.lib}): {self.error}"


    def run(self) -> None:
        self.started_at = time.monotonic()
        c = None
        try:
            c = self._open()
            while not self.stop_flag.is_set():
                msgs = self._poll(c)
                owned = self.owned_now()  # after the callbacks that ran inside the poll
                batch: list[tuple[int, int, bytes]] = []
                for p, o, v in msgs:
                    if p not in owned:
                        self.stale_dropped += 1
                        continue
                    batch.append((p, o, v))
                if not batch:
                    continue
                self.batches += 1
                ok, err = self._commit(c, next_offsets(batch))
                self.ledger.add(self.name, batch, ok, err)
        except Exception as e:
            self.error = repr(e)
        finally:
            if c is not None:
                try:
                    self._close(c)
                except Exception as e:
                    self.error = self.error or f"close: {e!r}"
            self.closed.set()


class ConfluentWorker(_Worker):
    lib = "confluent-kafka"

    def __init__(self, name: str, ledger: Ledger, bootstrap: str, topic: str, group: str,
                 config: dict | None = None):
        super().__init__(name, ledger, topic)
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 500,
            "topic.metadata.refresh.interval.ms": 2_000,
            **(config or {}),
        }

    def _open(self):
        from confluent_kafka import Consumer

        c = Consumer(self.conf)
        c.subscribe(
            [self.topic],
            on_assign=lambda _c, ps: self._assigned(tp.partition for tp in ps),
            on_revoke=lambda _c, ps: self._revoked(tp.partition for tp in ps),
            on_lost=lambda _c, ps: self._lost(tp.partition for tp in ps),
        )
        return c

    def _poll(self, c) -> list[tuple[int, int, bytes]]:
        from confluent_kafka import KafkaError, KafkaException

        out = []
        for m in c.consume(num_messages=POLL_BATCH, timeout=0.2):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if m.error().fatal():
                    raise KafkaException(m.error())
                self.client_errors.append(str(m.error()))
                continue
            out.append((m.partition(), m.offset(), m.value()))
        return out

    def _commit(self, c, nxt: dict[int, int]) -> tuple[dict[int, bool], str | None]:
        from confluent_kafka import KafkaException, TopicPartition

        ok: dict[int, bool] = {}
        err = None
        try:
            res = c.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in nxt.items()],
                           asynchronous=False)
            for tp in res or []:
                ok[tp.partition] = tp.error is None
                if tp.error is not None:
                    err = str(tp.error)
        except KafkaException as e:
            err = str(e)
        return ok, err

    def _close(self, c) -> None:
        c.close()  # revokes (callback) and leaves the group

    def _lost(self, parts) -> None:
        parts = list(parts)
        self.lost_partitions += len(parts)
        self._revoked(parts, "lost")


class KafkaPythonWorker(_Worker):
    lib = "kafka-python"

    def __init__(self, name: str, ledger: Ledger, bootstrap: str, topic: str, group: str,
                 config: dict | None = None):
        super().__init__(name, ledger, topic)
        from kafka.coordinator.assignors.range import RangePartitionAssignor

        self.conf = dict(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=500,
            partition_assignment_strategy=[RangePartitionAssignor],
            request_timeout_ms=30_000,
        )
        self.conf.update(config or {})

    def _open(self):
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                worker._revoked(tp.partition for tp in revoked)

            def on_partitions_assigned(self, assigned):
                worker._assigned(tp.partition for tp in assigned)

        c = KafkaConsumer(**self.conf)
        c.subscribe([self.topic], listener=Listener())
        return c

    def _poll(self, c) -> list[tuple[int, int, bytes]]:
        return [(tp.partition, r.offset, r.value)
                for tp, rs in c.poll(timeout_ms=200, max_records=POLL_BATCH).items() for r in rs]

    def _commit(self, c, nxt: dict[int, int]) -> tuple[dict[int, bool], str | None]:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        try:
            c.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                      for p, o in nxt.items()})
            return {p: True for p in nxt}, None
        except KafkaError as e:
            return {}, repr(e)

    def _close(self, c) -> None:
        c.close(autocommit=False)


def group_worker(lib: str, name: str, ledger: Ledger, bootstrap: str, topic: str, group: str,
                 config: dict | None = None) -> _Worker:
    cls = {"confluent": ConfluentWorker, "kafka-python": KafkaPythonWorker}[lib]
    return cls(name, ledger, bootstrap, topic, group, config)


async def aiokafka_group(bootstrap: str, topic: str, group: str, ledger: Ledger,
                         expected: int, members: int = 2, timeout: float = 60.0) -> dict:
    """`members` AIOKafkaConsumers in one group (one event loop) read until
    the ledger holds `expected` distinct records, committing after every
    batch. Returns {member name: partitions assigned at the end}."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition

    owned: dict[str, set[int]] = {f"aio{i + 1}": set() for i in range(members)}

    class Listener(ConsumerRebalanceListener):
        def __init__(self, name):
            self.name = name

        async def on_partitions_revoked(self, revoked):
            owned[self.name] -= {tp.partition for tp in revoked}

        async def on_partitions_assigned(self, assigned):
            owned[self.name] |= {tp.partition for tp in assigned}

    done = asyncio.Event()

    async def member(name: str) -> None:
        c = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id=name,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=10_000, heartbeat_interval_ms=500,
        )
        c.subscribe([topic], listener=Listener(name))
        await c.start()
        try:
            while not done.is_set():
                data = await c.getmany(timeout_ms=200, max_records=POLL_BATCH)
                batch = [(tp.partition, r.offset, r.value) for tp, rs in data.items()
                         for r in rs if tp.partition in owned[name]]
                if not batch:
                    continue
                nxt = next_offsets(batch)
                err = None
                try:
                    await c.commit({TopicPartition(topic, p): o for p, o in nxt.items()})
                    ok = {p: True for p in nxt}
                except KafkaError as e:
                    ok, err = {}, repr(e)
                ledger.add(name, batch, ok, err)
                if len(ledger.processed_ids()) >= expected:
                    done.set()
        finally:
            final = set(owned[name])
            await c.stop()
            owned[name] = final

    tasks = [asyncio.ensure_future(member(n)) for n in owned]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"aiokafka group read {len(ledger.processed_ids())}/{expected} "
                             f"records in {timeout:.0f}s; owned {owned}") from None
    finally:
        done.set()
        for t in tasks:
            t.cancel()
    return {n: sorted(p) for n, p in owned.items()}


# --------------------------------------------------------------------------
# Offsets
# --------------------------------------------------------------------------


def confluent_committed(bootstrap: str, group: str, topic: str, partitions: int,
                        timeout: float = 20.0) -> dict[int, int]:
    """Committed offsets of `group` as a new (non-subscribed) consumer of the
    group sees them (OffsetFetch); -1001 = none."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)],
                          timeout=timeout)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    return {p: hi for p, (lo, hi) in rt.confluent_watermarks(bootstrap, topic, partitions).items()}
