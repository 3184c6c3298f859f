"The committed outputs of the notebooks are clean: no stderr (warnings, progress noise) and no path of the machine that ran them"
import json, re
import pytest
from conftest import ROOT

MACHINE = re.compile(r'(/root/|/home/\w+/|/tmp/|/Users/\w+/|\.venv/|site-packages/)')

def _texts(out):
    "The text parts of a cell output"
    if out.get('output_type') == 'stream': yield ''.join(out.get('text', ''))
    for k, v in out.get('data', {}).items():
        if k.startswith('text/'): yield ''.join(v)
    if out.get('output_type') == 'error': yield '\n'.join(out.get('traceback', []))

# notebooks whose committed outputs still hold torch's import-time FutureWarning (with the machine's site-packages
# path): they pass once re-executed with the warnings cell the module notebooks have
STALE = {'00_data', '07_compare', '08_imagenette', 'index'}

def _param(nb): return pytest.param(nb, id=nb.stem, marks=[pytest.mark.xfail(strict=True, reason='outputs not re-executed yet')] if nb.stem in STALE else [])

@pytest.mark.parametrize('nb', [_param(nb) for nb in sorted((ROOT/'nbs').glob('*.ipynb'))])
def test_outputs_have_no_stderr_and_no_machine_paths(nb):
    bad = []
    for i, c in enumerate(json.loads(nb.read_text())['cells']):
        for out in c.get('outputs', []):
            if out.get('output_type') == 'stream' and out.get('name') == 'stderr': bad.append((i, 'stderr', ''.join(out['text'])[:120]))
            for t in _texts(out):
                if m := MACHINE.search(t): bad.append((i, 'path', t[max(0, m.start()-40):m.end()+40]))
    assert not bad, f"{nb.name}: {bad[:5]}"
