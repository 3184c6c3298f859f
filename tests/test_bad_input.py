"""The bad-input table of the docs notebook (its one source), asserted: every public parameter, the bad values tried
and the error each gets; non-image batches given to the image callbacks."""
import ast, inspect, json, warnings
from pathlib import Path

import torch
import pytest

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- the table: one source, the docs notebook

NB = ROOT/'nbs'/'09_bad_input.ipynb'
NAMES = ('CALLS', 'ENV', 'CASES', 'NON_IMAGE', 'NON_IMAGE_ERROR', 'KNOWN_GAPS',
         'run_case', 'names', 'non_image_dls', 'non_image_model', 'run_non_image', 'DENSE', 'run_dense')

def _defined(src, name):
    "The node that defines `name` at the top level of `src` (the value of an assignment, or a function), or None"
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
        if isinstance(node, ast.FunctionDef) and node.name == name: return node

def _only_imports(src) -> bool:
    body = ast.parse(src).body
    return bool(body) and all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in body)

def load_table(nb=NB) -> dict:
    "The table and the ways to run it as the notebook defines them: its import cells and the cells defining them, run"
    cells = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
    cells = [c for c in cells if not c.lstrip().startswith(('%', '#| export', '#| default_exp'))]
    ns = {}
    for c in cells:
        if _only_imports(c) or any(_defined(c, n) is not None for n in NAMES): exec(c, ns)
    missing = [n for n in NAMES if n not in ns]
    assert not missing, f"{nb.name} defines no {missing}"
    return ns

_ns = load_table()
(CALLS, ENV, CASES, NON_IMAGE, NON_IMAGE_ERROR, KNOWN_GAPS,
 run_case, names, non_image_dls, non_image_model, run_non_image, DENSE, run_dense) = (_ns[n] for n in NAMES)
FUNCS = {name: _ns[name] for name in CALLS}

# ---------------------------------------------------------------- the tests

def _param(case, key):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[key])] if key in KNOWN_GAPS else []
    return pytest.param(*case, marks=marks, id='-'.join(map(str, case[:3])))

@pytest.mark.parametrize('function,parameter,value,also,error,message', [_param(c, c[:3]) for c in CASES])
def test_bad_value_is_a_clear_error(function, parameter, value, also, error, message):
    "The bad value is refused with the expected type of error, and the message names the parameter and what is allowed"
    err = run_case(function, parameter, value, also)
    assert err is not None, f"{function}({parameter}={value}) raised nothing"
    assert type(err).__name__ == error, f"{function}({parameter}={value}) raised {type(err).__name__}: {err}"
    assert message in str(err)
    assert names(parameter, str(err))

@pytest.mark.parametrize('cbs,batch', [_param(c, c) for c in NON_IMAGE])
def test_non_image_batch_is_a_clear_error(cbs, batch):
    """A 2-D batch (tabular floats, token ids) given to an image callback fails at the first batch, naming x and
    (B, C, H, W)"""
    err, moved = run_non_image(cbs, batch)
    assert err is not None, f"{cbs} trained on a {batch} batch"
    assert type(err).__name__ == NON_IMAGE_ERROR[0] and NON_IMAGE_ERROR[1] in str(err), f"{type(err).__name__}: {err}"
    assert f"got a 2-D {'torch.float32' if batch == 'tabular' else 'torch.int64'} tensor of shape (8, " in str(err)
    assert not moved  # refused before the first step

@pytest.mark.parametrize('cbs,target,loss,error,message', [_param(c, c[:3]) for c in DENSE])
def test_segmentation_target_that_cannot_be_handled_is_a_clear_error(cbs, target, loss, error, message):
    """A dense target of the wrong form or size, a `mask_fill` the target or the loss cannot take, an augmentation that
    cannot change masks: refused at the first batch (or `before_fit`), naming the target or the parameter"""
    err, moved = run_dense(cbs, target, loss)
    assert err is not None, f"{cbs} trained on a {target} target"
    assert type(err).__name__ == error and message in str(err), f"{type(err).__name__}: {err}"
    assert not moved  # refused before the first step

def test_every_public_parameter_is_tried():
    "Each parameter of each function in the table has at least one bad value (a new parameter needs its row)"
    assert set(CALLS) == {c[0] for c in CASES}
    for name, f in FUNCS.items():
        ps = [p.name for p in inspect.signature(f).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        tried = {c[1] for c in CASES if c[0] == name}
        assert set(ps) <= tried, f"{name}: no bad value tried for {sorted(set(ps) - tried)}"
    assert len({c[:4] for c in CASES}) == len(CASES)  # no case twice

def test_known_gaps_are_cases_and_the_valid_calls_run():
    "Every known gap is a case of a table, and every valid call, without a bad value, runs"
    keys = {c[:3] for c in CASES} | set(NON_IMAGE) | {c[:3] for c in DENSE}
    assert set(KNOWN_GAPS) <= keys, sorted(set(KNOWN_GAPS) - keys)
    for name, call in CALLS.items():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            call()
