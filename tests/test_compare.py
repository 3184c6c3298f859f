"The comparison harness on a tiny synthetic problem: resume, crashes, statistics, equal time, timing"
import json, math, os, time
import numpy as np, pytest, torch
from scipy import stats
from torch import nn
from torch.utils.data import TensorDataset
from fastai.vision.all import DataLoaders, TfmdDL, Callback
import fastai_sprinkles.compare as C
from fastai_sprinkles.compare import (CONFIGS, RunStats, train_run, run_sweep, load_runs, save_runs, run_key, mean_ci,
                                      welch_p, summarize, equal_time, acc_at_time, conclusions, format_table)
from fastai_sprinkles.cutmix import CutMix, OneOf
from fastai_sprinkles.sprinkles import ProgressiveSprinkles

def tiny_dls(bs=16, n=96):
    "Random 3x8x8 images; class 1 when their mean is positive"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 8, 8, generator=g); y = (x.mean((1, 2, 3)) > 0).long()
    dls = DataLoaders(TfmdDL(TensorDataset(x[:64], y[:64]), bs=bs, shuffle=True, drop_last=True),
                      TfmdDL(TensorDataset(x[64:], y[64:]), bs=bs))
    dls.c = 2
    return dls

def tiny_model(n_out):  # accepts any image size, as the low-resolution saliency of `keep-cutout` needs
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, n_out))

class Counter:
    "A training function that counts its calls"
    def __init__(self): self.calls = []
    def __call__(self, make_dls, **kw):
        self.calls.append((kw['cbs'], kw['seed'], kw['epochs']))
        return train_run(make_dls, **kw)

def sweep(path, configs, train, seeds=(0, 1), epochs=1, **kw):
    return run_sweep(path, configs, tiny_dls, seeds=seeds, epochs=epochs, setup=dict(data='tiny'), bs=16, lr=1e-2,
                     arch=tiny_model, train=train, log=None, **kw)

class Sleepy(Callback):
    "Sleep 2 ms at each training batch"
    def before_batch(self): time.sleep(2e-3)

class Boom(Callback):
    "Fail at the first training batch"
    def before_batch(self): raise RuntimeError('boom')

BASE = {'none': lambda r: [], 'sleepy': lambda r: [Sleepy()]}

# --- resume

def test_resume_skips_finished_runs(tmp_path):
    path, t = tmp_path/'runs.jsonl', Counter()
    runs = sweep(path, BASE, t, seeds=(0, 1))
    assert len(t.calls) == 4 and len(runs) == 4
    runs = sweep(path, BASE, t, seeds=(0, 1))  # nothing left to do
    assert len(t.calls) == 4 and len(runs) == 4
    runs = sweep(path, BASE, t, seeds=(0, 1, 2), epochs=(1, 2))  # a new seed and a new budget
    assert [(s, e) for _, s, e in t.calls[4:]] == [(2, 1), (2, 1), (0, 2), (0, 2), (1, 2), (1, 2), (2, 2), (2, 2)]
    assert len(load_runs(path)) == len(runs) == 12
    assert len({run_key(r) for r in runs}) == 12

def test_resume_refuses_another_setup(tmp_path):
    path = tmp_path/'runs.jsonl'
    sweep(path, {'none': BASE['none']}, Counter(), seeds=(0,))
    with pytest.raises(ValueError, match='another setup'):
        run_sweep(path, BASE, tiny_dls, seeds=(0,), epochs=1, setup=dict(data='tiny', size=64), bs=16, lr=1e-2,
                  arch=tiny_model, log=None)

