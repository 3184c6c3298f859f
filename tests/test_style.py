"""The code reads one way: `ruff check`, with the settings in pyproject's `[tool.ruff]`, passes on the package, the
tests, the tools and the benchmarks.

The package is exported from the notebooks, so its style is fixed in `nbs/` (then `nbdev-export`), never in the
modules. One line of an exported module is nbdev's, not ours: the first line of `__all__`, which nbdev wraps at 120
columns after `__all__ = ` (so up to 130): a long line there is not a finding."""
import json, tomllib
from collections import Counter
import pytest
from conftest import ROOT, BIN, run

PACKAGE, OTHERS = 'fastai_sprinkles', ['tests', 'tools', 'benchmarks']

def ruff(*paths) -> list:
    "The findings of `ruff check` on `paths`, as ruff's JSON records"
    exe = BIN/'ruff'
    assert exe.exists(), "ruff is a dev dependency: `.venv/bin/pip install -e '.[dev]'`"
    r = run([str(exe), 'check', '--output-format', 'json', *paths], timeout=300)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    return json.loads(r.stdout)

def _line(f:dict) -> str: return open(f['filename'], encoding='utf-8').read().splitlines()[f['location']['row'] - 1]

def nbdev_line(f:dict) -> bool:
    "Whether the finding `f` is a long first line of the `__all__` nbdev writes into an exported module"
    return f['code'] == 'E501' and _line(f).startswith('__all__ = ')

def report(fs:list) -> str:
    "The findings counted by file and rule, then the first 30 in full"
    counts = Counter((str(ROOT.joinpath(f['filename']).relative_to(ROOT)), f['code']) for f in fs)
    head = [f"{n:4d} {p} {c}" for (p, c), n in sorted(counts.items())]
    full = [f"{f['filename']}:{f['location']['row']}: {f['code']} {f['message']}" for f in fs[:30]]
    return '\n'.join([f"{len(fs)} finding(s) of ruff (fix them, or run `ruff check --fix` for the safe ones):", *head,
                      '', *full])

def test_settings():
    "Line length 120 and the rules the project chose, with ruff among the dev dependencies"
    cfg = tomllib.loads((ROOT/'pyproject.toml').read_text())
    ruff_cfg = cfg['tool']['ruff']
    assert ruff_cfg['line-length'] == 120
    assert {'E', 'F', 'W'} <= set(ruff_cfg['lint']['select']) and 'E501' not in ruff_cfg['lint'].get('ignore', [])
    assert any(d.startswith('ruff') for d in cfg['project']['optional-dependencies']['dev'])

def test_tests_tools_benchmarks():
    if fs := ruff(*OTHERS): pytest.fail(report(fs), pytrace=False)

def test_package():
    if fs := [f for f in ruff(PACKAGE) if not nbdev_line(f)]: pytest.fail(report(fs), pytrace=False)

def test_only_nbdev_lines_are_let_through():
    "The one exemption is narrow: E501 on an `__all__` line only, and every such line is within nbdev's 130 columns"
    fs = [f for f in ruff(PACKAGE) if nbdev_line(f)]
    assert all(len(_line(f)) <= 130 and f['filename'].endswith('.py') for f in fs), report(fs)
    assert not nbdev_line(dict(code='E501', filename=__file__, location=dict(row=1)))
