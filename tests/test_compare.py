"The comparison harness on a tiny synthetic problem: resume, crashes, shards, timing, configurations"
import json, os, time
from types import SimpleNamespace
import pytest, torch
from torch import nn
from torch.utils.data import TensorDataset
from fastai.vision.all import DataLoaders, TfmdDL, Callback, TensorImage, Normalize
import fastai_sprinkles.compare as C
from fastai_sprinkles.compare import (CONFIGS, train_run, run_sweep, load_runs, save_runs, run_key, shard_grid,
                                      parse_shard, merge_runs, split_config)
from fastai_sprinkles.cli import PROFILES
from fastai_sprinkles.cutmix import CutMix
from fastai_sprinkles.oneof import OneOf
from fastai_sprinkles.sprinkles import BatchAugment

def tiny_dls(bs=16, n=96):
    "Random 3x8x8 images; class 1 when their mean is positive"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 8, 8, generator=g); y = (x.mean((1, 2, 3)) > 0).long()
    dls = DataLoaders(TfmdDL(TensorDataset(x[:64], y[:64]), bs=bs, shuffle=True, drop_last=True),
                      TfmdDL(TensorDataset(x[64:], y[64:]), bs=bs))
    dls.c = 2
    return dls

def tiny_model(n_out):  # accepts any image size, as the low-resolution saliency of `keep-cutout` needs
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, n_out))

class Counter:
    "A training function that counts its calls"
    def __init__(self): self.calls = []
    def __call__(self, make_dls, **kw):
        self.calls.append((kw['cbs'], kw['seed'], kw['epochs']))
        return train_run(make_dls, **kw)

def sweep(path, configs, train, seeds=(0, 1), epochs=1, **kw):
    return run_sweep(path, configs, tiny_dls, seeds=seeds, epochs=epochs, setup=dict(data='tiny', size=8), bs=16,
                     lr=1e-2, arch=tiny_model, train=train, log=None, **kw)

class Sleepy(Callback):
    "Sleep 2 ms at each training batch"
    def before_batch(self): time.sleep(2e-3)

class SleepyAug(BatchAugment):
    "An augmentation that sleeps 2 ms and changes nothing: what `OneOf` may hold"
    def augment(self, x, which=None): time.sleep(2e-3); return x

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
    # seed by seed, budget by budget within a seed: the missing runs of seeds 0 and 1 first, then all of seed 2
    assert [(s, e) for _, s, e in t.calls[4:]] == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 1), (2, 1), (2, 2), (2, 2)]
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
    with pytest.raises(KeyboardInterrupt):
        save_runs(path, [dict(config='a', seed=0, epochs=1), dict(config='b', seed=0, epochs=1)])
    assert [r['config'] for r in load_runs(path)] == ['a']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['runs.jsonl']

# --- timing and configurations

def test_runstats_times_the_augmentation_once_and_unwraps():
    sp, cm = SleepyAug(), CutMix()
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
    args = SimpleNamespace(size=8, bs=16, epochs=2, seed=0)
    has_cbs = {k: bool(split_config(f(args))[0]) for k, f in CONFIGS.items()}
    assert aug['none'] == 0 and all(v > 0 for k, v in aug.items() if has_cbs[k])  # callbacks are timed
    assert aug['fastai-erasing'] == 0  # a batch transform runs in the DataLoader: training time, not the augmentation's

def test_quick_profile_is_small():
    p = PROFILES['quick']
    assert p.epochs == (1,) and p.runs == 2 and 2 <= len(p.configs) <= 3 and p.size <= 64 and p.configs[0] == 'none'
    assert all(c in CONFIGS for q in PROFILES.values() for c in q.configs)

def test_nested_augmentations_are_timed_once(monkeypatch):
    clock = iter(range(10**6))
    # every reading of the clock: one more second
    monkeypatch.setattr(C.time, 'perf_counter', lambda: float(next(clock)))
    res = train_run(tiny_dls, cbs=[OneOf([SleepyAug()], ps=[1.])], epochs=2, bs=16, lr=1e-2, arch=tiny_model)
    assert res['aug_s'] == 2*4  # one timed event a batch (OneOf's before_batch, with Sleepy's inside), one second each

