"""What Slurm says, and how it is asked: its CLI run with a cluster's environment, and
the parsing of ``squeue --json``, ``sinfo --json`` and host lists into typed records
(``backends/slurm.py`` is the backend built on them)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cotenant.backends.base import StartRequest
from cotenant.backends.local import EXIT_LOST, job_command, job_env
from cotenant.cluster.slurm_import import cluster_spec_from_scontrol
from cotenant.cluster.state import Health
from cotenant.cluster.topology import ClusterSpec
from cotenant.model.errors import CotenantError

COMMENT_PREFIX = "cotenant:"
TERMINAL = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
# Exit status for a failed state that carries none (cancelled by someone else, ...).
STATE_EXIT = {"CANCELLED": 128 + 15, "TIMEOUT": 124, "OUT_OF_MEMORY": 128 + 9}


class SlurmError(CotenantError):
    """A Slurm command failed; the message carries its output."""

    http_status = 502


# -- what Slurm says ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One job as squeue or sacct shows it (a heterogeneous job's components merged)."""

    slurm_id: int
    comment: str
    state: str
    exit_code: int  # decoded: the command's status, 128 + signal, or EXIT_LOST
    start: int | None  # Unix seconds
    end: int | None
    nodes: tuple[str, ...]
    gpus: tuple[int, ...]  # per node while running (empty once Slurm has let go)
    asked: tuple[int, ...] = ()  # per node as requested (--gres=gpu:N), also once ended


def _num(v: Any) -> int | None:
    """An integer field of squeue --json (a plain int, or {set, number} in newer Slurm)."""
    if isinstance(v, dict):
        return int(v["number"]) if v.get("set", True) and v.get("number") is not None else None
    return None if v is None else int(v)


def _state(v: Any) -> str:
    return str(v[0] if isinstance(v, list) and v else v or "").upper()


def exit_status(raw: Any, state: str) -> int:
    """A job's exit status from squeue's exit_code (a wait status, or an object in newer
    Slurm); a failed state with status 0 gets a failing code of its own."""
    if isinstance(raw, dict):
        sig = _num((raw.get("signal") or {}).get("id")) or 0
        code = 128 + sig if sig else _num(raw.get("return_code")) or 0
    else:
        status = int(raw or 0)
        code = 128 + (status & 0x7F) if status & 0x7F else (status >> 8) & 0xFF
    if state != "COMPLETED" and code == 0:
        return STATE_EXIT.get(state, EXIT_LOST)
    return code


def expand_hostlist(expr: str) -> list[str]:
    """Slurm's compact host list (``node[1-3,5],gpu-a[01-02]``) as names."""
    out: list[str] = []
    for item in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", expr):
        names = [""]
        for text, ranges in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", item):
            names = [n + text for n in names]
            if ranges:
                parts: list[str] = []
                for r in ranges.split(","):
                    lo, _, hi = r.partition("-")
                    width = len(lo)
                    parts += [f"{i:0{width}d}" for i in range(int(lo), int(hi or lo) + 1)]
                names = [n + p for n in names for p in parts]
        out += [n for n in names if n]
    return out


def _gres_gpus(detail: Sequence[str]) -> tuple[int, ...]:
    counts = []
    for d in detail:
        m = re.search(r"gpu(?::[^:(]+)?:(\d+)", d)
        counts.append(int(m[1]) if m else 0)
    return tuple(counts)


def _answer(text: str, command: str) -> dict[str, Any]:
    """The JSON of ``squeue/sinfo --json``. Slurm 22.05 exits 0 with an ``errors`` list and
    nothing else when it cannot reach its controller: that is an error, not an empty
    cluster."""
    doc = json.loads(text)
    errors = doc.get("errors") or []
    if errors:
        first = errors[0]
        what = first.get("description") or first.get("error") if isinstance(first, dict) else first
        raise SlurmError(f"{command} --json: {what}")
    return dict(doc)


def parse_squeue(text: str, prefix: str = COMMENT_PREFIX) -> dict[int, SlurmJob]:
    """Cotenant's jobs in ``squeue --json`` output, by Slurm id (a heterogeneous job by
    its leader's id)."""
    entries = [
        j
        for j in _answer(text, "squeue").get("jobs", [])
        if str(j.get("comment", "")).startswith(prefix)
    ]
    comps: dict[int, list[dict[str, Any]]] = {}
    for j in entries:
        het = _num(j.get("het_job_id")) or 0
        comps.setdefault(het or int(j["job_id"]), []).append(j)
    jobs: dict[int, SlurmJob] = {}
    for sid, parts in comps.items():
        parts.sort(key=lambda j: _num(j.get("het_job_offset")) or 0)
        lead = parts[0]
        state = _state(lead.get("job_state"))
        nodes: list[str] = []
        gpus: list[int] = []
        asked: list[int] = []
        for p in parts:
            names = expand_hostlist(str(p.get("nodes") or ""))
            nodes += names
            got = _gres_gpus(p.get("gres_detail") or ())
            gpus += list(got) if len(got) == len(names) else []
            m = re.search(r"gpu(?::[^:,]+)?:(\d+)", str(p.get("tres_per_node") or ""))
            asked += [int(m[1]) if m else 0] * len(names)
        jobs[sid] = SlurmJob(
            sid,
            str(lead.get("comment", "")),
            state,
            exit_status(lead.get("exit_code"), state),
            _num(lead.get("start_time")) or None,
            _num(lead.get("end_time")) or None,
            tuple(nodes),
            tuple(gpus) if len(gpus) == len(nodes) else (),
            tuple(asked),
        )
    return jobs


