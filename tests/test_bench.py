"""`benchmarks/bench_train.py` runs, at its tiny CPU size, and prints a ratio line per configuration and the goal.

Timings are not checked (they belong to the benchmark's own runs): the lines' numbers are checked for sense."""
import math, re, sys
import pytest
from conftest import ROOT, run
from fastai_sprinkles.compare import CONFIGS

ROW = re.compile(r"^\| (?P<name>[\w+-]+) +\| +(?P<rounds>\d+) \| +(?P<med>[\d.]+) \| "
                 r"+(?P<lo>[\d.]+) - +(?P<hi>[\d.]+) \| +(?P<ratio>[\d.]+) \| "
                 r"+(?P<rlo>[\d.]+) - +(?P<rhi>[\d.]+) \| (?P<syncs>[\d.]+) \|$", re.M)

@pytest.fixture(scope='module')
def bench():
    "The output of one tiny run, shared by the tests below"
    r = run([sys.executable, str(ROOT/'benchmarks'/'bench_train.py'), '--tiny', '--device', 'cpu', '--threads', '1'],
            timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout

def test_a_ratio_line_per_configuration(bench):
    rows = {m['name']: m for m in ROW.finditer(bench)}
    assert list(rows) == list(CONFIGS), bench
    for name, m in rows.items():
        med, lo, hi, ratio = (float(m[k]) for k in ('med', 'lo', 'hi', 'ratio'))
        assert int(m['rounds']) == 2 and 0 < lo <= med <= hi and math.isfinite(hi), m[0]
        assert 0 < ratio < 100 and 0 < float(m['rlo']) <= float(m['rhi']), m[0]
    assert float(rows['none']['ratio']) == 1.0

def test_syncs_are_counted(bench):
    "The library's configurations make no host-device sync per step (as tests/test_no_sync.py checks, op by op)"
    rows = {m['name']: float(m['syncs']) for m in ROW.finditer(bench)}
    assert all(v >= 0 for v in rows.values())
    assert all(v == 0 for k, v in rows.items() if not k.startswith('fastai-')), rows
    # fastai 2.8's CutMix reads its box and lambda on the host: the counter is not blind
    assert rows['fastai-cutmix'] > 0, rows

def test_goal_is_stated(bench):
    assert re.search(r"^goal: every configuration at >= 0\.99 of none's imgs/s \(same rounds\): (MET|MISSED by \d+)",
                     bench, re.M), bench
    assert 'batch 8x3x16x16, float32, on cpu' in bench
