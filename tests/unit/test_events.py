from __future__ import annotations

from repodepot.events import Broker
from repodepot.imports.service import event_order


async def test_each_subscriber_gets_newer_states_once_per_entity() -> None:
    broker = Broker()
    with broker.subscribe("imports:queued") as queued:
        # Two different jobs, both "pending, seq 0": both must arrive.
        broker.publish("imports:queued", {"id": 1, "status": "pending", "seq": 0})
        broker.publish("imports:queued", {"id": 2, "status": "pending", "seq": 0})
        first, second = await queued.get(1), await queued.get(1)
        assert first is not None and second is not None
        assert (first["id"], second["id"]) == (1, 2)


async def test_duplicates_and_older_states_are_dropped() -> None:
    broker = Broker()
    with broker.subscribe("import:1", event_order) as sub:  # the imports' order
        for event in (
            {"id": 1, "status": "running", "seq": 5},
            {"id": 1, "status": "running", "seq": 5},  # the same, via NOTIFY
            {"id": 1, "status": "running", "seq": 4},  # late
            {"id": 1, "status": "cancelled", "seq": 3},
        ):  # a status change wins
            broker.publish("import:1", event)
        got = [await sub.get(0.1) for _ in range(3)]
    assert [(e["status"], e["seq"]) if e else None for e in got] == [
        ("running", 5),
        ("cancelled", 3),
        None,
    ]


async def test_a_slow_subscriber_keeps_the_newest() -> None:
    broker = Broker()
    with broker.subscribe("t") as sub:
        for seq in range(200):
            broker.publish("t", {"id": 1, "status": "running", "seq": seq})
        events = []
        while (event := await sub.get(0.01)) is not None:
            events.append(event["seq"])
    assert events[-1] == 199 and len(events) == 64
    assert broker.subscriber_count("t") == 0


def test_open_and_close_are_the_same_as_subscribe() -> None:
    broker = Broker()
    subscription = broker.open("t")
    assert broker.subscriber_count("t") == 1
    broker.close(subscription)
    broker.close(subscription)  # idempotent
    assert broker.subscriber_count("t") == 0
    broker.publish("t", {"id": 1, "status": "running", "seq": 1})  # no one left: no error


async def test_without_an_order_the_seq_decides() -> None:
    broker = Broker()
    with broker.subscribe("t") as sub:
        for seq in (2, 2, 1, 3):
            broker.publish("t", {"id": 1, "seq": seq, "status": "cancelled" if seq == 1 else "x"})
        got = [await sub.get(0.1) for _ in range(3)]
    assert [e["seq"] if e else None for e in got] == [2, 3, None]