def parse_sinfo_health(text: str) -> dict[str, tuple[Health, str]]:
    """Node name -> (health, reason) from ``sinfo --json``."""
    out: dict[str, tuple[Health, str]] = {}
    for n in _answer(text, "sinfo").get("nodes", []):
        raw = n.get("state")
        words = {str(w).upper() for w in (raw if isinstance(raw, list) else [raw])}
        words |= {str(f).upper() for f in n.get("state_flags") or ()}
        if "DOWN" in words:
            h = Health.DOWN
        elif words & {"DRAIN", "DRAINING", "DRAINED", "FAIL", "FAILING"}:
            h = Health.DRAINING
        else:
            h = Health.HEALTHY
        state = "+".join(sorted(words - {""})).lower()
        reason = str(n.get("reason") or "")
        out[str(n["name"])] = (h, f"slurm: {state}" + (f" ({reason})" if reason else ""))
    return out


def parse_sacct(out: str, slurm_id: int, name: str | None = None) -> SlurmJob | None:
    """The record of ``slurm_id`` in ``sacct -X -n -P -o
    JobID,JobName,State,ExitCode,Start,End,NodeList`` output (with ``name``: the latest of
    that job name; a controller that lost its state reuses ids); None if absent."""
    found: SlurmJob | None = None
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != 7 or parts[0] != str(slurm_id):
            continue
        if name is not None and parts[1] != name:
            continue
        state = parts[2].split()[0].upper() if parts[2] else ""
        code, _, sig = parts[3].partition(":")
        status = 128 + int(sig) if sig.isdigit() and int(sig) else int(code or 0)
        if state != "COMPLETED" and status == 0:
            status = STATE_EXIT.get(state, EXIT_LOST)
        nodes = tuple(expand_hostlist(parts[6]))
        start, end = epoch(parts[4]), epoch(parts[5])
        found = SlurmJob(slurm_id, "", state, status, start, end, nodes, ())
        if name is None:
            return found
    return found


def comment_id(comment: str, prefix: str = COMMENT_PREFIX) -> tuple[str, int] | None:
    """(job id, attempt) of a comment ``<prefix><job id>:<attempt>``; None if not one."""
    if not comment.startswith(prefix):
        return None
    body = comment[len(prefix) :]
    job_id, _, attempt = body.rpartition(":")
    return (job_id, int(attempt)) if job_id and attempt.isdigit() else None


def owns(job_id: str, attempt: int, job: SlurmJob | None, prefix: str) -> bool:
    """``job`` is the run's own (its comment names the job and attempt), not a later job
    that took the id of one a crashed controller forgot."""
    return job is not None and comment_id(job.comment, prefix) == (job_id, attempt)


def batch_script(req: StartRequest, checkpoint_dir: Path) -> str:
    """The batch script of a run: its ``COTENANT_*`` variables, then its command."""
    env = job_env(req, checkpoint_dir)
    lines = ["#!/bin/sh", f"# cotenant job {req.spec.id}, attempt {req.attempt}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines.append("exec " + shlex.join(job_command(req)))
    return "\n".join(lines) + "\n"


def read_cluster_spec(env: Mapping[str, str] | None = None, **kw: Any) -> ClusterSpec:
    """The cluster spec of the Slurm cluster the environment points at (``scontrol``)."""
    out = cli(["scontrol", "show", "nodes"], env)
    return cluster_spec_from_scontrol(out, **kw)


def cli(
    argv: list[str],
    env: Mapping[str, str] | None,
    stdin: str | None = None,
    timeout_s: float = 30,
) -> str:
    try:
        r = subprocess.run(
            argv,
            input=stdin,
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"{argv[0]}: {e}") from e
    if r.returncode != 0:
        raise SlurmError(
            f"{' '.join(argv[:3])} exited {r.returncode}: {(r.stderr or r.stdout).strip()}"
        )
    return r.stdout


def epoch(stamp: str) -> int | None:
    try:
        return int(time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None
