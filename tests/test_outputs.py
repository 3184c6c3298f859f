"""Committed notebook outputs and README.md show what a reader should see: no path of the machine that ran them,
no stream written to stderr (warnings, progress noise)."""
import json, re
import pytest
from conftest import ROOT

MACHINE_PATH = re.compile(r'(?<![\w.~-])/(root|tmp|home|work|private/var|Users)/\S*|/\S*\.venv/\S*|[A-Z]:\\Users\\\S*')
NBS = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb'))

def texts(o):
    "The text of one output, by kind (images are left out)"
    if o['output_type'] == 'stream': yield f"stream {o['name']}", o['text']
    elif o['output_type'] == 'error': yield 'error', '\n'.join(o.get('traceback', []))
    else:
        for k, v in o.get('data', {}).items():
            if k.startswith('text/') or k.endswith('json'):
                yield k, v if isinstance(v, str) else ''.join(v) if isinstance(v, list) else json.dumps(v)

def problems(nb_path):
    nb = json.loads(nb_path.read_text())
    for i, c in enumerate(nb['cells']):
        for o in c.get('outputs', []):
            for kind, t in texts(o):
                t = t if isinstance(t, str) else ''.join(t)
                where = f"{nb_path.name} cell {i} (id {c.get('id', '?')}), {kind}"
                if kind == 'stream stderr': yield f'{where}: stderr output: {t.strip()[:160]!r}'
                for m in MACHINE_PATH.finditer(t): yield f'{where}: machine path {m.group(0)!r}'

@pytest.mark.parametrize('nb', NBS)
def test_notebook_outputs_clean(nb):
    found = list(problems(ROOT/'nbs'/nb))
    assert not found, '\n'.join(found)

def test_readme_clean():
    found = [f'README.md line {i}: {m.group(0)!r}' for i, l in enumerate((ROOT/'README.md').read_text().splitlines(), 1)
             for m in MACHINE_PATH.finditer(l)]
    assert not found, '\n'.join(found)

def test_the_check_finds_what_it_looks_for(tmp_path):
    nb = {'cells': [{'cell_type': 'code', 'id': 'a', 'outputs': [
        {'output_type': 'stream', 'name': 'stderr', 'text': ['UserWarning: x\n']},
        {'output_type': 'execute_result', 'data': {'text/plain': ["'/root/.fastai/data/x'"]}},
        {'output_type': 'stream', 'name': 'stdout', 'text': 'run .venv/bin/sprinkles-compare, saved runs/x.jsonl\n'}]}]}
    (tmp_path/'x.ipynb').write_text(json.dumps(nb))
    found = list(problems(tmp_path/'x.ipynb'))
    assert len(found) == 2 and 'stderr' in found[0] and '/root/.fastai/data/x' in found[1], found
