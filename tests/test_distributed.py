"""Real 2-process distributed training on the CPU (gloo), through fastai's `learn.distrib_ctx()` (Hugging Face
Accelerate).

One `torchrun` launch of `tests/dist_worker.py` trains a tiny CNN several times on both ranks: ProgressiveSprinkles
annealed by an `Annealer` (with a batch-size ramp), SaliencyHook ('full', then 'lowres') with KeepCutout, and each
augmentation of the registry in `tests/helpers.py` (CutMix among them). Each rank writes what it saw at every training
batch; the tests compare the two ranks' records. The worker carries a test-only shim for the two places where fastai's
distributed code assumes CUDA.
"""
import json, os, signal, subprocess, sys
from pathlib import Path

import pytest
import torch.distributed as dist
from helpers import AUGMENTATIONS

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)
pytest.importorskip('accelerate', reason="fastai.distributed needs Hugging Face Accelerate")

WORKER = Path(__file__).with_name('dist_worker.py')
ROOT = WORKER.parent.parent
RUNS = ('sprinkles', 'saliency_full', 'saliency_lowres', *AUGMENTATIONS)  # as in the worker
N_TRAIN, WORLD = 64, 2  # as in the worker
TIMEOUT = 240  # seconds: a deadlocked collective ends the launch here instead of hanging the suite

def stop(proc, out):
    "End a launch that ran out of time: the launcher (which stops its workers), then any worker left, by its pid"
    os.killpg(proc.pid, signal.SIGTERM)
    try: proc.wait(timeout=15)
    except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    for f in out.glob('pid-rank*'):
        try: os.kill(int(f.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError): pass

@pytest.fixture(scope='module')
def launch(tmp_path_factory):
    "Run the worker once on 2 processes; return the completed process and `{run: [rank 0 record, rank 1 record]}`"
    out = tmp_path_factory.mktemp('dist')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(ROOT), env.get('PYTHONPATH')) if p)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(WORLD), str(WORKER),
           str(out)]
    log = out/'launch.log'
    with open(log, 'w') as f:  # output to a file: workers that outlive the launcher hold no pipe of ours
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try: proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(proc, out)
            pytest.fail(f"distributed training did not finish in {TIMEOUT} s (deadlock?):\n{log.read_text()[-3000:]}")
    proc = subprocess.CompletedProcess(cmd, proc.returncode, log.read_text(), log.read_text())
    recs = {}
    for name in RUNS:
        files = [out/f'{name}-rank{r}.json' for r in range(WORLD)]
        recs[name] = [json.loads(f.read_text()) if f.exists() else None for f in files]
    return proc, recs

def both(launch, name):
    "The two ranks' records of run `name`, failing with the launch's output if one is missing"
    proc, recs = launch
    r0, r1 = recs[name]
    assert r0 is not None and r1 is not None, \
        f"run {name!r} wrote no record on some rank; rc={proc.returncode}\n{proc.stderr[-3000:]}"
    return r0, r1

def per_epoch(rows, key='bs'):
    "`{epoch: [row[key], ...]}`"
    res = {}
    for r in rows: res.setdefault(r['epoch'], []).append(r[key])
    return res

def test_every_run_completes_under_ddp_on_both_ranks(launch):
    proc, _ = launch
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in RUNS:
        r0, r1 = both(launch, name)
        assert [r0['rank'], r1['rank']] == [0, 1] and r0['world'] == r1['world'] == WORLD
        assert r0['completed'] and r1['completed'] and r0['wrapped'] and r1['wrapped']
        for r in (r0, r1):
            assert r['rows'], f"{name}: no training batch recorded on rank {r['rank']}"
            assert {row['model'] for row in r['rows']} == {'DistributedDataParallel'}
            assert {row['dl'] for row in r['rows']} == {'DistributedDL'}
            assert all(row['finite'] for row in r['rows']) and r['loss'] is not None and r['loss'] == r['loss']
            # each rank trains on its half of the data, and the learner is handed back unwrapped, batch size restored
            assert all(sum(bs) == N_TRAIN//WORLD for bs in per_epoch(r['rows']).values())
            assert r['train_bs_after'] == 8
        assert len(r0['rows']) == len(r1['rows']), f"{name}: the ranks ran different numbers of batches"
        assert all(a['x_sha1'] != b['x_sha1'] for a, b in zip(r0['rows'], r1['rows'])), \
            f"{name}: both ranks got the same batch"

def test_schedule_values_agree_across_ranks(launch):
    r0, r1 = both(launch, 'sprinkles')
    p0, p1 = [r['p'] for r in r0['rows']], [r['p'] for r in r1['rows']]
    assert p0 == p1 and r0['hist_p'] == r1['hist_p'] == p0
    assert r0['anneal'] == r1['anneal'] and r0['anneal']['progressive_sprinkles.p'] == p0
    steps = lambda rec: [(r['epoch'], r['iter'], r['n_iter']) for r in rec['rows']]
    assert steps(r0) == steps(r1)
    assert p0[0] == 0.25 and all(a < b for a, b in zip(p0, p0[1:])) and p0[-1] > 0.8  # SchedLin(0.25, 1) over the fit

def test_batch_size_ramp_applies_per_rank(launch):
    "`SchedLin(4, 8)` over 2 epochs: 4 per rank in epoch 0, 6 per rank in epoch 1 (the last batch takes the rest)"
    for r in both(launch, 'sprinkles'):
        assert r['anneal']['bs'] == [4]*8 + [6]*6
        assert [row['bs'] for row in r['rows']] == [4]*8 + [6]*5 + [2]

@pytest.mark.parametrize('name', ['sprinkles', *AUGMENTATIONS])
def test_ranks_draw_their_own_holes(launch, name):
    "Hole masks depend only on the random draws: on each batch the two ranks' masks must differ"
    r0, r1 = both(launch, name)
    pairs = [(a, b) for a, b in zip(r0['rows'], r1['rows']) if a['mask_sum'] or b['mask_sum']]
    assert len(pairs) >= len(r0['rows'])//2
    assert all(a['mask_sha1'] != b['mask_sha1'] for a, b in pairs)

def test_auto_pairing_rolls_when_the_distributed_loader_shuffles(launch):
    "'auto' pairing: 'roll' (partners k places on) when the training loader shuffles, as the distributed one does"
    for r in both(launch, 'cutmix'):
        for row in r['rows']:
            perm, B = row['perm'], len(row['perm'])
            assert perm == [(i + perm[0]) % B for i in range(B)], f"partners {perm} are not a roll"

@pytest.mark.parametrize('name', ['saliency_full', 'saliency_lowres'])
def test_saliency_pass_keeps_ddp_in_sync(launch, name):
    """The extra forward and backward pass of SaliencyHook runs on the unwrapped module: parameters stay identical on
    the ranks"""
    r0, r1 = both(launch, name)
    assert r0['start'] == r1['start']
    assert r0['params']['sha1'] != r0['start']['sha1'], "training did not change the parameters"
    assert r0['params'] == r1['params']
    for r in (r0, r1):
        assert all(row['sal_finite'] for row in r['rows'])
        assert all(row['mask_sum'] > 0 for row in r['rows'])  # KeepCutout (p=1) cut every batch
    # the saliency-guided squares depend on each rank's own images
    assert any(a['mask_sha1'] != b['mask_sha1'] for a, b in zip(r0['rows'], r1['rows']))

def test_other_runs_keep_ddp_in_sync(launch):
    for name in ('sprinkles', *AUGMENTATIONS):
        r0, r1 = both(launch, name)
        assert r0['params'] == r1['params'] and r0['params'] != r0['start']