def test_crash_mid_sweep_leaves_finished_runs(tmp_path):
    path, t = tmp_path/'runs.jsonl', Counter()
    cfgs = {'none': BASE['none'], 'boom': lambda r: [Boom()], 'sleepy': BASE['sleepy']}
    with pytest.raises(RuntimeError, match='boom'): sweep(path, cfgs, t, seeds=(0, 1))
    lines = path.read_text().splitlines()
    assert [run_key(json.loads(l)) for l in lines] == [('none', 0, 1)]
    assert not list(tmp_path.glob('.*.tmp'))
    fixed = {**cfgs, 'boom': BASE['sleepy']}  # fixed: the sweep goes on from the failed run
    sweep(path, fixed, t, seeds=(0, 1))
    assert [(s) for _, s, _ in t.calls] == [0, 0, 0, 0, 1, 1, 1]
    assert [run_key(r) for r in load_runs(path)] == [('none', 0, 1), ('boom', 0, 1), ('sleepy', 0, 1),
                                                     ('none', 1, 1), ('boom', 1, 1), ('sleepy', 1, 1)]

def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path/'runs.jsonl'
    save_runs(path, [dict(config='a', seed=0, epochs=1)])
    def fail(*a): raise KeyboardInterrupt
    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(KeyboardInterrupt): save_runs(path, [dict(config='a', seed=0, epochs=1), dict(config='b', seed=0, epochs=1)])
    assert [r['config'] for r in load_runs(path)] == ['a']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['runs.jsonl']

# --- statistics

SAMPLES = [([0.80, 0.82, 0.81, 0.85], [0.78, 0.79, 0.80, 0.77]), ([0.5, 0.7, 0.6], [0.55, 0.9, 0.1, 0.4, 0.6]),
           ([0.912, 0.915], [0.905, 0.911, 0.903])]

@pytest.mark.parametrize('a,b', SAMPLES)
def test_stats_match_scipy(a, b):
    m, s, (lo, hi) = mean_ci(a)
    assert m == pytest.approx(np.mean(a)) and s == pytest.approx(np.std(a, ddof=1))
    slo, shi = stats.t.interval(0.95, len(a) - 1, loc=np.mean(a), scale=stats.sem(a))
    assert (lo, hi) == pytest.approx((slo, shi))
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p(a, b) != pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, abs=1e-6)  # Welch, not Student

def test_too_few_runs_give_nan():
    assert math.isnan(mean_ci([0.5])[1]) and math.isnan(welch_p([0.5], [0.4, 0.6]))

def fake(config, seed, acc, times=(10., 20.), accs=None, epochs=2):
    accs = list(accs or [acc - .1, acc])
    return dict(config=config, seed=seed, epochs=epochs, accuracy=acc, best_accuracy=max(accs), valid_loss=1 - acc,
                epoch_s=times[-1]/epochs, imgs_per_s=100. + seed, aug_frac=0.01*seed, accs=accs, times=list(times))

def test_summarize_mean_std_and_order():
    runs = ([fake('b', s, a) for s, a in enumerate([.6, .7, .8])] + [fake('none', s, a) for s, a in enumerate([.5, .52, .51])]
            + [fake('b', s, .9, epochs=5) for s in range(2)])
    df = summarize(runs)
    assert list(zip(df.epochs, df.config)) == [(2, 'none'), (2, 'b'), (5, 'b')]  # baseline first, budgets apart
    b = df.iloc[1]
    assert b.runs == 3 and b.base_runs == 3
    assert b.acc_mean == pytest.approx(.7) and b.acc_std == pytest.approx(.1)
    assert b['diff'] == pytest.approx(.7 - .51)
    assert b.imgs_per_s == pytest.approx(101.) and b.aug_frac == pytest.approx(.01)
    assert math.isnan(df.iloc[0].p_welch) and math.isnan(df.iloc[2].p_welch)  # no baseline at 5 epochs
    assert len(format_table(df)) == 3
    assert conclusions(df)[0].startswith('b vs none, 2 epoch(s): +19.00% accuracy (p = ')
    assert '3 and 3 runs' in conclusions(df)[0] and 'no test' in conclusions(df)[1]

# --- equal time

