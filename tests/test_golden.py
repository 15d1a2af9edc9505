"""Restructuring must not change behaviour: fixed fake-LM compiles give the recorded reports
(``tests/golden.py``; after an intended change, record again with ``python tests/golden.py --write``)."""

import json

import pytest

import golden

COMPILES = golden.compiles()


def differences(recorded, now, path="report"):
    """Every path where two JSON values differ, e.g. ``report.tree[3].score: 0.5 != 0.75``."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        return [d for k in sorted(set(recorded) | set(now), key=str)
                for d in differences(recorded.get(k, "<missing>"), now.get(k, "<missing>"), f"{path}.{k}")]
    if isinstance(recorded, list) and isinstance(now, list) and len(recorded) == len(now):
        return [d for i, (a, b) in enumerate(zip(recorded, now)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if recorded == now else [f"{path}: {json.dumps(recorded)[:120]} != {json.dumps(now)[:120]}"]


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_a_fixed_compile_gives_the_recorded_report(name):
    recorded = json.loads((golden.GOLDEN / f"{name}.json").read_text())
    now = json.loads(json.dumps(golden.stable(COMPILES[name]()), sort_keys=True))
    found = differences(recorded, now)
    assert not found, f"{len(found)} fields differ from tests/golden/{name}.json:\n" + "\n".join(found[:20])


def test_differences_name_the_field_that_changed():
    assert differences({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == ["report.a[1].b: 2 != 3"]
    assert differences({"a": 1}, {"a": 1}) == []
