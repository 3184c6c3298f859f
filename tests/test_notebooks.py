"Every notebook runs under nbdev's own notebook test (honouring `tst_flags`), each as its own test"
import pytest
from conftest import ROOT, BIN, run

NBS = sorted((ROOT/'nbs').glob('*.ipynb'))

def test_notebooks_found(): assert len(NBS) >= 3 and (ROOT/'nbs'/'index.ipynb') in NBS

@pytest.mark.notebook
@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    r = run([str(BIN/'nbdev-test'), str(nb)], timeout=1200)
    assert r.returncode == 0 and 'Success' in r.stdout, f"{nb.name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
