"The console command, and the package as a wheel in a clean environment"
import json, sys, venv
import pytest
from pathlib import Path
from conftest import BIN, run

OUTPUTS = ['accuracy.png', 'conclusions.txt', 'curves.png', 'equal_time.csv', 'runs.jsonl', 'summary.txt', 'table.csv',
           'verdicts.csv']

@pytest.mark.parametrize('cmd', ['sprinkles-compare', 'sprinkles-imagenette'])
def test_cli_help(cmd):
    r = run([str(BIN/cmd), '--help'])
    assert r.returncode == 0 and '--epochs' in r.stdout and '--data' in r.stdout and '--shard' in r.stdout

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
    assert '[2/2] cutout, seed 0, 1 epoch(s)' in r.stdout and 'p (Holm)' in r.stdout, r.stdout[-2000:]
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
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
    r = run([str(env/'bin'/'python'), '-c',
             'import fastai_sprinkles, fastai_sprinkles.all; print(fastai_sprinkles.__file__)'], cwd=tmp_path)
    assert r.returncode == 0 and str(site) in r.stdout, r.stdout + r.stderr[-3000:]
    r = run([str(env/'bin'/'sprinkles-imagenette'), '--help'], cwd=tmp_path)
    assert r.returncode == 0 and '--epochs' in r.stdout

# --- any folder, shards

def test_compare_runs_end_to_end_on_a_folder_the_test_makes(tmp_path):
    from test_data import make_folder
    root = make_folder(tmp_path/'imgs', n=8)
    out = tmp_path/'res'
    args = [str(BIN/'sprinkles-compare'), '--data', str(root), '--profile', 'quick', '--bs', '8', '--out', str(out)]
    r = run(args, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert '[6/6] progressive, seed 1, 1 epoch(s)' in r.stdout and 'paired t' in r.stdout, r.stdout[-3000:]
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    runs = [json.loads(l) for l in (out/'runs.jsonl').read_text().splitlines()]
    assert {r['n_train'] for r in runs} == {24} and {r['setup']['data'] for r in runs} == {str(root.resolve())}
    assert 'cutout vs none, 1 epoch(s)' in (out/'conclusions.txt').read_text()
    assert (out/'summary.txt').read_text().startswith('At 1 epochs, over 2 paired seeds, ')
    assert (out/'verdicts.csv').read_text().splitlines()[0] == 'config,epochs,seeds,Δ points (95% CI),p (Holm),verdict'

def test_compare_shards_then_merges(tmp_path):
    from test_data import make_folder
    root = make_folder(tmp_path/'imgs', n=8)
    base = [str(BIN/'sprinkles-compare'), '--data', str(root), '--profile', 'quick', '--aug', 'cutout', '--bs', '8',
            '--runs', '3', '--out', str(tmp_path/'res')]
    for k in ('1/2', '2/2'):
        r = run(base + ['--shard', k], timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path/'res').glob('runs*.jsonl'))
    assert files == ['runs-1-of-2.jsonl', 'runs-2-of-2.jsonl']
    seeds = [sorted({json.loads(l)['seed'] for l in (tmp_path/'res'/f).read_text().splitlines()}) for f in files]
    assert seeds == [[0, 2], [1]]
    r = run(base + ['--merge'], timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    assert 'cutout vs none, 1 epoch(s)' in r.stdout and 'paired over 3 seeds' in r.stdout, r.stdout[-3000:]

@pytest.mark.parametrize('args,msg', [
    (['--data', '/no/such/folder'], 'is not a folder'),
    (['--shard', '3/2', '--out', 'x'], '--shard: shard K/N needs 1 <= K <= N'),
    (['--shard', '1/2'], 'need --out'), (['--stats', 'cifar'], "--stats must be 'imagenet' or 'measure'"),
    (['--profile', 'huge'], '--profile must be one of'), (['--epochs', '20,20'], '--epochs: a budget is given twice')])
def test_compare_rejects_bad_options(args, msg):
    r = run([str(BIN/'sprinkles-compare')] + args)
    assert r.returncode != 0 and msg in r.stderr, r.stderr[-2000:]

def test_compare_names_the_folder_of_bad_data(tmp_path):
    from test_data import make_folder
    root = make_folder(tmp_path/'imgs', classes=('cat',), split=False)
    r = run([str(BIN/'sprinkles-compare'), '--data', str(root), '--epochs', '1'])
    assert r.returncode != 0 and str(root) in r.stderr, r.stderr[-2000:]
    assert 'at least two' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    r = run([str(BIN/'sprinkles-compare'), '--data', str(make_folder(tmp_path/'ok')), '--epochs', '1', '--bs', '64'])
    assert r.returncode != 0 and '--bs 64 is larger than the 18 training images' in r.stderr, r.stderr[-2000:]

def test_compare_quick_profile_on_cifar10(tmp_path):
    "The quick profile on CIFAR-10, made smaller still by the options that draw a fixed number of images"
    r = run([str(BIN/'sprinkles-compare'), '--data', 'cifar10', '--profile', 'quick', '--aug', 'progressive',
             '--runs', '2', '--per-class', '16', '--valid-n', '96', '--out', str(tmp_path/'c')], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [json.loads(l) for l in (tmp_path/'c'/'runs.jsonl').read_text().splitlines()]
    assert {r['setup']['data'] for r in runs} == {'cifar10'} and {r['config'] for r in runs} == {'none', 'progressive'}
    # 16 images of each of the 10 classes, 96 of the 10,000 test images: the same for every run
    assert {(r['n_train'], r['n_valid']) for r in runs} == {(160, 96)}
    assert {(r['setup']['per_class'], r['setup']['valid_n']) for r in runs} == {(16, 96)}
    assert 'progressive vs none, 1 epoch(s)' in (tmp_path/'c'/'conclusions.txt').read_text()