def test_peer_configs_train_a_batch_the_way_fastai_users_add_them(tmp_path):
    "RandomErasing goes into the training DataLoader's batch transforms, after Normalize; MixUp, CutMix are callbacks"
    seen = {}
    class Spy(Callback):
        order = 100  # after MixUp/CutMix have mixed the batch
        def before_batch(self):
            if not self.training: return
            tfm_names = list(self.dls.train.after_batch.fs.map(lambda t: type(t).__name__))
            tfms, xs = seen.setdefault(self.cfg, (tfm_names, []))
            xs.append(self.x.clone())
    def spied(name):
        s = Spy(); s.cfg = name
        return lambda r: CONFIGS[name](r) + [s]
    names = ['none', 'fastai-erasing', 'fastai-mixup', 'fastai-cutmix']
    def image_dls(bs=16):  # RandomErasing, like fastai's other image transforms, only acts on `TensorImage` batches
        dls = tiny_dls(bs)
        for i, dl in enumerate(dls.loaders):  # and, as in DataLoaders from a DataBlock, on the training split only
            dl.dataset.tensors = (TensorImage(dl.dataset.tensors[0]), dl.dataset.tensors[1])
            dl.after_batch.add(Normalize.from_stats([0.]*3, [1.]*3, cuda=False))
            dl.dataset.split_idx = i  # read by the DataLoader when it iterates
        return dls
    runs = run_sweep(tmp_path/'peers.jsonl', {n: spied(n) for n in names}, image_dls, seeds=(0,), epochs=2,
                     setup=dict(data='tiny', size=8), bs=16, lr=1e-2, arch=tiny_model, log=None)
    assert [r['config'] for r in runs] == names
    tfms = {n: seen[n][0] for n in names}
    assert tfms['fastai-erasing'][-2:] == ['Normalize', 'RandomErasing'] and 'RandomErasing' not in tfms['none']
    x0 = seen['none'][1]
    for n in names[1:]:  # the same seed: the same batches in the same order, but for what the augmentation changed
        assert len(seen[n][1]) == len(x0) and any(not torch.equal(a, b) for a, b in zip(seen[n][1], x0)), n

def test_shards_hold_every_run_exactly_once():
    from hypothesis import given, strategies as st
    @given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 2), st.data())
    def check(n_cfg, n_seed, n_ep, data):
        grid = [(f'c{c}', s, e) for e in range(1, n_ep + 1) for s in range(n_seed) for c in range(n_cfg)]
        n = data.draw(st.integers(1, n_seed*n_ep))
        parts = [shard_grid(grid, k, n) for k in range(1, n + 1)]
        assert sorted(sum(parts, [])) == sorted(grid)
        for p in parts:  # whole seed blocks: every configuration of a seed on one machine
            for _, s, e in p: assert {(c, s, e) for c, ss, ee in grid if (ss, ee) == (s, e)} <= set(p)
    check()
    with pytest.raises(ValueError, match='at most'): shard_grid([('a', 0, 1)], 1, 2)
    for bad in ('0/2', '3/2', 'a/b', '2'):
        with pytest.raises(ValueError, match='shard'): parse_shard(bad)

def test_sharded_sweep_merges_to_the_whole_sweep(tmp_path):
    whole = sweep(tmp_path/'whole.jsonl', BASE, train_run, seeds=(0, 1, 2))
    for k in (1, 2): sweep(tmp_path/f'part{k}.jsonl', BASE, train_run, seeds=(0, 1, 2), shard=(k, 2))
    merged = merge_runs(tmp_path/'part1.jsonl', tmp_path/'part2.jsonl')
    key = lambda r: (run_key(r), r['accuracy'])  # the same runs, and the same results: seeds make them reproducible
    assert sorted(map(key, merged)) == sorted(map(key, whole))
    with pytest.raises(ValueError, match='in both'): merge_runs(tmp_path/'part1.jsonl', tmp_path/'whole.jsonl')

def test_resume_after_an_interrupted_run(tmp_path, monkeypatch):
    """A run killed halfway (here: KeyboardInterrupt in its second epoch) leaves the finished runs; the next call trains
    only the rest"""
    path = tmp_path/'runs.jsonl'
    class Interrupt(Callback):
        def after_epoch(self):
            if self.epoch == 1: raise KeyboardInterrupt()
    cfgs = {'none': lambda r: [], 'cut': lambda r: [Interrupt()] if r.seed == 1 else []}
    with pytest.raises(KeyboardInterrupt): sweep(path, cfgs, train_run, seeds=(0, 1), epochs=2)
    assert [run_key(r) for r in load_runs(path)] == [('none', 0, 2), ('cut', 0, 2), ('none', 1, 2)]
    t = Counter()
    runs = sweep(path, {'none': cfgs['none'], 'cut': lambda r: []}, t, seeds=(0, 1), epochs=2)
    assert [(s, e) for _, s, e in t.calls] == [(1, 2)] and len(runs) == 4

def test_config_lists_must_hold_callbacks_or_transforms():
    cbs, tfms = split_config([Sleepy(), C.RandomErasing()])
    assert [type(o).__name__ for o in cbs] == ['Sleepy'] and [type(o).__name__ for o in tfms] == ['RandomErasing']
    with pytest.raises(TypeError, match='callbacks and batch transforms'): split_config([lambda x: x])