def test_equal_time_on_constructed_runs():
    base = [fake('none', s, a, times=(10., 20.), accs=[a - .1, a]) for s, a in enumerate([.70, .72])]
    slow = [fake('slow', s, a, times=(15., 30.), accs=[a - .2, a]) for s, a in enumerate([.80, .84])]  # 1.5x the time
    fast = [fake('fast', 0, .75, times=(8., 16.)), fake('fast', 1, .77, times=(9., 21.))]
    late = [fake('late', s, .9, times=(25., 50.)) for s in range(2)]  # not even one epoch within 20 s
    et = equal_time(base + slow + fast + late).set_index('config')
    assert et.loc['slow'].base_time_s == pytest.approx(20.) and et.loc['slow'].time_ratio == pytest.approx(1.5)
    assert et.loc['slow'].acc_mean == pytest.approx(np.mean([.60, .64]))  # its first epoch, at 15 s
    assert et.loc['slow'].p_welch == pytest.approx(stats.ttest_ind([.60, .64], [.70, .72], equal_var=False).pvalue)
    assert et.loc['fast'].acc_mean == pytest.approx(np.mean([.75, .77 - .1]))  # run 1 ends after 20 s: its first epoch
    assert et.loc['late'].runs_with_value == 0 and math.isnan(et.loc['late'].acc_mean)
    assert 'none' not in et.index
    assert acc_at_time([1., 2., 3.], [.1, .2, .3], 2.5) == .2 and acc_at_time([1., 2.], [.1, .2], 2.) == .2

# --- timing and configurations

def test_runstats_times_the_augmentation_once_and_unwraps():
    sp, cm = Sleepy(), CutMix()
    res = train_run(tiny_dls, cbs=[OneOf([sp, cm], ps=[.5, .5])], epochs=2, bs=16, lr=1e-2, arch=tiny_model)
    n_batches = 2*4
    assert res['aug_s'] >= n_batches*2e-3  # the nested Sleepy, inside OneOf's timed before_batch
    assert res['aug_s'] < res['train_s'] and 0 < res['aug_frac'] < 1
    assert 'before_batch' not in sp.__dict__ and 'after_loss' not in cm.__dict__  # unwrapped after the fit
    plain = train_run(tiny_dls, epochs=2, bs=16, lr=1e-2, arch=tiny_model)
    assert plain['aug_s'] == 0 and len(plain['accs']) == len(plain['times']) == 2
    assert plain['imgs_per_s'] == pytest.approx(2*64/plain['train_s'])

@pytest.mark.parametrize('exc', [RuntimeError, KeyboardInterrupt])
def test_runstats_unwraps_after_a_crash(exc):
    "fastai runs no `after_fit` after these; `RunStats`, taken off the learner by `fit`, gives the methods back"
    class Fail(Callback):
        def before_batch(self): raise exc('boom')
    b = Fail()
    with pytest.raises(exc): train_run(tiny_dls, cbs=[b], epochs=1, bs=16, lr=1e-2, arch=tiny_model)
    assert 'before_batch' not in b.__dict__

def test_every_config_trains(tmp_path):
    runs = sweep(tmp_path/'all.jsonl', CONFIGS, train_run, seeds=(0,), epochs=2)
    assert [r['config'] for r in runs] == list(CONFIGS)
    for r in runs: assert 0 <= r['accuracy'] <= 1 and len(r['accs']) == 2
    aug = {r['config']: r['aug_s'] for r in runs}
    assert aug['none'] == 0 and all(v > 0 for k, v in aug.items() if k != 'none')

def test_quick_profile_is_small():
    p = C.PROFILES['quick']
    assert p.epochs == (1,) and p.runs == 2 and 2 <= len(p.configs) <= 3 and p.size <= 64 and p.configs[0] == 'none'
    assert all(c in CONFIGS for q in C.PROFILES.values() for c in q.configs)

def test_nested_augmentations_are_timed_once(monkeypatch):
    clock = iter(range(10**6))
    monkeypatch.setattr(C.time, 'perf_counter', lambda: float(next(clock)))  # every reading of the clock: one more second
    res = train_run(tiny_dls, cbs=[OneOf([Sleepy()], ps=[1.])], epochs=2, bs=16, lr=1e-2, arch=tiny_model)
    assert res['aug_s'] == 2*4  # one timed event a batch (OneOf's before_batch, with Sleepy's inside), one second each
