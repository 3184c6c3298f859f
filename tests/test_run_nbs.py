"The notebook runner keeps what a notebook says and leaves out the warnings libraries print while it runs"
import sys
import nbformat
from conftest import ROOT
sys.path.insert(0, str(ROOT/'tools'))
import run_nbs

WARN = ("/x/.venv/lib/python3.11/site-packages/torch/jit/_script.py:1491: "
        "FutureWarning: `torch.jit.script` is deprecated.\n"
        "  warnings.warn(\n")

def test_strip_warnings_keeps_other_stderr():
    assert run_nbs.strip_warnings(WARN) == ''
    assert run_nbs.strip_warnings(WARN + 'real error\n  with detail\n') == 'real error\n  with detail\n'
    tb = 'Traceback (most recent call last):\n  File "x"\nValueError: bad\n'
    assert run_nbs.strip_warnings(tb).startswith('Traceback')

def test_run_saves_outputs_without_warnings(tmp_path):
    code = "import warnings, sys\nwarnings.warn('old API', FutureWarning)\nprint(6*7)"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code),
                                         nbformat.v4.new_code_cell("print('kept', file=sys.stderr)")])
    nb.metadata['kernelspec'] = dict(name='python3', display_name='python3', language='python')
    p = tmp_path/'t.ipynb'
    nbformat.write(nb, p)
    run_nbs.run(p)
    out = nbformat.read(p, as_version=4)
    first = [(o.name, o.text) for o in out.cells[0].outputs]
    assert first == [('stdout', '42\n')]
    assert [(o.name, o.text) for o in out.cells[1].outputs] == [('stderr', 'kept\n')]
