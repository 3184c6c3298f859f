"Tests of `fastai_sprinkles.anneal`: values as scheduled, batch-size ramps, lr scaling, restoring, bad input."
import math, warnings
from fractions import Fraction
from functools import partial

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.utils.data import TensorDataset
from fastai.basics import (Learner, DataLoaders, TfmdDL, MSELossFlat, SGD, OptimWrapper, Callback,
                           CancelFitException)
from fastai.callback.schedule import SchedLin, SchedCos, SchedExp, combine_scheds, combined_cos
from fastai.callback.fp16 import MixedPrecision
from fastai.test_utils import RegModel

from fastai_sprinkles.anneal import Annealer, sched_pct, sched_value, check_sched, train_pct

# ---------------------------------------------------------------- helpers

class Knobs(Callback):
    "Stands in for an augmentation: two attributes, and a record of what it saw at each batch"
    def __init__(self, p=0., n=1): self.p,self.n,self.seen = p,n,[]
    def before_batch(self):
        self.seen.append(dict(training=self.training, epoch=self.epoch, iter=self.iter, n_iter=self.n_iter,
                              pct=self.pct_train, p=self.p, n=self.n, bs=self.dl.bs, len=len(self.xb[0])))
    def train(self): return [s for s in self.seen if s['training']]
    def valid(self): return [s for s in self.seen if not s['training']]

def make_learner(tmp_path, n_train=64, n_valid=20, bs=16, drop_last=False, cbs=(), opt_func=partial(SGD, mom=.9)):
    "A tiny regression learner on `n_train` random items, with a `Knobs` callback"
    torch.manual_seed(0)
    x = torch.randn(n_train+n_valid, 1); y = 2*x + 3
    trn = TfmdDL(TensorDataset(x[:n_train], y[:n_train]), bs=bs, shuffle=True, drop_last=drop_last, num_workers=0)
    val = TfmdDL(TensorDataset(x[n_train:], y[n_train:]), bs=bs, num_workers=0)
    return Learner(DataLoaders(trn, val), RegModel(), loss_func=MSELossFlat(), lr=1e-2, opt_func=opt_func,
                   cbs=[Knobs(), *cbs], path=tmp_path)

def quiet(learn, meth='fit', *args, **kwargs):
    "Call `learn.meth` without progress bars or logs"
    with learn.no_bar(), learn.no_logging(): return getattr(learn, meth)(*args, **kwargs)

