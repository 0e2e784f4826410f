"""Trace loaders on small real excerpts (tests/fixtures) and on broken files.

Expected values were read by hand from the fixture files; see tests/fixtures/README.md.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cotenant.model.accelerators import CATALOGUE
from cotenant.model.errors import SpecError
from cotenant.model.jobs import Constraint, JobKind, JobSpec
from cotenant.traces import LOADERS, RowProblem, Trace, load_trace, write_csv

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PHILLY = FIXTURES / "philly_excerpt.csv"
PHILLY_QUOTA = FIXTURES / "philly_vc_quota.csv"
ALIBABA = FIXTURES / "alibaba2023"
EPOCH_2023 = 1_672_531_200
NOV_2017 = 1_509_494_400  # 2017-11-01T00:00Z
DEC_2017 = 1_512_086_400  # 2017-12-01T00:00Z

PHILLY_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster"
POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time"
)
NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model"
CSV_HEADER = "id,tenant,submit_s,gpus,duration_s"


# --- builders -------------------------------------------------------------------


def write_lines(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def alibaba_dir(tmp_path: Path, *pods: str, nodes: tuple[str, ...] = ()) -> Path:
    """A trace directory with the given pod rows and, by default, one real node."""
    root = tmp_path / "ali"
    write_lines(
        root / "openb_node_list_gpu_node.csv",
        NODE_HEADER,
        *(nodes or ("openb-node-0000,64000,262144,2,P100",)),
    )
    write_lines(root / "openb_pod_list_default.csv", POD_HEADER, *pods)
    return root


def job(id: str = "j1", **changes: object) -> JobSpec:
    base = JobSpec(id=id, tenant="acme", gpus=8, duration_s=3600, submit_s=1_700_000_000)
    return replace(base, **changes)


def by_id(trace: Trace) -> dict[str, JobSpec]:
    return {j.id: j for j in trace.jobs}


def lines_and_fields(trace: Trace) -> list[tuple[int, str]]:
    return [(p.line, p.field) for p in trace.problems]


# --- registry -------------------------------------------------------------------


def test_registry_names() -> None:
    assert sorted(LOADERS) == ["alibaba-2023", "csv", "philly"]


def test_unknown_kind_lists_valid_names() -> None:
    with pytest.raises(SpecError, match="alibaba-2023, csv, philly"):
        load_trace("helios", PHILLY)


def test_unknown_option_lists_valid_options() -> None:
    with pytest.raises(SpecError, match=r"unknown option\(s\) quota for 'philly'.*quota_path"):
        load_trace("philly", PHILLY, quota=PHILLY_QUOTA)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"limit": -1}, "limit", id="negative-limit"),
        pytest.param({"max_gpus": 0}, "max_gpus", id="zero-max-gpus"),
        pytest.param({"start_s": 10, "end_s": 5}, "end_s", id="window-backwards"),
    ],
)
def test_bad_common_options_raise(options: dict[str, int], field: str) -> None:
    with pytest.raises(SpecError) as e:
        load_trace("philly", PHILLY, **options)
    assert e.value.field == field


# --- Philly ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def philly() -> Trace:
    return load_trace("philly", PHILLY, quota_path=PHILLY_QUOTA)


def test_philly_excerpt_counts(philly: Trace) -> None:
    assert len(philly.jobs) == 300
    assert len(philly.tenants) == 10
    assert philly.gpu_seconds == 53_154_246
    assert sum(j.kind is JobKind.TRAINING for j in philly.jobs) == 9
    assert philly.problems == ()
    assert philly.nodes == ()


def test_philly_jobs_sorted_by_submit_then_id(philly: Trace) -> None:
    keys = [(j.submit_s, j.id) for j in philly.jobs]
    assert keys == sorted(keys)
    first = philly.jobs[0]  # line 136, the earliest: "2017-09-24 14:05:07,122.0,1,122.0,6214e9"
    assert (first.submit_s, first.tenant, first.duration_s) == (1_506_261_907, "6214e9", 122)


@pytest.mark.parametrize(
    ("job_id", "expected"),
    [
        # line 2: 2017-10-09 07:01:55,66.0,1,66.0,11cb48
        pytest.param(
            "philly-0",
            JobSpec("philly-0", "11cb48", 1, 66, 1_507_532_515, JobKind.EXPERIMENT),
            id="line-2-one-gpu",
        ),
        # line 222: 2017-10-26 06:00:54,1710643.0,16,27370288.0,b436b2
        pytest.param(
            "philly-220",
            JobSpec("philly-220", "b436b2", 16, 1_710_643, 1_508_997_654, JobKind.TRAINING),
            id="line-222-sixteen-gpus",
        ),
    ],
)
def test_philly_row_maps_to_jobspec(philly: Trace, job_id: str, expected: JobSpec) -> None:
    assert by_id(philly)[job_id] == expected
    assert expected.constraint is Constraint.AUTO


def test_philly_quotas_are_nodes_times_gpus_per_node(philly: Trace) -> None:
    assert len(philly.quotas_gpus) == 11
    assert philly.quotas_gpus["6214e9"] == 64 * 8
    assert philly.quotas_gpus["ed69ec"] == 8 * 8
    half = load_trace("philly", PHILLY, quota_path=PHILLY_QUOTA, gpus_per_node=4)
    assert half.quotas_gpus["6214e9"] == 64 * 4


def test_philly_quota_file_found_beside_jobs(tmp_path: Path) -> None:
    jobs = tmp_path / "philly_jobs.csv"
    jobs.write_bytes(PHILLY.read_bytes())
    (tmp_path / "vc_quota_nodes.csv").write_bytes(PHILLY_QUOTA.read_bytes())
    assert load_trace("philly", jobs).quotas_gpus["b436b2"] == 512


def test_philly_without_quota_file_has_no_quotas() -> None:
    trace = load_trace("philly", PHILLY)
    assert trace.quotas_gpus == {}
    assert any("no vc_quota_nodes.csv" in n for n in trace.notes)


def test_philly_checkpoint_interval_option() -> None:
    trace = load_trace("philly", PHILLY, checkpoint_interval_s=1800)
    assert {j.checkpoint_interval_s for j in trace.jobs} == {1800}


def test_philly_duration_rounded_up_to_whole_second(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.csv",
        PHILLY_HEADER,
        "2017-10-09 07:01:55,10.2,1,10.2,vc1",
        "2017-10-09 07:01:56,0.0,1,0.0,vc1",
    )
    assert [j.duration_s for j in load_trace("philly", path).jobs] == [11, 1]


# --- filters (the same Collector serves every loader) ---------------------------


def test_limit_keeps_the_earliest_jobs(philly: Trace) -> None:
    trace = load_trace("philly", PHILLY, limit=10)
    assert trace.jobs == philly.jobs[:10]
    assert any("limit" in n for n in trace.notes)


def test_window_is_half_open_on_submit_time() -> None:
    trace = load_trace("philly", PHILLY, start_s=NOV_2017, end_s=DEC_2017)
    assert len(trace.jobs) == 77  # rows with a November 2017 timestamp
    assert all(NOV_2017 <= j.submit_s < DEC_2017 for j in trace.jobs)
    assert trace.problems == ()


def test_max_gpus_makes_bigger_jobs_bad_rows() -> None:
    trace = load_trace("philly", PHILLY, max_gpus=8)
    assert len(trace.jobs) == 298
    assert lines_and_fields(trace) == [(222, "num_gpus"), (277, "num_gpus")]
    assert "more GPUs than the cluster" in trace.problems[0].problem


def test_max_gpus_strict_raises_naming_the_line() -> None:
    with pytest.raises(SpecError, match=r"philly_excerpt\.csv:222: num_gpus: more GPUs"):
        load_trace("philly", PHILLY, max_gpus=8, strict=True)


def test_window_applies_before_max_gpus() -> None:
    # Both 16-GPU jobs were submitted in October: outside a November window they
    # are simply not wanted, not bad.
    trace = load_trace("philly", PHILLY, start_s=NOV_2017, max_gpus=8)
    assert trace.problems == ()


# --- broken Philly files --------------------------------------------------------

BROKEN_PHILLY = (
    PHILLY_HEADER,
    "2017-10-09 07:01:55,66.0,1,66.0,vc1",  # line 2: fine
    "2017-10-09 07:02:00,,1,0,vc1",  # 3: missing duration
    "2017-10-09 07:03:00,-5,1,-5,vc1",  # 4: negative duration
    "2017-10-09 07:04:00,10,two,20,vc1",  # 5: non-numeric gpus
    "2017-10-09 07:05:00,10,0,0,vc1",  # 6: no GPU
    "9 Oct 2017 07:06,10,1,10,vc1",  # 7: timestamp format
    "2017-10-09 07:07:00,10,1",  # 8: short row, no cluster
    "",  # 9: blank line, ignored
    "2017-10-09 07:08:00,10,1,10,vc2",  # 10: fine
)


def test_broken_philly_rows_are_skipped_with_their_lines(tmp_path: Path) -> None:
    trace = load_trace("philly", write_lines(tmp_path / "p.csv", *BROKEN_PHILLY))
    assert [j.id for j in trace.jobs] == ["philly-0", "philly-7"]
    assert lines_and_fields(trace) == [
        (3, "duration"),
        (4, "duration"),
        (5, "num_gpus"),
        (6, "num_gpus"),
        (7, "timestamp"),
        (8, "cluster"),
    ]
    assert trace.problems[0] == RowProblem(3, "duration", "missing value")
    assert "two" in trace.problems[2].problem


def test_broken_philly_strict_raises_at_first_bad_row(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.csv", *BROKEN_PHILLY)
    with pytest.raises(SpecError, match=r"p\.csv:3: duration: missing value") as e:
        load_trace("philly", path, strict=True)
    assert e.value.field == "duration"


def test_bad_quota_rows_are_problems(tmp_path: Path) -> None:
    quota = write_lines(tmp_path / "q.csv", "vc,node num", "vc1,4", "vc2,many", "vc1,2")
    trace = load_trace("philly", PHILLY, quota_path=quota)
    assert trace.quotas_gpus == {"vc1": 32}
    assert lines_and_fields(trace) == [(3, "quota:node num"), (4, "quota:vc")]


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        pytest.param(None, "path", "not found", id="missing-file"),
        pytest.param(b"", "header", "empty file", id="empty-file"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00", "file", "not a readable UTF-8", id="binary"),
        pytest.param(
            b"timestamp,duration,gpu_time,cluster\n2017-10-09 07:01:55,66,66,vc1\n",
            "columns",
            r"missing column\(s\) num_gpus; found timestamp, duration, gpu_time, cluster",
            id="missing-column",
        ),
    ],
)
def test_bad_philly_file_raises(
    tmp_path: Path, content: bytes | None, field: str, message: str
) -> None:
    path = tmp_path / "philly_jobs.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError, match=message) as e:
        load_trace("philly", path)
    assert e.value.field == field


def test_directory_instead_of_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a file"):
        load_trace("philly", tmp_path)


def test_missing_explicit_quota_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="quota file not found"):
        load_trace("philly", PHILLY, quota_path=tmp_path / "nope.csv")


# --- Alibaba 2023 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def alibaba() -> Trace:
    return load_trace("alibaba-2023", ALIBABA)


def test_alibaba_excerpt_counts(alibaba: Trace) -> None:
    assert len(alibaba.jobs) == 264  # 302 pods, 38 of them CPU-only
    assert alibaba.tenants == ("be", "burstable", "guaranteed", "ls")
    assert sum(j.tenant == "ls" for j in alibaba.jobs) == 148
    assert len(alibaba.nodes) == 102
    assert sum(n.gpus for n in alibaba.nodes) == 498
    assert alibaba.problems == ()
    assert alibaba.quotas_gpus == {}


def test_alibaba_notes_record_lossy_choices(alibaba: Trace) -> None:
    notes = "\n".join(alibaba.notes)
    assert "38 CPU-only pods dropped" in notes
    # 103 pods with gpu_milli < 1000; sum of (1000 - milli)/1000 x duration = 218,805.03
    assert "103 pods asked for a fraction of a GPU" in notes
    assert "adding 218806 GPU-seconds" in notes
    assert "27 pods were never scheduled" in notes
    assert "tenant is the QoS class" in notes


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        # line 177: 8 GPUs, LS, created 11853790, scheduled 11853791, deleted 11917984
        pytest.param(
            "openb-pod-4725",
            JobSpec(
                "openb-pod-4725",
                "ls",
                8,
                11_917_984 - 11_853_791,
                EPOCH_2023 + 11_853_790,
                JobKind.TRAINING,
                name="openb-pod-4725",
            ),
            id="line-177-eight-gpus",
        ),
        # line 24: 230 milli-GPU, BE, Pending (no scheduled_time): created 10261132,
        # deleted 10261309
        pytest.param(
            "openb-pod-0594",
            JobSpec(
                "openb-pod-0594",
                "be",
                1,
                10_261_309 - 10_261_132,
                EPOCH_2023 + 10_261_132,
                JobKind.EXPERIMENT,
                name="openb-pod-0594",
            ),
            id="line-24-fractional-pending",
        ),
    ],
)
def test_alibaba_pod_maps_to_jobspec(alibaba: Trace, pod: str, expected: JobSpec) -> None:
    assert by_id(alibaba)[pod] == expected


def test_alibaba_nodes_and_accelerators(alibaba: Trace) -> None:
    nodes = {n.name: n for n in alibaba.nodes}
    assert nodes["openb-node-1032"].accelerator == "ali-A10"
    assert nodes["openb-node-0024"].gpus == 8
    t4 = CATALOGUE["ali-T4"]
    assert (t4.memory_gb, t4.busy_watts, t4.gpus_per_node, t4.nvlink_domain) == (16, 70, 4, 4)
    assert CATALOGUE["ali-V100M32"].memory_gb == 32


def test_alibaba_single_tenant_and_epoch_options() -> None:
    trace = load_trace("alibaba-2023", ALIBABA, tenant="all", epoch_s=0)
    assert trace.tenants == ("all",)
    assert by_id(trace)["openb-pod-4725"].submit_s == 11_853_790


def test_alibaba_gpu_spec_names_the_accelerator(tmp_path: Path) -> None:
    root = alibaba_dir(
        tmp_path,
        "p1,8000,1000,1,1000,V100M32,LS,Running,10,20,10",
        "p2,8000,1000,1,1000,V100M16|V100M32,LS,Running,10,20,10",
        "p3,8000,1000,0,0,,LS,Running,10,20,10",  # CPU-only
    )
    trace = load_trace("alibaba-2023", root)
    assert {j.id: j.accelerator for j in trace.jobs} == {"p1": "ali-V100M32", "p2": None}
    assert any("1 pods allow several GPU models" in n for n in trace.notes)


BROKEN_PODS = (
    "p1,8000,1000,1,1000,,LS,Running,10,20,10",  # line 2: fine
    "p2,8000,1000,1,1000,,LS,Running,,20,10",  # 3: missing creation_time
    "p3,8000,1000,1,1000,,LS,Running,10,5,8",  # 4: deleted before scheduled
    "p4,8000,1000,x,1000,,BE,Running,10,20,10",  # 5: non-numeric num_gpu
    "p5,8000,1000,1,1500,,BE,Running,10,20,10",  # 6: gpu_milli > 1000
    "p1,8000,1000,1,1000,,LS,Running,10,20,10",  # 7: duplicate name
    "p6,8000,1000,8,1000,,LS,Running,10,20,10",  # 8: too big for max_gpus=4
    "p7,8000,1000,1,500,,,Running,10,20,10",  # 9: missing qos
)


def test_broken_pods_are_skipped_with_their_lines(tmp_path: Path) -> None:
    trace = load_trace("alibaba-2023", alibaba_dir(tmp_path, *BROKEN_PODS), max_gpus=4)
    assert [j.id for j in trace.jobs] == ["p1"]
    assert lines_and_fields(trace) == [
        (3, "creation_time"),
        (4, "deletion_time"),
        (5, "num_gpu"),
        (6, "gpu_milli"),
        (7, "name"),
        (8, "num_gpu"),
        (9, "qos"),
    ]


def test_broken_pods_strict_raises(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"openb_pod_list_default\.csv:3: creation_time"):
        load_trace("alibaba-2023", alibaba_dir(tmp_path, *BROKEN_PODS), strict=True)


def test_broken_node_rows_are_problems(tmp_path: Path) -> None:
    root = alibaba_dir(
        tmp_path,
        "p1,8000,1000,1,1000,,LS,Running,10,20,10",
        nodes=("n1,64000,1,2,P100", "n2,64000,1,two,P100", "n3,64000,1,4,", "n4,1,1,0,"),
    )
    trace = load_trace("alibaba-2023", root)
    assert [n.name for n in trace.nodes] == ["n1"]
    assert lines_and_fields(trace) == [(3, "nodes:gpu"), (4, "nodes:model")]
    assert any("1 nodes without GPUs dropped" in n for n in trace.notes)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        pytest.param("openb_pod_list_default.csv", "pod list file not found", id="no-pods"),
        pytest.param("openb_node_list_gpu_node.csv", "node list file not found", id="no-nodes"),
    ],
)
def test_alibaba_missing_file_raises(tmp_path: Path, remove: str, message: str) -> None:
    root = alibaba_dir(tmp_path, "p1,8000,1000,1,1000,,LS,Running,10,20,10")
    (root / remove).unlink()
    with pytest.raises(SpecError, match=message):
        load_trace("alibaba-2023", root)


def test_alibaba_missing_directory_and_column_raise(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="directory not found"):
        load_trace("alibaba-2023", tmp_path / "nope")
    root = alibaba_dir(tmp_path)
    write_lines(root / "openb_pod_list_default.csv", "name,num_gpu,gpu_milli,qos", "p,1,1000,LS")
    with pytest.raises(SpecError, match=r"missing column\(s\) creation_time, deletion_time"):
        load_trace("alibaba-2023", root)


# --- cotenant CSV ---------------------------------------------------------------


@pytest.mark.parametrize("source", ["philly", "alibaba-2023"])
def test_any_trace_round_trips_through_csv(tmp_path: Path, source: str) -> None:
    original = load_trace(source, PHILLY if source == "philly" else ALIBABA)
    out = tmp_path / "trace.csv"
    write_csv(original, out)
    again = load_trace("csv", out)
    assert again.jobs == original.jobs
    assert again.problems == ()


def test_every_field_round_trips(tmp_path: Path) -> None:
    jobs = (
        job(
            "a",
            kind=JobKind.TRAINING,
            constraint=Constraint.RACK,
            checkpoint_interval_s=600,
            priority=-2,
            estimate_s=7200,
            accelerator="H100-SXM-80GB",
            name="pretrain, v2",
        ),
        job("b", gpus=1, duration_s=1, submit_s=1_700_000_001, kind=JobKind.SERVICE),
    )
    trace = Trace("t", "mem", jobs, {}, (), (), ())
    write_csv(trace, tmp_path / "t.csv")
    assert load_trace("csv", tmp_path / "t.csv").jobs == jobs


def test_minimal_csv_takes_jobspec_defaults(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", CSV_HEADER, "j1,acme,1700000000,8,3600")
    assert load_trace("csv", path).jobs == (job(),)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        pytest.param(
            "j2,acme,100,8,3600,batch,",
            "kind",
            "valid: experiment, service, training",
            id="unknown-kind",
        ),
        pytest.param(
            "j2,acme,100,8,3600,,zone",
            "constraint",
            "valid: any, auto, block, domain, node, rack",
            id="unknown-constraint",
        ),
        pytest.param(
            "j2,acme,100,8,-60,,", "duration_s", "must not be negative", id="negative-duration"
        ),
        pytest.param("j2,acme,100,0,60,,", "gpus", "must be at least 1", id="no-gpus"),
        pytest.param("j2,acme,100,eight,60,,", "gpus", "whole number", id="non-numeric-gpus"),
        pytest.param("j2,,100,8,60,,", "tenant", "missing value", id="missing-tenant"),
        pytest.param("j2,acme,100,8", "duration_s", "missing value", id="short-row"),
        pytest.param(
            "j1,acme,100,8,60,,", "id", "duplicate id 'j1', first on line 2", id="duplicate-id"
        ),
    ],
)
def test_csv_bad_row(tmp_path: Path, row: str, field: str, message: str) -> None:
    path = write_lines(tmp_path / "t.csv", f"{CSV_HEADER},kind,constraint", "j1,acme,1,1,1,,", row)
    trace = load_trace("csv", path)
    assert [j.id for j in trace.jobs] == ["j1"]
    assert lines_and_fields(trace) == [(3, field)]
    assert message in trace.problems[0].problem
    with pytest.raises(SpecError, match=rf"t\.csv:3: {field}: "):
        load_trace("csv", path, strict=True)


def test_csv_unknown_columns_are_noted(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", f"{CSV_HEADER},priorty", "j1,acme,1,1,1,5")
    trace = load_trace("csv", path)
    assert trace.jobs[0].priority == 0
    assert "ignored unknown column(s): priorty" in trace.notes


def test_csv_missing_column_raises(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", "id,tenant,gpus,duration_s", "j1,acme,1,1")
    with pytest.raises(SpecError, match=r"missing column\(s\) submit_s"):
        load_trace("csv", path)


def test_write_csv_to_missing_directory_raises(tmp_path: Path) -> None:
    trace = Trace("t", "mem", (job(),), {}, (), (), ())
    with pytest.raises(SpecError, match="cannot write CSV trace"):
        write_csv(trace, tmp_path / "no" / "t.csv")
