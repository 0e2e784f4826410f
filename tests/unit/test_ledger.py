"""NodeRuns (metering/ledger.py): a wide gang's nodes in a usage record, kept as runs."""

from __future__ import annotations

import pytest

from cotenant.metering.ledger import NodeRuns


@pytest.mark.parametrize(
    "nodes",
    [
        pytest.param((), id="empty"),
        pytest.param((5,), id="one"),
        pytest.param(tuple(range(10, 50)), id="one-run"),
        pytest.param((0, 1, 2, 7, 9, 10, 30), id="runs-and-singles"),
    ],
)
def test_node_runs_read_as_the_tuple_they_stand_for(nodes: tuple[int, ...]) -> None:
    runs = NodeRuns(nodes)
    assert runs == nodes and tuple(runs) == nodes and len(runs) == len(nodes)
    assert [runs[i] for i in range(len(nodes))] == list(nodes)
    back = range(1, len(nodes) + 1)
    assert [runs[-i] for i in back] == [nodes[-i] for i in back]
    assert runs[1:3] == nodes[1:3] and hash(runs) == hash(nodes)
    with pytest.raises(IndexError):
        runs[len(nodes)]


def test_a_wide_gang_is_kept_as_a_few_runs() -> None:
    nodes = tuple(range(0, 18 * 100)) + tuple(range(18 * 200, 18 * 300))
    runs = NodeRuns(nodes)
    assert runs == nodes and repr(runs) == "NodeRuns(3600 nodes in 2 runs)"
    with pytest.raises(ValueError, match="ascending"):
        NodeRuns((3, 2))