def exact_pct(e, n_epoch, i, n_iter, every=None, steps=None):
    "The effective pct, computed independently of `sched_pct` with fractions"
    pct = Fraction(e//every*every, n_epoch) if every else Fraction(e*n_iter + i, n_epoch*n_iter)
    if steps: pct = Fraction(math.floor(pct*steps), steps)
    return float(pct)

# ---------------------------------------------------------------- the pure helpers

def test_sched_pct_examples():
    assert [sched_pct(e, 6, every=2) for e in range(6)] == [0, 0, 1/3, 1/3, 2/3, 2/3]
    assert [sched_pct(0, 1, i, 10, steps=4) for i in range(10)] == [0, 0, 0, .25, .25, .5, .5, .5, .75, .75]
    assert sched_pct(3, 4, 1, 2) == 3.5/4
    assert sched_pct(5, 6, 3, 4, every=2, steps=2) == .5   # every first (4/6), then steps: floor(4/6*2)/2

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 9), st.data())
def test_sched_pct_property(n_epoch, n_iter, data):
    every = data.draw(st.none() | st.integers(1, 5))
    steps = data.draw(st.none() | st.integers(1, 7))
    pcts = [sched_pct(e, n_epoch, i, n_iter, every, steps) for e in range(n_epoch) for i in range(n_iter)]
    assert pcts == [exact_pct(e, n_epoch, i, n_iter, every, steps) for e in range(n_epoch) for i in range(n_iter)]
    assert pcts[0] == 0 and all(0 <= p < 1 for p in pcts) and pcts == sorted(pcts)
    if steps: assert len(set(pcts)) <= steps
    if every: assert len(set(pcts)) <= -(-n_epoch//every)

def test_sched_value_and_check():
    assert sched_value(.3, .5) == .3 and sched_value('black', .5) == 'black'
    assert sched_value(SchedLin(0, .5), .5) == pytest.approx(.25)
    lo_hi = sched_value((SchedLin(.02, .05), .2), 1.)
    assert isinstance(lo_hi, tuple) and lo_hi == pytest.approx((.05, .2))
    assert sched_value(lambda p: (1, 1+round(4*p)), .5) == (1, 3)
    for ok in (1, .5, 'x', None, (1, SchedCos(0, 1)), [1, 2], torch.tensor(1.)): check_sched(ok, 'size')
    for bad in ({'a': 1}, {1}, object(), (1, {2})):
        with pytest.raises(TypeError, match='size must be a constant'): check_sched(bad, 'size')

# ---------------------------------------------------------------- values at every batch

def test_values_at_every_batch(tmp_path):
    learn = make_learner(tmp_path)  # 64 items, bs 16: 4 batches an epoch
    p_f, n_f, q_f = SchedCos(0, .5), SchedLin(1, 7), combine_scheds([.5, .5], [SchedLin(0, 1), SchedExp(1, 4)])
    learn.knobs.q = 0.
    ann = Annealer({'knobs.p': p_f, 'knobs.n': n_f, 'knobs.q': q_f}, every={'knobs.n': 2}, steps={'knobs.q': 3})
    qs = []
    learn.add_cb(Callback(before_batch=lambda cb: qs.append(learn.knobs.q) if learn.training else None))
    quiet(learn, 'fit', 6, cbs=ann)
    train = learn.knobs.train()
    assert len(train) == 24 and len(qs) == 24
    for s,q in zip(train, qs):
        e,i = s['epoch'], s['iter']
        assert s['p'] == pytest.approx(p_f(exact_pct(e, 6, i, 4)), abs=1e-12)
        assert s['pct'] == pytest.approx(exact_pct(e, 6, i, 4), abs=1e-12)  # agrees with fastai's pct_train
        assert s['n'] == pytest.approx(n_f(exact_pct(e, 6, i, 4, every=2)), abs=1e-12)
        assert q == pytest.approx(q_f(exact_pct(e, 6, i, 4, steps=3)), abs=1e-12)
    assert sorted(set(s['n'] for s in train)) == pytest.approx([1, 3, 5])
    assert len(set(qs)) == 3
    assert ann.hist['knobs.p'] == [s['p'] for s in train] and ann.hist['knobs.q'] == qs
    assert learn.recorder.anneal_hist is ann.hist and learn.recorder.hps['knobs.n'] == ann.hist['knobs.n']

def test_every_for_all_keys_and_train_pct(tmp_path):
    learn = make_learner(tmp_path)
    pcts = []
    learn.add_cb(Callback(before_batch=lambda cb: pcts.append(train_pct(learn, every=3)) if learn.training else None))
    quiet(learn, 'fit', 6, cbs=Annealer({'knobs.p': SchedLin(0, 1), 'knobs.n': SchedLin(0, 2)}, every=3))
    train = learn.knobs.train()
    assert [s['p'] for s in train] == [0.]*12 + [.5]*12
    assert [s['n'] for s in train] == [0.]*12 + [1.]*12
    assert pcts == [0.]*12 + [.5]*12

def test_tuple_values(tmp_path):
    learn = make_learner(tmp_path)
    quiet(learn, 'fit', 2, cbs=Annealer({'knobs.p': (SchedLin(0, 1), .9), 'knobs.n': lambda pct: (1, 1+round(8*pct))}))
    train = learn.knobs.train()
    assert train[4]['p'] == (.5, .9) and train[4]['n'] == (1, 5)
    assert all(isinstance(s['p'], tuple) for s in train)

def test_constant_value_is_set_then_restored(tmp_path):
    learn = make_learner(tmp_path)
    quiet(learn, 'fit', 1, cbs=Annealer({'knobs.p': .7}))
    assert {s['p'] for s in learn.knobs.train()} == {.7} and learn.knobs.p == 0.

def test_nested_attribute(tmp_path):
    learn = make_learner(tmp_path)
    learn.knobs.fill = type('Fill', (), {})(); learn.knobs.fill.alpha = 1.
    seen = []
    learn.add_cb(Callback(before_batch=lambda cb: seen.append(learn.knobs.fill.alpha) if learn.training else None))
    quiet(learn, 'fit', 1, cbs=Annealer({'knobs.fill.alpha': SchedLin(0, 1)}))
    assert seen == [0, .25, .5, .75] and learn.knobs.fill.alpha == 1.

# ---------------------------------------------------------------- other optimizers and precisions

def test_optim_wrapper(tmp_path):
    learn = make_learner(tmp_path, opt_func=partial(OptimWrapper, opt=torch.optim.SGD))
    ann = Annealer({'knobs.p': SchedLin(0, 1), 'bs': SchedLin(8, 40)}, every={'bs': 1}, lr_scale='linear')
    quiet(learn, 'fit_one_cycle', 2, 1e-2, cbs=ann)
    train = learn.knobs.train()
    assert [s['p'] for s in train] == pytest.approx([exact_pct(s['epoch'], 2, s['iter'], s['n_iter']) for s in train])
    assert [s['bs'] for s in train] == [8]*8 + [24]*3
    one_cycle = combined_cos(.25, 1e-2/25, 1e-2, 1e-2/1e5)
    assert learn.recorder.lrs == pytest.approx([one_cycle(s['pct'])*s['bs']/16 for s in train], rel=1e-9)
    assert learn.opt.opt.param_groups[0]['lr'] == pytest.approx(one_cycle(train[-1]['pct']), rel=1e-9)
    assert learn.dls.train.bs == 16 and learn.knobs.p == 0.

@pytest.mark.parametrize('to', ['to_fp16', 'to_bf16'])
def test_mixed_precision(tmp_path, to):
    """On a machine without CUDA, fastai's `MixedPrecision` (autocast 'cuda' only) disables autocast and the grad
    scaler with a warning and runs in fp32; there this checks the interplay with its callbacks: its `before_step`
    (order 10, after the annealer's lr scaling) steps through `GradScaler`, and the values still follow the schedule."""
    learn = getattr(make_learner(tmp_path), to)()
    if torch.cuda.is_available(): learn.dls.cuda(); learn.model.cuda()
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*CUDA is not available.*')
        quiet(learn, 'fit', 2, 1e-2, cbs=Annealer({'knobs.p': SchedLin(0, 1), 'bs': SchedLin(16, 48)}, lr_scale='sqrt'))
    assert any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
    train = learn.knobs.train()
    assert [s['p'] for s in train] == pytest.approx([e/2 + i/(n*2) for e,i,n in
                                                     ((s['epoch'], s['iter'], s['n_iter']) for s in train)])
    assert [s['bs'] for s in train] == [16]*4 + [32]*2
    assert learn.recorder.lrs == pytest.approx([1e-2]*4 + [1e-2*math.sqrt(2)]*2)
    assert learn.opt.hypers[0]['lr'] == pytest.approx(1e-2)

# ---------------------------------------------------------------- left alone

def test_validation_untouched(tmp_path):
    learn = make_learner(tmp_path, n_valid=30, bs=16)
    ann = Annealer({'knobs.p': SchedLin(0, 1), 'knobs.n': SchedLin(1, 9), 'bs': SchedLin(16, 32)})
    quiet(learn, 'fit', 4, cbs=ann)
    train, valid = learn.knobs.train(), learn.knobs.valid()
    assert len(valid) == 4*2
    for e in range(4):
        last = [s for s in train if s['epoch'] == e][-1]
        assert {(s['p'], s['n']) for s in valid if s['epoch'] == e} == {(last['p'], last['n'])}
    assert {s['bs'] for s in valid} == {16} and [s['len'] for s in valid] == [16, 14]*4
    assert [s['bs'] for s in train if s['iter'] == 0] == [16, 20, 24, 28]
    assert learn.dls.valid.bs == 16
    assert all(len(v) == len(train) for v in ann.hist.values()) and len(learn.recorder.lrs) == len(train)

def test_lr_find_get_preds_validate_leave_it_alone(tmp_path):
    learn = make_learner(tmp_path,
                         cbs=[Annealer({'knobs.p': SchedLin(.1, .9), 'bs': SchedLin(16, 32)}, lr_scale='linear')])
    quiet(learn, 'fit', 2, 1e-2)
    hist = {k: list(v) for k,v in learn.annealer.hist.items()}
    assert len(hist['knobs.p']) == 4 + 3
    learn.knobs.seen = []
    with learn.no_bar(): learn.lr_find(num_it=10, show_plot=False)
    lr_find_batches = len(learn.knobs.train())
    assert lr_find_batches >= 6
    assert {s['p'] for s in learn.knobs.seen} == {0.} and {s['bs'] for s in learn.knobs.seen} == {16}
    assert len(learn.recorder.lrs) == lr_find_batches  # lr_find's lrs, unscaled: exponential from 1e-7
    assert learn.recorder.lrs[0] == pytest.approx(1e-7)
    with learn.no_bar():
        learn.get_preds(); learn.get_preds(ds_idx=0); learn.validate()
    assert {s['p'] for s in learn.knobs.seen} == {0.} and {s['bs'] for s in learn.knobs.seen} == {16}
    assert learn.annealer.hist == hist
    assert (learn.knobs.p, learn.dls.train.bs, learn.dls.valid.bs) == (0., 16, 16)
    assert learn.opt.hypers[0]['lr'] == pytest.approx(1e-2)

# ---------------------------------------------------------------- restoring

class CancelAt(Callback):
    "Raise `exc` at batch `iter` of epoch `epoch`"
    order = 20
    def __init__(self, epoch, iter, exc=CancelFitException): self.at,self.exc = (epoch, iter),exc
    def after_step(self):
        if (self.epoch, self.iter) == self.at: raise self.exc()

def test_restored_after_fit_and_after_cancel(tmp_path):
    learn = make_learner(tmp_path)
    learn.knobs.p, learn.knobs.n = .25, 'three'
    ann = Annealer({'knobs.p': SchedLin(0, 1), 'knobs.n': SchedLin(1, 9), 'bs': SchedLin(8, 20)}, lr_scale='linear')
    quiet(learn, 'fit', 3, 1e-2, cbs=[ann, CancelAt(1, 1)])
    train = learn.knobs.train()
    assert len(train) == 8 + 2 and train[-1]['n'] != 'three' and train[-1]['bs'] == 12  # it was annealing
    assert learn.recorder.lrs[-1] == pytest.approx(1e-2*12/16)
    assert (learn.knobs.p, learn.knobs.n, learn.dls.train.bs) == (.25, 'three', 16)
    assert learn.opt.hypers[0]['lr'] == pytest.approx(1e-2)
    assert len(ann.hist['knobs.p']) == len(train)
    quiet(learn, 'fit', 3, 1e-2, cbs=ann)
    assert (learn.knobs.p, learn.knobs.n, learn.dls.train.bs) == (.25, 'three', 16)

def test_restored_at_once_after_an_error(tmp_path):
    "fastai runs no `after_fit` after an error; the annealer, attached to the learner, has put everything back by then"
    learn = make_learner(tmp_path)
    ann = Annealer({'knobs.p': SchedLin(0, 1), 'bs': SchedLin(8, 20)}, lr_scale='linear')   # bs 8, 12, 16
    learn.add_cb(ann)
    with pytest.raises(RuntimeError, match='boom'):
        quiet(learn, 'fit', 3, 1e-2, cbs=CancelAt(1, 1, partial(RuntimeError, 'boom')))
    last = learn.knobs.train()[-1]
    assert last['p'] != 0. and last['bs'] == 12   # what the error interrupted
    assert (learn.knobs.p, learn.dls.train.bs) == (0., 16) and learn.opt.hypers[0]['lr'] == pytest.approx(1e-2)
    assert '_with_events' not in vars(learn)
    ann.restore()   # nothing left to put back: a no-op
    assert (learn.knobs.p, learn.dls.train.bs) == (0., 16)
    learn.knobs.seen = []
    quiet(learn, 'fit', 2, 1e-2)   # and the next fit starts from the originals
    assert learn.knobs.train()[0]['p'] == 0. and learn.knobs.train()[0]['bs'] == 8
    assert (learn.knobs.p, learn.dls.train.bs) == (0., 16)

def test_restored_at_once_after_a_get_preds_inside_the_fit(tmp_path):
    """A callback that runs `get_preds` during the fit makes fastai call `before_fit` and `after_fit` of every callback
    in the middle of it; that neither restores the annealed values early nor disarms the restoring of a later stop"""
    learn = make_learner(tmp_path)
    ann = Annealer({'knobs.p': SchedLin(0, 1), 'bs': SchedLin(8, 20)})   # bs 8, 12, 16
    learn.add_cb(ann)
    seen = []
    def preds(c):
        if c.epoch == 0 and not seen:  # get_preds itself runs `after_epoch`: once is enough
            seen.append(None)
            c.learn.get_preds()
            seen.append((learn.knobs.p, learn.dls.train.bs, '_with_events' in vars(learn)))
    with pytest.raises(KeyboardInterrupt):
        quiet(learn, 'fit', 3, 1e-2, cbs=[Callback(after_epoch=preds), CancelAt(1, 1, KeyboardInterrupt)])
    assert seen[1][0] != 0. and seen[1][1:] == (8, True)   # still the fit's values, still guarded
    assert learn.knobs.train()[-1]['bs'] == 12
    assert (learn.knobs.p, learn.dls.train.bs) == (0., 16) and '_with_events' not in vars(learn)

def test_restore_puts_back_at_once(tmp_path):
    "`restore()` called during a fit (by hand, or by the guard) puts back the attributes, batch size and lr"
    learn = make_learner(tmp_path)
    ann = Annealer({'knobs.p': SchedLin(0, 1), 'bs': SchedLin(8, 20)}, lr_scale='linear')
    got = {}
    def mid(c):
        if c.training and c.epoch == 1 and c.iter == 1:
            got['during'] = (learn.knobs.p, learn.dls.train.bs, learn.opt.hypers[0]['lr'])
            ann.restore()
            got['after'] = (learn.knobs.p, learn.dls.train.bs, learn.opt.hypers[0]['lr'])
            raise CancelFitException()
    quiet(learn, 'fit', 3, 1e-2, cbs=[ann, Callback(after_step=mid)])
    assert got['during'][0] != 0. and got['during'][1:] == (12, pytest.approx(1e-2*12/16))
    assert got['after'] == (0., 16, pytest.approx(1e-2))

def test_start_epoch_resumes(tmp_path):
    scheds = lambda: Annealer({'knobs.p': SchedCos(0, 1), 'knobs.n': SchedLin(0, 6), 'bs': SchedLin(8, 32)},
                              every={'knobs.n': 2})
    full = make_learner(tmp_path)
    quiet(full, 'fit', 6, cbs=scheds())
    resumed = make_learner(tmp_path)
    quiet(resumed, 'fit', 6, cbs=scheds(), start_epoch=3)
    key = lambda s: (s['epoch'], s['iter'], s['p'], s['n'], s['bs'])
    want = [key(s) for s in full.knobs.train() if s['epoch'] >= 3]
    got = [key(s) for s in resumed.knobs.train()]
    assert len(got) > 0 and got == want
    assert got[0][2] == pytest.approx(SchedCos(0, 1)(.5)) and got[0][3] == 2. and got[0][4] == 20

# ---------------------------------------------------------------- batch size

def test_batch_size_ramp_and_batch_counts(tmp_path):
    learn = make_learner(tmp_path, n_train=600, bs=30)
    ann = Annealer({'bs': SchedLin(30, 30 + 5*6)}, every=2)
    quiet(learn, 'fit', 6, cbs=ann)
    train = learn.knobs.train()
    per_epoch = [[s for s in train if s['epoch'] == e] for e in range(6)]
    assert [ep[0]['bs'] for ep in per_epoch] == [30, 30, 40, 40, 50, 50]
    assert [len(ep) for ep in per_epoch] == [20, 20, 15, 15, 12, 12]
    assert [ep[0]['n_iter'] for ep in per_epoch] == [20, 20, 15, 15, 12, 12]
    assert all(s['len'] == s['bs'] for s in train)
    assert ann.hist['bs'] == [s['bs'] for s in train] and learn.dls.train.bs == 30

def test_batch_size_rounds_and_partial_last_batch(tmp_path):
    learn = make_learner(tmp_path, n_train=100, bs=10)
    quiet(learn, 'fit', 2, cbs=Annealer({'bs': lambda pct: 29.6 + 10*pct}))   # 29.6 -> 30, 34.6 -> 35
    train = learn.knobs.train()
    assert [s['len'] for s in train] == [30, 30, 30, 10, 35, 35, 30]

@pytest.mark.parametrize('drop_last', [False, True])
def test_pct_train_and_one_cycle_follow_changing_batch_counts(tmp_path, drop_last):
    learn = make_learner(tmp_path, n_train=200, bs=16, drop_last=drop_last)
    quiet(learn, 'fit_one_cycle', 4, 1e-2, cbs=Annealer({'bs': SchedLin(16, 80)}))   # 16, 32, 48, 64
    train = learn.knobs.train()
    n_iters = [len([s for s in train if s['epoch'] == e]) for e in range(4)]
    assert n_iters == ([12, 6, 4, 3] if drop_last else [13, 7, 5, 4])
    for s in train:
        assert s['n_iter'] == n_iters[s['epoch']]
        assert s['pct'] == pytest.approx(s['epoch']/4 + s['iter']/(s['n_iter']*4), abs=1e-12)
    assert learn.pct_train == pytest.approx(1.)   # the last epoch ends exactly at the end of training
    one_cycle = combined_cos(.25, 1e-2/25, 1e-2, 1e-2/1e5)
    assert learn.recorder.lrs == pytest.approx([one_cycle(s['pct']) for s in train], rel=1e-9)
    assert learn.recorder.lrs[-1] == pytest.approx(one_cycle(1 - 1/(n_iters[-1]*4)), rel=1e-9)
    assert max(learn.recorder.lrs) == pytest.approx(1e-2, rel=.05)  # peak reached near pct .25, at epoch 1

@pytest.mark.parametrize('lr_scale,ref_bs,ratio', [('linear', None, lambda r: r), ('sqrt', None, math.sqrt),
                                                   ('linear', 8, lambda r: r), ('none', None, lambda r: 1.)])
def test_lr_scaling(tmp_path, lr_scale, ref_bs, ratio):
    learn = make_learner(tmp_path, bs=16)
    seen_lr = []
    class StepProbe(Callback):
        order = 30   # sees the lr the optimizer steps with
        def before_step(self): seen_lr.append(self.opt.hypers[0]['lr'])
    quiet(learn, 'fit', 3, 1e-2,
          cbs=[Annealer({'bs': SchedLin(16, 64)}, lr_scale=lr_scale, ref_bs=ref_bs), StepProbe()])
    bss = [s['bs'] for s in learn.knobs.train()]
    assert bss == [16]*4 + [32]*2 + [48]*2
    ref = ref_bs or 16
    assert seen_lr == pytest.approx([1e-2*ratio(bs/ref) for bs in bss], rel=1e-9)
    assert learn.recorder.lrs == pytest.approx(seen_lr, rel=1e-12)
    assert learn.opt.hypers[0]['lr'] == pytest.approx(1e-2, rel=1e-12)   # not compounded, and restored

def test_lr_set_by_someone_else_is_kept(tmp_path):
    learn = make_learner(tmp_path, bs=16)
    class SetLR(Callback):
        order = 30
        def after_step(self):
            if self.iter == 1: self.opt.set_hyper('lr', 5e-3)
    quiet(learn, 'fit', 1, 1e-2, cbs=[Annealer({'bs': 32}, lr_scale='linear'), SetLR()])
    assert learn.recorder.lrs == pytest.approx([2e-2, 5e-3])   # scaled at both steps; then SetLR's value
    assert learn.opt.hypers[0]['lr'] == pytest.approx(5e-3)    # kept, not 'restored' to 1e-2

# ---------------------------------------------------------------- records and plots

def test_recorder_and_plots(tmp_path):
    learn = make_learner(tmp_path)
    ann = Annealer({'knobs.p': SchedLin(0, 1), 'bs': SchedLin(16, 32)})
    quiet(learn, 'fit_one_cycle', 2, 1e-2, cbs=ann)
    assert set(learn.recorder.hps) == {'lr', 'mom', 'knobs.p', 'bs'}
    assert learn.recorder.hps['bs'] == [16]*4 + [24]*3
    plt.close('all')
    learn.recorder.plot_anneal()
    assert len(plt.gcf().axes) == 3 and [a.get_title() for a in plt.gcf().axes] == ['lr', 'knobs.p', 'bs']
    learn.recorder.plot_sched()
    assert len(plt.gcf().axes) == 4
    plt.close('all')
    learn2 = make_learner(tmp_path, cbs=[ann])
    quiet(learn2, 'fit', 1)
    assert set(learn2.recorder.hps) == {'lr', 'knobs.p', 'bs'} and len(learn2.recorder.hps['lr']) == 4
    learn2.annealer.plot(with_lr=False)
    assert [a.get_title() for a in plt.gcf().axes] == ['knobs.p', 'bs']
    plt.close('all')

# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize('kwargs,exc,msg', [
    (dict(scheds=[('knobs.p', 1)]), TypeError, 'scheds must be a non-empty dict'),
    (dict(scheds={}), TypeError, 'scheds must be a non-empty dict'),
    (dict(scheds={'p': 1}), ValueError, "scheds key 'p' must be 'bs'"),
    (dict(scheds={'knobs.': 1}), ValueError, "scheds key 'knobs.'"),
    (dict(scheds={'lr': SchedLin(0, 1)}), ValueError, 'ParamScheduler'),
    (dict(scheds={'knobs.p': {'lo': 1}}), TypeError, r"scheds\['knobs.p'\] must be a constant"),
    (dict(scheds={'knobs.p': object()}), TypeError, r"scheds\['knobs.p'\] must be a constant"),
    (dict(scheds={'bs': 0}), ValueError, r"scheds\['bs'\] gives 0; batch sizes must be >= 1"),
    (dict(scheds={'bs': 'big'}), ValueError, r"scheds\['bs'\] must be a number"),
    (dict(scheds={'knobs.p': 1}, every=0), ValueError, 'every must be an int >= 1 or None, got 0'),
    (dict(scheds={'knobs.p': 1}, every=1.5), ValueError, 'every must be an int >= 1'),
    (dict(scheds={'knobs.p': 1}, every={'knobs.p': -1}), ValueError, r"every\['knobs.p'\] must be an int >= 1"),
    (dict(scheds={'knobs.p': 1}, every={'knobs.q': 2}), ValueError,
     "every has key 'knobs.q', which is not a key of scheds"),
    (dict(scheds={'knobs.p': 1}, steps=0), ValueError, 'steps must be an int >= 1'),
    (dict(scheds={'bs': 32}, lr_scale='quadratic'), ValueError,
     r"lr_scale must be one of \('none', 'linear', 'sqrt'\)"),
    (dict(scheds={'knobs.p': 1}, lr_scale='linear'), ValueError, "lr_scale='linear' needs a 'bs' key"),
    (dict(scheds={'bs': 32}, ref_bs=0), ValueError, 'ref_bs must be an int >= 1'),
])
def test_bad_arguments(kwargs, exc, msg):
    with pytest.raises(exc, match=msg): Annealer(**kwargs)

