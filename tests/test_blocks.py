"""benchmarks.blocks: per-block accuracy of rescored cells, each method against the reference."""

import json

import pytest

from benchmarks.blocks import block_of, blocks_table, load


def cell(method, seed, right_in_block):
    """Two groups of 4 questions, blocks of 2: ``right_in_block[b]`` questions right per group in block b."""
    scores = {}
    for group in ("a", "b"):
        for b, right in enumerate(right_in_block):
            for i in range(2):
                scores[f"{group}/{b * 2 + i}"] = 1.0 if i < right else 0.0
    return {"method": method, "seed": seed, "scores": scores}


def test_blocks_follow_each_groups_order():
    scores = {"a/x": 1, "b/y": 0, "a/z": 1, "b/w": 1, "a/v": 0}
    assert block_of(scores, 2) == {"a/x": 0, "b/y": 0, "a/z": 0, "b/w": 0, "a/v": 1}


def test_a_method_ahead_on_one_block_only():
    by_method = {"ref": [cell("ref", 0, [2, 0])], "new": [cell("new", 0, [2, 2])]}
    _, rows = blocks_table(by_method, size=2, reference="ref")
    new = {r["block"]: r for r in rows if r["method"] == "new"}
    assert new["1-2"]["right"] == [4] and new["1-2"]["diff"] == 0.0 and new["1-2"]["verdict"] == "tie"
    assert new["3-4"]["right"] == [4] and new["3-4"]["diff"] == 100.0 and new["3-4"]["verdict"] == "ahead"


def test_cells_on_other_questions_are_refused(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    (one / "t-ref-seed0.json").write_text(json.dumps(cell("ref", 0, [1, 1])))
    other = cell("new", 0, [1, 1])
    other["scores"] = {k.replace("a/", "c/"): v for k, v in other["scores"].items()}
    (two / "t-new-seed0.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="other questions"):
        load([str(one), str(two)], None)
