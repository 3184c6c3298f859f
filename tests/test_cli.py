"The console command, and the package as a wheel in a clean environment"
import sys, venv
from pathlib import Path
from conftest import ROOT, BIN, run

def test_cli_help():
    r = run([str(BIN/'sprinkles-imagenette'), '--help'])
    assert r.returncode == 0 and '--epochs' in r.stdout and '--size' in r.stdout

def test_cli_trains_and_reports():
    r = run([str(BIN/'sprinkles-imagenette'), '--size', '32', '--epochs', '1', '--bs', '32', '--sample', '0.02',
             '--workers', '0'], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert 'xresnet18 32px, 1 epoch(s)' in last and 'accuracy 0.' in last and 'wall time' in last, r.stdout[-2000:]
    assert 'epoch' in r.stdout and 'train_loss' in r.stdout  # fastai's per-epoch progress table

def test_cli_sweep_saves_table_and_figures_and_resumes(tmp_path):
    out = tmp_path/'res'
    args = [str(BIN/'sprinkles-imagenette'), '--profile', 'quick', '--aug', 'cutout', '--runs', '1', '--out', str(out)]
    r = run(args, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '[2/2] cutout, seed 0, 1 epoch(s)' in r.stdout and 'p (Welch)' in r.stdout, r.stdout[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ['accuracy.png', 'curves.png', 'equal_time.csv', 'runs.jsonl', 'table.csv']
    table = (out/'table.csv').read_text().splitlines()
    assert table[0].startswith('config,epochs,runs,') and [l.split(',')[0] for l in table[1:]] == ['none', 'cutout']
    assert (out/'accuracy.png').read_bytes()[:4] == b'\x89PNG'
    r = run(args, timeout=900)  # the same sweep again: nothing left to train
    assert r.returncode == 0 and '2 runs done, 0 to go' in r.stdout and 'train_loss' not in r.stdout, r.stdout[-2000:]

def test_cli_rejects_unknown_configuration():
    r = run([str(BIN/'sprinkles-imagenette'), '--aug', 'cutot', '--epochs', '1'])
    assert r.returncode != 0 and "unknown configuration(s) ['cutot']" in r.stderr

def test_wheel_installs_into_clean_venv(tmp_path):
    r = run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(tmp_path/'dist')], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    whl, = (tmp_path/'dist').glob('fastai_sprinkles-*.whl')
    env = tmp_path/'env'
    venv.create(env, with_pip=True)
    site, = env.glob('lib/python*/site-packages')
    deps, = Path(sys.executable).parent.parent.glob('lib/python*/site-packages')
    (site/'deps.pth').write_text(str(deps) + '\n')  # dependencies from the dev environment, the package from the wheel
    r = run([str(env/'bin'/'pip'), 'install', '--no-deps', '--no-index', str(whl)], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run([str(env/'bin'/'python'), '-c', 'import fastai_sprinkles, fastai_sprinkles.all; print(fastai_sprinkles.__file__)'],
            cwd=tmp_path)
    assert r.returncode == 0 and str(site) in r.stdout, r.stdout + r.stderr[-3000:]
    r = run([str(env/'bin'/'sprinkles-imagenette'), '--help'], cwd=tmp_path)
    assert r.returncode == 0 and '--epochs' in r.stdout
