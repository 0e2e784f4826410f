"""Checkpoint arithmetic, in one place: what a run has done, saved and would lose.

One attempt of a job (a run) is: the restart cost (``restart_s``: nothing is done), then
cycles of ``every_s`` seconds of work followed by ``write_s`` seconds writing a
checkpoint, until the work is done; the last stretch of work is not followed by a write.
Work counts on from what the previous attempts saved (``saved_at_start_s``). A job with
``every_s`` 0 never checkpoints: stopping it loses the whole run.

A checkpoint written on notice (a reclaim or a drain) finishes at a deadline and holds
the work done ``write_s`` before it. The engine (lost work, restart points), the
simulated backend (when a run ends) and the scheduler's snapshot (the work a victim
would lose) all read these functions; nothing else does this arithmetic.
All times are integer seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


def worked_s(ran_s: int, every_s: int, write_s: int) -> int:
    """Work done in ``ran_s`` seconds after the restart (writing time left out)."""
    if ran_s <= 0:
        return 0
    if every_s > 0 and write_s > 0:
        k, r = divmod(ran_s, every_s + write_s)
        return k * every_s + min(r, every_s)
    return ran_s


def saved_s(ran_s: int, every_s: int, write_s: int) -> int:
    """Work held by the periodic checkpoints finished in ``ran_s`` seconds after the
    restart."""
    if ran_s <= 0 or every_s <= 0:
        return 0
    return (ran_s // (every_s + write_s)) * every_s


def writing_s(ran_s: int, every_s: int, write_s: int) -> int:
    """Time spent writing periodic checkpoints in ``ran_s`` seconds after the restart."""
    if ran_s <= 0 or every_s <= 0 or write_s <= 0:
        return 0
    k, r = divmod(ran_s, every_s + write_s)
    return k * write_s + max(0, r - every_s)


def run_length_s(left_s: int, every_s: int, write_s: int) -> int:
    """Wall time (after the restart) to do ``left_s`` of work: the work and one write
    after each full interval but the last."""
    if left_s <= 0:
        return 0
    writes = (left_s - 1) // every_s if every_s > 0 else 0
    return left_s + writes * write_s


def lost_at(
    start_s: int,
    restart_s: int,
    saved_at_start_s: int,
    duration_s: int,
    every_s: int,
    write_s: int,
    now: int,
) -> int:
    """``CheckpointedRun(...).lost_s(now)`` in one call, for hot paths (ranking thousands of
    victims each cycle): the work done since the last periodic checkpoint finished."""
    ran = now - start_s - restart_s
    if ran <= 0:
        return 0
    if every_s <= 0:  # never checkpoints: the whole run's work is at stake
        return min(duration_s, saved_at_start_s + ran) - min(duration_s, saved_at_start_s)
    k, r = divmod(ran, every_s + write_s) if write_s > 0 else divmod(ran, every_s)
    saved = saved_at_start_s + k * every_s
    done = saved + (min(r, every_s) if write_s > 0 else r)
    return max(0, min(duration_s, done) - min(duration_s, saved))


@dataclass(frozen=True, slots=True)
class CheckpointedRun:
    """One run of a job, for the questions asked of it at a time ``now``."""

    start_s: int
    restart_s: int
    saved_at_start_s: int  # work safe in checkpoints when this run began
    duration_s: int  # the job's whole work
    every_s: int  # checkpoint interval (0: never)
    write_s: int  # time to write one checkpoint

    def ran_s(self, now: int) -> int:
        return max(0, now - self.start_s - self.restart_s)

    def progress_s(self, now: int) -> int:
        """The job's work done by ``now`` (saved before, plus this run's)."""
        done = worked_s(self.ran_s(now), self.every_s, self.write_s)
        return min(self.duration_s, self.saved_at_start_s + done)

    def saved_s(self, now: int) -> int:
        """The job's work safe in the last checkpoint finished by ``now``."""
        done = saved_s(self.ran_s(now), self.every_s, self.write_s)
        return min(self.duration_s, self.saved_at_start_s + done)

    def lost_s(self, now: int) -> int:
        """Work lost if the run stopped at ``now`` without a new checkpoint."""
        return lost_at(
            self.start_s,
            self.restart_s,
            self.saved_at_start_s,
            self.duration_s,
            self.every_s,
            self.write_s,
            now,
        )

    def writing_s(self, now: int) -> int:
        """Time this run spent writing periodic checkpoints by ``now``."""
        return writing_s(self.ran_s(now), self.every_s, self.write_s)

    def checkpoint_by_s(self, deadline_s: int) -> int:
        """The work a checkpoint finished at ``deadline_s`` holds: what was done when its
        write began."""
        return self.progress_s(deadline_s - self.write_s)

    def saved_on_notice_s(self, now: int, deadline_s: int) -> int | None:
        """Told at ``now`` to checkpoint and stop at ``deadline_s``: the work the new
        checkpoint holds, or None when the notice is shorter than a write (the run keeps
        only its last periodic checkpoint)."""
        if deadline_s - now < self.write_s:
            return None
        return self.checkpoint_by_s(deadline_s)

    def end_s(self, work_s: int | None = None) -> int:
        """When the run ends if it has ``work_s`` of the job's work to do in all (default:
        the job's duration; a runtime estimate for backfill)."""
        total = self.duration_s if work_s is None else work_s
        left = max(0, total - self.saved_at_start_s)
        return self.start_s + self.restart_s + run_length_s(left, self.every_s, self.write_s)
