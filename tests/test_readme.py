"README.md is generated from nbs/index.ipynb, and CI runs exactly the README's commands"
import re, sys
from conftest import ROOT

sys.path.insert(0, str(ROOT/'tools'))
import build_docs

def ci_commands():
    "The SETUP and TEST command lines that .ci/run executes"
    txt = (ROOT/'.ci'/'run').read_text()
    return {k: re.search(rf"^{k}='(.*)'$", txt, re.M).group(1) for k in ('SETUP', 'TEST')}

def test_readme_in_sync_with_index():
    assert (ROOT/'README.md').read_text() == build_docs.readme_from_index(), \
        "README.md is stale: run `.venv/bin/python tools/build_docs.py`"

def test_ci_runs_the_readme_commands():
    readme, cmds = (ROOT/'README.md').read_text(), ci_commands()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    for k, cmd in cmds.items(): assert cmd in blocks, f".ci/run's {k} command is not a README command: {cmd}"
    assert 'eval "$SETUP"' in (ROOT/'.ci'/'run').read_text() and 'eval "$TEST"' in (ROOT/'.ci'/'run').read_text()

def test_readme_test_command_is_pytest():
    assert ci_commands()['TEST'].endswith('-m pytest')
