"""The redesigned code gives the batches the code before it gave, bit for bit, for the same seeds.

`golden.json` was written by `make_golden.py` before the redesign; a case that differs names the outputs that differ.
An intended change of output is listed in `CHANGED` with its reason, and only that output is exempt."""
import json
import pytest
from make_golden import GOLDEN, all_cases, case

GOLD = json.loads(GOLDEN.read_text())

# 'case/output path' -> why its output was allowed to change
CHANGED = {}

def _diff(got, want, path=''):
    "Paths at which two fingerprints differ"
    if isinstance(want, dict) and isinstance(got, dict):
        return [d for k in want.keys() | got.keys() for d in _diff(got.get(k), want.get(k), f'{path}/{k}')]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _diff(g, w, f'{path}/{i}')]
    return [] if got == want else [path]

def test_every_case_recorded():
    assert sorted(GOLD) == sorted(all_cases())

@pytest.mark.parametrize('name', all_cases())
def test_same_batches_as_recorded(name):
    diffs = [d for d in _diff(json.loads(json.dumps(case(name))), GOLD[name]) if f'{name}{d}' not in CHANGED]
    assert not diffs, f"{name}: these outputs differ from the recorded ones: {diffs[:10]}"
