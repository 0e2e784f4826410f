"""The engine's agenda (engine/agenda.py): one heap, ordered by time, kind, then push order."""

from __future__ import annotations

import pytest

from cotenant.engine.agenda import CALLBACK, DEADLINE, POLICY_WAKE, SUBMIT, TICK_NOW, Agenda


def drain(a: Agenda, t: int) -> list[tuple[int, int, str]]:
    out = []
    while (e := a.pop_due(t)) is not None:
        out.append((e[0], e[1], e[3]))
    return out


def test_entries_come_out_by_time_then_kind_then_push_order() -> None:
    a = Agenda(tick_s=3600)
    a.push(20, SUBMIT, "late")
    a.push(10, TICK_NOW)
    a.push(10, SUBMIT, "b")
    a.push(10, DEADLINE, "x")
    a.push(10, SUBMIT, "a")
    assert a.next_time() == 10
    assert drain(a, 10) == [
        (10, DEADLINE, "x"),
        (10, SUBMIT, "b"),
        (10, SUBMIT, "a"),
        (10, TICK_NOW, ""),
    ]
    assert a.pop_due(19) is None  # not due yet
    assert drain(a, 25) == [(20, SUBMIT, "late")]
    assert a.next_time() is None and len(a) == 0


def test_a_callback_is_due_first_at_its_instant_and_taken_once() -> None:
    a = Agenda(tick_s=3600)
    seen: list[int] = []
    a.push(5, SUBMIT, "j")
    a.at(5, seen.append)
    first = a.pop_due(5)
    assert first is not None and first[1] == CALLBACK
    a.callback(first[3])(7)
    assert seen == [7]
    with pytest.raises(KeyError):
        a.callback(first[3])


@pytest.mark.parametrize(
    ("every", "work", "already_s", "want"),
    [
        pytest.param(None, True, -1, [], id="no-interval"),
        pytest.param(0, True, -1, [], id="zero-interval"),
        pytest.param(60, False, -1, [], id="nothing-waits-and-runs"),
        pytest.param(60, True, 200, [], id="a-wake-is-already-due-later"),
        pytest.param(60, True, -1, [160], id="wakes-after-the-interval"),
    ],
)
def test_a_time_driven_policy_is_woken_while_work_waits_and_runs(
    every: int | None, work: bool, already_s: int, want: list[int]
) -> None:
    a = Agenda(tick_s=3600)
    a.policy_wake_s = already_s
    a.wake_policy(100, every, work)
    got = drain(a, 10**6)
    assert [t for t, kind, _ in got if kind == POLICY_WAKE] == want
