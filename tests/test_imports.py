"`from fastai_sprinkles.all import *` brings the augmentations, not the sweep harness or its heavy imports"
import subprocess, sys
from conftest import ROOT

HEAVY = ('scipy', 'pandas', 'matplotlib.pyplot')

def loaded_after(stmt:str) -> set:
    "The modules a fresh interpreter has loaded after running `stmt`"
    code = f"import sys, warnings; warnings.simplefilter('ignore'); {stmt}; print('\\n'.join(sys.modules))"
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())

def _heavy(mods): return {m for m in mods if any(m == h or m.startswith(h + '.') for h in HEAVY)}

def test_all_imports_no_harness_and_nothing_heavy_beyond_fastai():
    "fastai itself loads scipy, pandas and pyplot; `all` must load no more of them, and not the harness"
    ours, fastai = loaded_after('import fastai_sprinkles.all'), loaded_after('import fastai.vision.all')
    assert 'fastai_sprinkles.compare' not in ours
    assert _heavy(ours) <= _heavy(fastai), sorted(_heavy(ours) - _heavy(fastai))

def test_the_harness_would_be_seen():
    "The check above can fail: the harness's own import does load what it looks for"
    assert 'fastai_sprinkles.compare' in loaded_after('import fastai_sprinkles.compare')
