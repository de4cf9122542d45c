"""The API's bound on expensive requests at once: waiting is bounded too, so threads stay free."""

from __future__ import annotations

import threading

import pytest

from api.services import BusyError
from api.services.slots import ScanSlots


def test_past_the_slots_as_many_wait_and_the_next_is_refused_without_waiting() -> None:
    slots = ScanSlots(1, wait_s=60.0)  # a waiter would wait a minute
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        with slots.held():
            holding.set()
            release.wait(30)

    def wait_for_a_slot(out: list[str]) -> None:
        with slots.held():
            out.append("served")

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    served: list[str] = []
    waiter = threading.Thread(target=wait_for_a_slot, args=(served,))
    waiter.start()
    while slots._waiting == 0 and waiter.is_alive():
        threading.Event().wait(0.01)

    refused: list[BaseException] = []

    def third() -> None:
        try:
            with slots.held():
                pass
        except BusyError as exc:
            refused.append(exc)

    caller = threading.Thread(target=third)
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "the third request was not kept waiting"
    assert refused and "PILOTS_API_MAX_CONCURRENT_SCANS" in str(refused[0])
    release.set()
    holder.join(10)
    waiter.join(10)
    assert served == ["served"], "the one waiting got the slot once it was free"


def test_a_slot_is_given_back_when_the_work_fails() -> None:
    slots = ScanSlots(1, wait_s=0.0)
    with pytest.raises(RuntimeError), slots.held():
        raise RuntimeError("the store went away")
    with slots.held():  # free again
        pass
