"""The pipeline file (cli/pipeline_file.py): read into the API's body, and every bad field
refused with one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotenant.cli.pipeline_file import read_pipeline_file
from cotenant.model.errors import SpecError

GOOD = """
name = "llama"

[[stages]]
name = "pretrain"
gpus = 64
duration = "2d"
checkpoint_interval = "1h"
command = ["torchrun", "pretrain.py"]

[[stages]]
name = "sft"
gpus = 8
duration = "6h"
after_ok = ["pretrain"]
after_any = ["job-1", "job-2"]
take_nodes = true
"""


def test_a_pipeline_file_becomes_the_api_body(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(GOOD)
    body = read_pipeline_file(f)
    assert body["name"] == "llama" and "tenant" not in body
    pre, sft = body["stages"]
    assert (pre["gpus"], pre["duration_s"], pre["checkpoint_interval_s"]) == (64, 172_800, 3600)
    assert pre["command"] == ["torchrun", "pretrain.py"] and "after_ok" not in pre
    assert sft["after_ok"] == ["pretrain"] and sft["after_any"] == ["job-1", "job-2"]
    assert sft["take_nodes"] is True and "take_nodes" not in pre


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("gpus = 8", "gpus = 0"), "stages[1].gpus: must be a whole number >= 1, got 0"),
        (("gpus = 8", 'gpus = "8"'), "stages[1].gpus: must be a whole number >= 1"),
        (('duration = "6h"', 'duration = "soon"'), "stages[1].duration:"),
        (('after_ok = ["pretrain"]', 'after_ok = "pretrain"'), "stages[1].after_ok: must be"),
        (('name = "sft"', 'name = "sft"\ncolour = "red"'), "stages[1].colour: unknown key"),
        (('name = "llama"', 'nmae = "llama"'), "nmae: unknown key"),
        (('name = "sft"\n', 'name = "sft"\nkind = "batch"\n'), "stages[1].kind: unknown kind"),
        (('[[stages]]\nname = "pretrain"', "[[stages]]\nnom = 1"), "stages[0]"),
        (("gpus = 64", "gpus = 64\ngpus = 65"), "p.toml: file: not valid TOML"),
        (("take_nodes = true", 'take_nodes = "yes"'), "stages[1].take_nodes:"),
    ],
    ids=[
        "zero-gpus",
        "text-gpus",
        "bad-duration",
        "after-not-list",
        "stage-key",
        "top-key",
        "bad-kind",
        "no-name",
        "toml",
        "take-nodes-text",
    ],
)
def test_a_bad_field_is_one_line_naming_it(
    tmp_path: Path, change: tuple[str, str], says: str
) -> None:
    f = tmp_path / "p.toml"
    assert change[0] in GOOD
    f.write_text(GOOD.replace(change[0], change[1], 1))
    with pytest.raises(SpecError) as e:
        read_pipeline_file(f)
    msg = str(e.value)
    assert says in msg and "\n" not in msg
    assert msg.startswith(str(f))
