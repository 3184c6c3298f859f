"Every console script the package declares runs `--help`; the docs builder's help offers only what it takes"
import re, sys, tomllib
import pytest
from conftest import ROOT, BIN, run

SCRIPTS = tomllib.loads((ROOT/'pyproject.toml').read_text())['project'].get('scripts', {})

def test_scripts_declared():
    assert SCRIPTS, 'pyproject.toml declares no console script'

@pytest.mark.parametrize('name', sorted(SCRIPTS))
def test_console_script_help(name, tmp_path):
    """The declared target answers --help, run through the same few lines pip writes as the console script
    (and through the installed script itself, where the environment has it)"""
    mod, func = SCRIPTS[name].split(':')
    wrapper = tmp_path/name
    wrapper.write_text(f'import sys\nfrom {mod} import {func}\nif __name__ == "__main__":\n'
                       f'    sys.argv[0] = {name!r}\n    sys.exit({func}())\n')
    r = run([sys.executable, str(wrapper), '--help'], timeout=300)
    assert r.returncode == 0, f'{name} -> {SCRIPTS[name]}: {r.stderr[-2000:]}'
    assert r.stdout.startswith(f'usage: {name}') and '--help' in r.stdout, r.stdout[:500]
    if (exe := BIN/name).exists():
        r2 = run([str(exe), '--help'], timeout=300)
        assert r2.returncode == 0 and r2.stdout == r.stdout, r2.stderr[-2000:]

def test_build_docs_help_matches_its_options():
    "tools/build_docs.py --help works, and every --flag its docstring or help names is one it accepts"
    r = run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--help'], timeout=120)
    assert r.returncode == 0 and r.stdout.startswith('usage: tools/build_docs.py'), r.stderr[-2000:]
    sys.path.insert(0, str(ROOT/'tools'))
    import build_docs
    accepted = {s for a in build_docs.parser()._actions for s in a.option_strings}
    named = set(re.findall(r'(?<![\w-])--[a-z][\w-]*', r.stdout + build_docs.__doc__))
    assert named and named <= accepted, f'named but not accepted: {named - accepted}'
    assert {'--out', '--no-readme'} <= named
