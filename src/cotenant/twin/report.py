"""The run report: per tenant entitlement against use, lending, queueing, preemptions,
and guarantee violations; cluster utilisation. Text table or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from cotenant.engine.accounting import percentile
from cotenant.engine.core import Engine
from cotenant.model.jobs import JobKind, JobState
from cotenant.tablefit import Col, print_fitted

H = 3600.0


@dataclass
class Report:
    scenario: str
    policy: str
    start_s: int
    end_s: int
    cluster_gpus: int
    utilization: float
    tenants: dict[str, dict[str, Any]]
    engine: dict[str, Any]
    series: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json_dict(self, with_series: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "policy": self.policy,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "cluster_gpus": self.cluster_gpus,
            "utilization": round(self.utilization, 6),
            "tenants": self.tenants,
            "engine": self.engine,
            **self.extra,
        }
        if with_series:
            out["series"] = self.series
        return out

    def guarantee_violation_s(self) -> int:
        return sum(int(t["guarantee_violation_s"]) for t in self.tenants.values())

    def render(self, console: Console) -> None:
        days = (self.end_s - self.start_s) / 86_400
        console.print(
            f"[bold]{self.scenario}[/bold] under [bold]{self.policy}[/bold]: {days:g} days on "
            f"{self.cluster_gpus:,} GPUs; utilisation {self.utilization:.1%}"
        )
        _tenant_table(console, self.tenants)
        _job_book(console, self.tenants)
        faults = self.extra.get("faults")
        if faults and faults.get("enabled"):
            _fault_tables(console, faults)
        metering = self.extra.get("metering")
        if metering:
            from cotenant.metering.run import metering_text

            for line in metering_text(metering):
                console.print(line, highlight=False, markup=False)
        federation = self.extra.get("federation")
        if federation:
            from cotenant.twin.fedreport import render_federation

            render_federation(console, federation)
        pipelines = self.extra.get("pipelines")
        if pipelines:
            from cotenant.twin.pipelines import pipeline_rows

            rows = pipeline_rows(pipelines)
            cols = [Col(k, number=k.endswith("(h)")) for k in rows[0]]
            print_fitted(console, "pipelines", cols, [list(r.values()) for r in rows])
        services = self.extra.get("services")
        if services:
            from cotenant.serving.measure import services_text

            for line in services_text(services):
                console.print(line, highlight=False, markup=False)
        e = self.engine
        console.print(
            f"{e['cycles']:,} scheduling cycles, {e['decisions']:,} decisions, "
            f"{e['wall_s']:.1f} s wall ({e['speedup']:,.0f}x real time)"
        )


def _tenant_table(console: Console, tenants: dict[str, dict[str, Any]]) -> None:
    """Per tenant: entitled, used, borrowed and lent GPU-hours, jobs, queueing, preemptions
    and guarantee violations."""
    rows = [
        [
            name,
            f"{r['entitled_gpu_h']:,.0f}",
            f"{r['used_gpu_h']:,.0f}",
            f"{r['borrowed_gpu_h']:,.0f}",
            f"{r['lent_gpu_h']:,.0f}",
            f"{r['completed']:,}/{r['submitted']:,}",
            f"{_dur(r['queue_p50_s'])}/{_dur(r['queue_p99_s'])}",
            f"{r['preemptions']:,} ({r['preempted_lost_gpu_h']:,.0f})",
            f"{r['guarantee_violation_s']:,} s, {r['guarantee_violation_jobs']} jobs",
        ]
        for name, r in tenants.items()
    ]
    cols = [
        Col("tenant", number=False, whole=True),
        *(
            Col(c)
            for c in (
                "entitled",
                "used",
                "borrowed",
                "lent",
                "done/submitted",
                "queue p50/p99",
                "preempted (lost)",
                "guarantee violations",
            )
        ),
    ]
    print_fitted(console, "Per tenant (GPU-hours)", cols, rows)


def _job_book(console: Console, tenants: dict[str, dict[str, Any]]) -> None:
    """Where every submitted job ended up, per tenant (the "lost" column must read 0)."""
    books = [(n, r["jobs"]) for n, r in tenants.items() if "jobs" in r]
    if books:
        # every submitted job is in one of the other columns: "lost" must read 0
        heads = {"completed": "done", "cancelled": "cancel"}
        lost = sum(b.get("lost", 0) for _, b in books)
        print_fitted(
            console,
            f"Jobs ({lost:,} lost)",  # each submitted job is in one of the other columns
            [
                Col("tenant", number=False, whole=True),
                *(Col(heads.get(k, k)) for k in JOB_BOOK),
            ],
            [[n, *(f"{b[k]:,}" for k in JOB_BOOK)] for n, b in books],
        )


def _fault_tables(console: Console, faults: dict[str, Any]) -> None:
    """Interruptions and their cost per tenant, interruptions by job size, and the cluster's
    node failures and goodput."""
    frows = []
    for name, r in faults["tenants"].items():
        top = sorted(r["by_cause"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        frows.append(
            [
                name,
                f"{r['interruptions']:,} ({r['planned']:,})",
                ", ".join(f"{c} {n:,}" for c, n in top) or "-",
                f"{r['failure_lost_gpu_h']:,.0f}",
                f"{r['restart_gpu_h'] + r['checkpoint_gpu_h']:,.0f}",
                "-" if r["goodput"] is None else f"{r['goodput']:.1%}",
                f"{r['sla_shortfall_gpu_h']:,.0f}",
            ]
        )
    fcols = [
        Col("tenant", number=False, whole=True),
        Col("interruptions (planned)"),
        Col("top causes", number=False),
        Col("lost to failures"),
        Col("restart + checkpoint"),
        Col("goodput"),
        Col("SLA shortfall"),
    ]
    print_fitted(console, "Faults (GPU-hours)", fcols, frows)
    srows = []
    for size, b in faults["by_job_size"].items():
        every = b.get("suggested_checkpoint_interval_s")
        srows.append(
            [
                size,
                f"{b['interruptions']:,}",
                "-" if b["mtbi_h"] is None else _dur(b["mtbi_h"] * H),
                "-" if every is None else f"every {_dur(every)}",
            ]
        )
    scols = [Col(c) for c in ("GPUs", "interruptions", "mean time between", "suggested checkpoint")]
    print_fitted(console, "Interruptions by job size", scols, srows)
    goodput = faults["cluster_goodput"]
    console.print(
        f"{sum(faults['node_failures_by_cause'].values()):,} node or rack failures; "
        f"cluster goodput {'-' if goodput is None else f'{goodput:.1%}'}"
    )


def _dur(s: float) -> str:
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def build_report(engine: Engine, scenario: str, start_s: int, end_s: int, wall_s: float) -> Report:
    acct = engine.acct
    states = job_states(engine)
    tenants: dict[str, dict[str, Any]] = {}
    for name in sorted(set(acct.tenants) | set(engine.contracts)):
        tt = acct.tenants[name]
        tenants[name] = {
            "jobs": states.get(name, {k: 0 for k in JOB_BOOK}),
            "entitled_gpu_h": tt.entitled_gpu_s / H,
            "used_gpu_h": tt.used_gpu_s / H,
            "own_gpu_h": tt.own_gpu_s / H,
            "borrowed_gpu_h": tt.borrowed_gpu_s / H,
            "lent_gpu_h": tt.lent_gpu_s / H,
            "submitted": tt.submitted,
            "completed": tt.completed,
            "rejected": tt.rejected,
            "started": len(tt.queue_delays_s),
            "queue_p50_s": percentile(tt.queue_delays_s, 50),
            "queue_p99_s": percentile(tt.queue_delays_s, 99),
            "preemptions": tt.preemptions,
            "preempted_lost_gpu_h": tt.preempted_lost_gpu_s / H,
            "guarantee_violation_s": tt.violation_s,
            "guarantee_violation_jobs": tt.violation_jobs,
        }
    sim_s = end_s - start_s
    s = acct.series
    series = {
        "step_s": s.step_s,
        "times": s.times,
        "allocated": dict(s.allocated),
        "entitled": dict(s.entitled),
        "borrowed": dict(s.borrowed),
        "healthy_gpus": s.healthy_gpus,
    }
    return Report(
        scenario=scenario,
        policy=engine.policy.name,
        start_s=start_s,
        end_s=end_s,
        cluster_gpus=engine.topo.total_gpus,
        utilization=acct.utilization(),
        tenants=tenants,
        engine={
            "cycles": engine.cycles,
            "decisions": engine.decisions_made,
            "wall_s": wall_s,
            "speedup": sim_s / wall_s if wall_s > 0 else 0.0,
            "jobs": len(engine.jobs),
            "pending_at_end": engine.pending_count(),
            "running_at_end": len(engine.running()),
        },
        series=series,
    )


# Every submitted job is in exactly one of these at the end of a run ("lost" must be 0).
JOB_BOOK = ("submitted", "completed", "running", "pending", "rejected", "failed", "cancelled")


def job_states(engine: Engine) -> dict[str, dict[str, int]]:
    """Per tenant, submitted jobs by where they ended up (service replicas apart), and
    ``lost``: submitted minus all the others, which must be 0 (no job is ever lost)."""
    out: dict[str, dict[str, int]] = {}
    for run in engine.jobs.values():
        if run.spec.kind is JobKind.SERVICE:
            continue
        book = out.setdefault(run.tenant, {k: 0 for k in JOB_BOOK})
        book["submitted"] += 1
        st = run.state
        if st is JobState.FAILED and run.first_start_s is None:  # refused, never ran
            book["rejected"] += 1
        elif st in (JobState.RUNNING, JobState.RECLAIMING):
            book["running"] += 1
        else:
            book[st.value] += 1
    for name, book in out.items():
        book["lost"] = engine.acct.tenants[name].submitted - sum(
            book[k] for k in JOB_BOOK if k != "submitted"
        )
    return out


SIZE_BUCKETS = (8, 64, 512, 4096, 16_384, 1 << 30)


def _bucket(gpus: int) -> str:
    lo = 1
    for hi in SIZE_BUCKETS:
        if gpus <= hi:
            return f"{lo}-{hi}" if hi < (1 << 30) else f">{lo - 1}"
        lo = hi + 1
    return "?"


def fault_report(engine: Engine, failures: Any) -> dict[str, Any]:
    """Interruptions by tenant and cause, work lost, mean time between interruptions per
    job size, goodput (useful / allocated GPU-time) per job, tenant and cluster, SLA
    shortfall, and the Young/Daly checkpoint interval suggested for each job size."""
    from cotenant.faults.model import job_mtbf_s, young_daly_interval

    acct = engine.acct
    log = engine.fault_log
    tenants: dict[str, Any] = {}
    tot_used = tot_waste = 0
    for name, tt in sorted(acct.tenants.items()):
        waste = (
            tt.preempted_lost_gpu_s + tt.failure_lost_gpu_s + tt.restart_gpu_s + tt.checkpoint_gpu_s
        )
        tot_used += tt.used_gpu_s
        tot_waste += waste
        tenants[name] = {
            "interruptions": tt.interruptions,
            "by_cause": dict(sorted(log.by_tenant_cause[name].items())),
            "planned": log.planned.get(name, 0),
            "failure_lost_gpu_h": tt.failure_lost_gpu_s / H,
            "restart_gpu_h": tt.restart_gpu_s / H,
            "checkpoint_gpu_h": tt.checkpoint_gpu_s / H,
            "goodput": (tt.used_gpu_s - waste) / tt.used_gpu_s if tt.used_gpu_s else None,
            "sla_shortfall_gpu_h": tt.shortfall_gpu_s / H,
        }
    # Mean time between interruptions per job size, from run time in the ledger.
    run_s: dict[str, int] = {}
    for rec in engine.ledger.records():
        b = _bucket(rec.gpus)
        run_s[b] = run_s.get(b, 0) + rec.end_s - rec.start_s
    by_size: dict[str, Any] = {}
    for gpus, n in sorted(log.by_job_gpus.items()):
        b = _bucket(gpus)
        by_size.setdefault(b, {"interruptions": 0})
        by_size[b]["interruptions"] += n
    write = engine.checkpoint_write_s
    for b in sorted(set(run_s) | set(by_size), key=lambda x: int(x.split("-")[0].lstrip(">"))):
        entry = by_size.setdefault(b, {"interruptions": 0})
        n = entry["interruptions"]
        entry["run_hours"] = run_s.get(b, 0) / H
        entry["mtbi_h"] = run_s.get(b, 0) / n / H if n else None
        hi = int(b.split("-")[1]) if "-" in b else 32_768
        if failures.enabled:
            mtbf = job_mtbf_s(failures.model, hi)
            entry["suggested_checkpoint_interval_s"] = young_daly_interval(mtbf, write)
    jobs = {}
    for run in engine.jobs.values():
        if run.spec.kind.value == "training" and run.first_start_s is not None:
            jobs[run.id] = {
                "gpus": run.spec.gpus,
                "interruptions": run.interruptions,
                "preemptions": run.preemptions,
                "lost_gpu_h": run.lost_gpu_s / H,
                "state": run.state.value,
            }
    return {
        "enabled": bool(failures.enabled),
        "node_failures_by_cause": dict(sorted(log.node_failures.items())),
        "tenants": tenants,
        "by_job_size": by_size,
        "cluster_goodput": (tot_used - tot_waste) / tot_used if tot_used else None,
        "training_jobs": jobs,
    }
