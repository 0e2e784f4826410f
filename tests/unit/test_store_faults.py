"""The writer when the store fails: durable writes retried until they commit, requests
refused at once with StoreUnavailable, back-off, a commit of unknown outcome settled by
the audit head, one log line per episode; the failure classification; the API's 503."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cotenant.audit.chain import verify
from cotenant.model.errors import StoreUnavailable
from cotenant.store.health import Backoff, Episode, is_store_fault, one_line
from cotenant.store.repo import Store
from cotenant.store.writer import Tx


@pytest.fixture
def faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "faults"
    monkeypatch.setenv("COTENANT_STORE_FAULTS", str(path))
    return path


@pytest.fixture
def store(tmp_path: Path, faults: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'x.db'}")
    s.writer.backoff = Backoff(base_s=0.01, cap_s=0.05)
    s.writer.start()
    yield s
    faults.unlink(missing_ok=True)
    s.close()


def audit(kind: str) -> object:
    def op(tx: Tx) -> str:
        tx.audit(1, kind, {"k": kind})
        return kind

    return op


def kinds(store: Store) -> list[str]:
    return [e.kind for e in store.audit_entries()]


def wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_durable_write_is_retried_until_it_commits_and_requests_are_refused(
    store: Store, faults: Path
) -> None:
    w = store.writer
    states: list[bool] = []
    w.listeners.append(states.append)
    assert w.call(audit("before")) == "before"
    faults.write_text("")
    durable = w.submit(audit("decided-in-outage"), durable=True)  # type: ignore[arg-type]
    wait_for(lambda: w.down)
    with pytest.raises(StoreUnavailable) as e:
        w.call(audit("request"))  # type: ignore[arg-type]
    assert e.value.http_status == 503 and e.value.retry_after_s >= 1
    time.sleep(0.2)  # several retries fail
    assert not durable.done()
    faults.unlink()
    assert durable.result(5) == "decided-in-outage"
    assert not w.down
    assert kinds(store) == ["before", "decided-in-outage"]
    assert states == [True, False]
    assert w.write_failures >= 2
    assert verify(store.audit_entries(), store.audit_head()).ok


def test_durable_writes_keep_their_order_through_an_outage(store: Store, faults: Path) -> None:
    w = store.writer
    faults.write_text("")
    futs = [w.submit(audit(f"d{i}"), durable=True) for i in range(5)]  # type: ignore[arg-type]
    wait_for(lambda: w.down)
    futs += [w.submit(audit(f"d{i}"), durable=True) for i in range(5, 8)]  # type: ignore[arg-type]
    faults.unlink()
    for f in futs:
        f.result(5)
    assert kinds(store) == [f"d{i}" for i in range(8)]


def test_an_idle_store_comes_back_by_a_probe(store: Store, faults: Path) -> None:
    w = store.writer
    faults.write_text("")
    with pytest.raises(StoreUnavailable):
        w.call(audit("refused"))  # type: ignore[arg-type]
    assert w.down
    faults.unlink()
    wait_for(lambda: not w.down)  # nothing was asked: the writer probed by itself
    assert kinds(store) == []


def test_a_commit_whose_acknowledgement_was_lost_is_not_written_twice(
    store: Store, faults: Path
) -> None:
    w = store.writer
    ran: list[str] = []

    def op(tx: Tx) -> None:
        tx.audit(1, "once", {})
        tx.after_commit(lambda: ran.append("after"))

    faults.write_text("lost-commit")
    durable = w.submit(op, durable=True)
    # (The writer is down only until the next retry settles the commit, a few ms at this
    # back-off: a poll can miss that window, so wait for the failure itself.)
    wait_for(lambda: w.write_failures > 0)
    faults.unlink()
    durable.result(5)
    assert kinds(store) == ["once"]
    assert ran == ["after"]  # the committed operation's callbacks ran once
    w.call(audit("next"))  # type: ignore[arg-type]
    assert kinds(store) == ["once", "next"]
    assert verify(store.audit_entries(), store.audit_head()).ok


def test_a_refused_request_never_touches_the_database_during_back_off(
    tmp_path: Path, faults: Path
) -> None:
    s = Store(f"sqlite:///{tmp_path / 'y.db'}")
    s.writer.backoff = Backoff(base_s=5.0, cap_s=5.0)
    s.writer.start()
    try:
        faults.write_text("")
        with pytest.raises(StoreUnavailable):
            s.writer.call(audit("first"))  # type: ignore[arg-type]
        failures = s.writer.write_failures
        for _ in range(50):
            with pytest.raises(StoreUnavailable) as e:
                s.writer.call(audit("again"))  # type: ignore[arg-type]
        assert s.writer.write_failures == failures  # refused, not tried
        assert s.writer.health.refused >= 50
        assert 1 <= e.value.retry_after_s <= 5
    finally:
        faults.unlink(missing_ok=True)
        s.close()


def test_stopping_during_an_outage_gives_up_on_durable_writes_after_a_grace(
    tmp_path: Path, faults: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cotenant.store.writer as writer

    monkeypatch.setattr(writer, "STOP_GRACE_S", 0.3)
    s = Store(f"sqlite:///{tmp_path / 'z.db'}")
    s.writer.backoff = Backoff(base_s=0.01, cap_s=0.05)
    s.writer.start()
    faults.write_text("")
    fut = s.writer.submit(audit("lost"), durable=True)  # type: ignore[arg-type]
    t0 = time.monotonic()
    s.close()
    assert time.monotonic() - t0 < 5
    with pytest.raises(StoreUnavailable):
        fut.result(0)


def test_an_episode_is_logged_in_three_lines_whatever_the_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    ep = Episode("store writes", logging.getLogger("t"), clock=lambda: now[0], remind_s=60)
    err = sa.exc.OperationalError("SELECT 1", None, ConnectionError("refused\nmore detail"))
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(1000):
            now[0] = i * 0.1  # 100 s of failures
            ep.failed(err, 1.0)
            ep.refuse()
        ep.ok()
        assert not ep.down  # at once; the episode is logged as over once it stays so
        ep.tick()
        now[0] += 5
        ep.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "store writes failing: ConnectionError: refused" in lines[0]
    assert "still failing after 60 s" in lines[1]
    assert "recovered after 99.9 s: 1000 failures, 1000 requests refused" in lines[2]
    assert ep.total_failures == 1000


def test_a_flapping_store_is_one_episode(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    ep = Episode("store writes", logging.getLogger("t"), clock=lambda: now[0], quiet_s=5)
    err = sa.exc.OperationalError("x", None, OSError("database or disk is full"))
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(100):  # a full disk that takes a small write now and then
            now[0] = i * 0.2
            ep.failed(err)
            now[0] += 0.1
            ep.ok()
            ep.tick()
        assert ep.next_tick_s() == pytest.approx(5)
        now[0] += 5
        ep.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "100 failures, 0 requests refused, 99 relapses" in lines[1]


def test_back_off_doubles_to_its_cap_and_resets() -> None:
    now = [0.0]
    b = Backoff(base_s=0.1, cap_s=1.0, clock=lambda: now[0])
    assert [round(b.failed(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.wait_s() == pytest.approx(1.0)
    now[0] = 2.0
    assert b.wait_s() == 0
    b.reset()
    assert b.failed() == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        pytest.param(sa.exc.OperationalError("x", None, OSError("disk full")), True, id="oper"),
        pytest.param(sa.exc.InterfaceError("x", None, OSError("closed")), True, id="iface"),
        pytest.param(sa.exc.TimeoutError("pool"), True, id="pool-timeout"),
        pytest.param(sa.exc.IntegrityError("x", None, ValueError("unique")), False, id="unique"),
        pytest.param(sa.exc.ProgrammingError("x", None, ValueError("syntax")), False, id="bug"),
        pytest.param(ValueError("x"), False, id="other"),
    ],
)
def test_which_errors_mean_the_store_is_unavailable(exc: Exception, fault: bool) -> None:
    assert is_store_fault(exc) is fault


def test_one_line_names_the_driver_error_not_the_statement() -> None:
    e = sa.exc.OperationalError("INSERT INTO x", {"a": 1}, OSError("database or disk is full"))
    assert one_line(e) == "OSError: database or disk is full"


def test_connecting_backs_off_after_a_refused_connection(tmp_path: Path) -> None:
    from cotenant.store.db import make_engine

    eng = make_engine("postgresql://nobody@127.0.0.1:1/none")
    errors: list[str] = []
    t0 = time.monotonic()
    for _ in range(200):
        try:
            with eng.connect():
                pass
        except sa.exc.OperationalError as e:
            errors.append(one_line(e))
    assert time.monotonic() - t0 < 5
    assert "Connection refused" in errors[0] or "connection failed" in errors[0]
    assert sum("back-off" in e for e in errors) >= 190  # not 200 connection attempts
    eng.dispose()


def test_the_submission_threads_see_503_not_a_hang(store: Store, faults: Path) -> None:
    faults.write_text("")
    results: list[str] = []

    def client() -> None:
        for _ in range(20):
            try:
                store.writer.call(audit("x"), timeout=2)  # type: ignore[arg-type]
                results.append("ok")
            except StoreUnavailable:
                results.append("503")

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["503"] * 80
