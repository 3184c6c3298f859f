"Notebooks are clean and the modules are exactly what `nbdev-export` makes of them"
import shutil
from conftest import ROOT, BIN, run

def _snapshot(root):
    files = [*(root/'nbs').rglob('*.ipynb'), *(root/'fastai_sprinkles').rglob('*.py')]
    return {f.relative_to(root): f.read_bytes() for f in files if '.ipynb_checkpoints' not in f.parts}

def test_clean_and_export_leave_no_diff(tmp_path):
    for name in ('nbs', 'fastai_sprinkles'):
        shutil.copytree(ROOT/name, tmp_path/name, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
    shutil.copy(ROOT/'pyproject.toml', tmp_path)
    before = _snapshot(tmp_path)
    for cmd in ('nbdev-clean', 'nbdev-export'):
        r = run([str(BIN/cmd)], cwd=tmp_path)
        assert r.returncode == 0, f"{cmd} failed:\n{r.stdout}\n{r.stderr}"
    after = _snapshot(tmp_path)
    changed = sorted(str(k) for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"run nbdev-clean and nbdev-export, then commit; these files change: {changed}"
