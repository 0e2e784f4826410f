"""The main report and ``jobs list`` rendered by Rich at 80 and at 150 columns: no line
longer than the console, no cell cut ("…"), and every id and figure whole."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from cotenant.cli import client
from cotenant.twin.report import Report

BIG = 56_160_000.4


def big_report() -> Report:
    tenant = {
        "entitled_gpu_h": BIG,
        "used_gpu_h": BIG - 1234,
        "borrowed_gpu_h": 1_234_567.0,
        "lent_gpu_h": 7_654_321.0,
        "completed": 123_456,
        "submitted": 234_567,
        "queue_p50_s": 7300,
        "queue_p99_s": 123_456,
        "preemptions": 12_345,
        "preempted_lost_gpu_h": 1_234_567.0,
        "guarantee_violation_s": 1_234_567,
        "guarantee_violation_jobs": 1234,
    }
    fault = {
        "interruptions": 12_345,
        "planned": 1_234,
        "by_cause": {"faulty_gpu": 1234, "network_switch_cable": 999, "gpu_hbm3": 10},
        "failure_lost_gpu_h": 1_234_567.0,
        "restart_gpu_h": 7_654_321.0,
        "checkpoint_gpu_h": 1.0,
        "goodput": 0.8964,
        "sla_shortfall_gpu_h": 12_345_678.0,
    }
    sizes = {
        ">16384": {"interruptions": 1234, "mtbi_h": 1.9, "suggested_checkpoint_interval_s": 780}
    }
    return Report(
        scenario="colossus-lease",
        policy="contract",
        start_s=0,
        end_s=30 * 86_400,
        cluster_gpus=100_000,
        utilization=0.979,
        tenants={"lessee-lab-with-a-long-name": tenant, "owner-lab": tenant},
        engine={"cycles": 15_009, "decisions": 2_981_318, "wall_s": 273.1, "speedup": 633.0},
        extra={
            "faults": {
                "enabled": True,
                "tenants": {"lessee-lab-with-a-long-name": fault, "owner-lab": fault},
                "by_job_size": sizes,
                "cluster_goodput": 0.904,
                "node_failures_by_cause": {"faulty_gpu": 74},
            }
        },
    )


def jobs() -> list[dict[str, object]]:
    out = []
    for i, state in enumerate(["running", "reclaiming", "completed", "failed", "pending"]):
        out.append(
            {
                "id": f"job-0193a1b2c3d{i}-a1b2c3d4e{i}",
                "tenant": "lessee-lab",
                "name": "a-training-run-with-a-long-name",
                "gpus": 16_384,
                "state": state,
                "reason": "waiting-for-reclaim" if state == "pending" else "placed",
                "submit_s": 1_790_000_000,
                "first_start_s": 1_790_000_100,
                "ended_at": 1_790_100_000 if state in ("completed", "failed") else None,
                "exit_code": 137 if state == "failed" else None,
                "signal": "SIGKILL" if state == "failed" else None,
                "placement": {"nodes": ["b000-r0000-n00000"] * 5, "gpus": [8] * 5},
            }
        )
    return out


def render(width: int, draw: object) -> str:
    con = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    draw(con)  # type: ignore[operator]
    return con.export_text()


def check(text: str, width: int, whole: list[str]) -> None:
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for token in whole:
        assert re.search(rf"(?<![\w,.]){re.escape(token)}(?![\w,])", text), token


@pytest.mark.parametrize("width", [80, 150])
def test_the_main_report_fits(width: int) -> None:
    text = render(width, big_report().render)
    figures = ["56,160,000", "56,158,766", "1,234,567", "7,654,321", "123,456/234,567"]
    figures += ["12,345", "12,345,678", "89.6%", "lessee-lab-with-a-long-name", "owner-lab"]
    check(text, width, figures)


@pytest.mark.parametrize("width", [80, 150])
def test_jobs_list_fits(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    js = jobs()

    def draw(con: Console) -> None:
        monkeypatch.setattr(client, "console", con)
        client._print_jobs(js, wide=False)

    text = render(width, draw)
    check(text, width, [str(j["id"]) for j in js] + ["16384", "SIGKILL", "reclaiming"])
    if width >= client.WIDE_AT:
        assert "b000-r0000-n00000" in text  # the wide layout names the nodes
