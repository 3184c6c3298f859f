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

def sh_lines():
    "Every command line of the README's ```sh blocks, in order"
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT/'README.md').read_text(), re.S)
    return [l.strip() for b in blocks for l in b.splitlines() if l.strip() and not l.strip().startswith('#')]

def script_commands():
    "The README's command lines that run a console script the package declares, with the script's name"
    import tomllib
    scripts = tomllib.loads((ROOT/'pyproject.toml').read_text())['project'].get('scripts', {})
    return [(l, n) for l in sh_lines() for n in scripts if re.search(rf'(^|[\s/]){re.escape(n)}(\s|$)', l)]

def test_readme_main_job_runs_after_setup():
    """The README's main-job commands work verbatim right after its set-up line on a fresh clone: the set-up line
    makes `.venv/` without activating it, so each command names its script as `.venv/bin/<script>`, comes after the
    set-up line, and uses only options the script's --help lists."""
    from conftest import BIN, run
    lines, setup = sh_lines(), ci_commands()['SETUP']
    cmds = script_commands()
    assert cmds, "the README shows no command of the package's console scripts"
    for line, name in cmds:
        assert line.startswith(f'.venv/bin/{name} ') or line == f'.venv/bin/{name}', \
            f"not runnable right after `{setup}` (the venv is not activated): {line}"
        assert lines.index(line) > lines.index(setup), f'shown before the set-up line: {line}'
        # a fresh clone after set-up has the first
        exe = ROOT/'.venv'/'bin'/name if (ROOT/'.venv'/'bin'/name).exists() else BIN/name
        r = run([str(exe), '--help'], timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        for opt in re.findall(r'(?<!\S)(--[\w-]+)', line):
            assert re.search(rf'(?<![\w-]){re.escape(opt)}(?![\w-])', r.stdout), \
                f'{name} --help does not list {opt}: {line}'