class Early(Callback):
    order = -6
    def __init__(self): self.p = 0.

@pytest.mark.parametrize('scheds,exc,msg', [
    ({'knobz.p': .5}, ValueError,
     r"key 'knobz.p': the learner has no callback named 'knobz'; its callbacks are "
     r"\['train_eval', 'recorder', 'cast_to_tensor', 'knobs'"),
    ({'knobs.q': .5}, AttributeError,
     r"key 'knobs.q': knobs \(Knobs\) has no attribute 'q'; it has \['n', 'p', 'seen'\]"),
    ({'knobs.model': .5}, AttributeError, "has no attribute 'model'"),   # a learner attribute, not the callback's
    ({'early.p': .5}, ValueError, r"callback 'early' has order -6, but the annealer \(order -5\) must run before"),
    ({'bs': SchedLin(16, 160)}, ValueError,
     r"batch size 88 at epoch 2 \(pct 0.5\), but the training set has only 64 items"),
    ({'bs': SchedLin(16, -16)}, ValueError,
     r"scheds\['bs'\] at epoch 2 \(pct 0.5\) gives 0.0; batch sizes must be >= 1"),
    ({'bs': lambda pct: float('nan')}, ValueError, r"scheds\['bs'\] at epoch 0 \(pct 0\) must be a number"),
])
def test_bad_keys_and_batch_sizes_fail_at_before_fit(tmp_path, scheds, exc, msg):
    learn = make_learner(tmp_path, cbs=[Early()])
    with pytest.raises(exc, match=msg): quiet(learn, 'fit', 4, cbs=Annealer(scheds))
    assert learn.knobs.seen == [] and (learn.knobs.p, learn.dls.train.bs) == (0., 16)

def test_get_preds_skips_the_annealer_entirely(tmp_path):
    learn = make_learner(tmp_path, cbs=[Annealer({'knobs.p': SchedLin(0, 1)})])
    learn.remove_cb(learn.knobs)   # the key no longer resolves: only a fit should complain
    with learn.no_bar(): preds, _ = learn.get_preds()
    assert preds.shape == (20, 1)
    with pytest.raises(ValueError, match="no callback named 'knobs'"): quiet(learn, 'fit', 1)
