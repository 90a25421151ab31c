"""Inserts share the gate; recreating views waits for them and keeps new ones out until it is done."""

import threading
import time

from cdc.mirror.ddl_gate import DdlGate


def test_inserts_run_together_and_ddl_waits_for_them() -> None:
    gate, events = DdlGate(), list[str]()

    def ddl() -> None:
        with gate.ddl():
            events.append("ddl")

    with gate.insert(), gate.insert():  # two at once: no deadlock
        t = threading.Thread(target=ddl)
        t.start()
        time.sleep(0.2)
        assert events == []  # the DDL waits while inserts run
    t.join(2)
    assert events == ["ddl"]


def test_a_waiting_ddl_keeps_new_inserts_out_and_its_own_thread_may_insert() -> None:
    gate, events = DdlGate(), list[str]()
    release = threading.Event()

    def ddl() -> None:
        with gate.ddl():
            with gate.insert():  # the DDL's own thread (the consumer) may insert
                events.append("ddl")
            release.wait(2)

    first = gate.insert()
    first.__enter__()
    t = threading.Thread(target=ddl)
    t.start()
    time.sleep(0.1)

    def late_insert() -> None:
        with gate.insert():
            events.append("late insert")

    late = threading.Thread(target=late_insert)
    late.start()
    time.sleep(0.1)
    assert events == []  # the late insert queues behind the waiting DDL
    first.__exit__(None, None, None)
    time.sleep(0.1)
    assert events == ["ddl"]
    release.set()
    t.join(2)
    late.join(2)
    assert events == ["ddl", "late insert"]


def test_a_writer_may_take_the_ddl_side_itself() -> None:
    gate = DdlGate()
    with gate.insert(), gate.ddl(), gate.ddl(), gate.insert():
        pass
    with gate.ddl():  # released
        pass
