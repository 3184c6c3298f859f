"""Robustness of the callbacks: `export` and `load_learner`, resuming with `start_epoch`, and faults in the middle of
an epoch."""
import copy, random, warnings

import torch
import pytest
from torch import nn
import fastai.callback.progress  # noqa: F401 (adds Learner.no_bar)
from torch.utils.data import TensorDataset
from fastai.basics import (Learner, DataLoaders, TfmdDL, Callback, CrossEntropyLossFlat, CancelFitException,
                           CancelEpochException, CancelBatchException, set_seed, load_learner)
from fastai.callback.schedule import SchedLin, SchedCos
from fastai.callback.tracker import SaveModelCallback
from fastai.data.block import DataBlock, TransformBlock, CategoryBlock
from fastai.data.transforms import IndexSplitter, Normalize
from fastai.layers import ResBlock
from fastai.vision.core import TensorImage

from helpers import rows, quiet, cb, AUGMENTATIONS
from fastai_sprinkles.sprinkles import ProgressiveSprinkles
from fastai_sprinkles.anneal import Annealer
from fastai_sprinkles.cutmix import CutMix
from fastai_sprinkles.saliency import SaliencyHook
from fastai_sprinkles.keep import KeepCutout, KeepCutMix

torch.set_num_threads(1)

N_CLS, NAMES = 4, list('abcd')
N_TRAIN, N_VALID, BS = 48, 16, 12

# ---------------------------------------------------------------- helpers

def images(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = N_TRAIN + N_VALID
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, N_CLS, (n,), generator=g)

def block_dls(seed=0, bs=BS):
    "A DataBlock of random 3x16x16 `TensorImage`s with `Normalize`, so that `predict` and `export` work"
    X, lab = images(seed)
    db = DataBlock(blocks=(TransformBlock, CategoryBlock(vocab=NAMES)), get_x=lambda i: TensorImage(X[i]),
                   get_y=lambda i: NAMES[lab[i]], splitter=IndexSplitter(list(range(N_TRAIN, N_TRAIN + N_VALID))),
                   batch_tfms=Normalize.from_stats([.1]*3, [.9]*3))
    return db.dataloaders(list(range(N_TRAIN + N_VALID)), bs=bs, num_workers=0)

def tensor_dls(seed=0, bs=BS):
    "Plain `TfmdDL`s of the same images, the training one shuffled"
    X, y = images(seed)
    return DataLoaders(TfmdDL(TensorDataset(X[:N_TRAIN], y[:N_TRAIN]), bs=bs, shuffle=True, num_workers=0),
                       TfmdDL(TensorDataset(X[N_TRAIN:], y[N_TRAIN:]), bs=bs, num_workers=0))

def tiny_net(seed=0):
    "A small CNN with BatchNorm, dropout and a residual block (the early head of `SaliencyHook('early')` goes after it)"
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), ResBlock(1, 8, 8),
                         nn.Dropout(.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, N_CLS))

def n_hooks(model):
    "Hooks registered on any module of `model`"
    kinds = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks', '_backward_pre_hooks')
    return sum(len(getattr(m, k, {})) for m in model.modules() for k in kinds)

def modes(model): return [m.training for m in model.modules()]

def same_state(a, b):
    "Two state dicts (or modules) hold bit-identical tensors"
    a, b = (o.state_dict() if isinstance(o, nn.Module) else o for o in (a, b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

class Spy(Callback):
    "Keep, for every training batch, what the schedules gave: the sprinkles' values, the batch size and the step's lr"
    order = 1
    def __init__(self): self.rows = []
    def before_batch(self):
        if not self.training: return
        sp = self.learn.progressive_sprinkles
        self.rows.append(dict(epoch=self.epoch, iter=self.iter, p=sp.p, size=sp.size, bs=self.dl.bs,
                              len=len(self.xb[0])))
    def after_step(self): self.rows[-1]['lr'] = [h['lr'] for h in self.opt.hypers]

# ---------------------------------------------------------------- export and load_learner

def _cfg_annealer():
    return [ProgressiveSprinkles(p=.5, n=3, size=.2),
            Annealer({'progressive_sprinkles.p': SchedLin(0, 1), 'bs': SchedLin(8, 16)}, lr_scale='sqrt')]

EXPORT_CONFIGS = {  # each augmentation of the registry, and the other callbacks
    **AUGMENTATIONS,
    'sprinkles': lambda: [ProgressiveSprinkles(fill='mean')],
    'annealer': _cfg_annealer,
    'saliency_early_keep_cutmix': lambda: [SaliencyHook('early'), KeepCutMix()],
}

@pytest.mark.parametrize('name', list(EXPORT_CONFIGS))
def test_export_load_learner_and_predict(tmp_path, name):
    """After training with the callback, `export` + `load_learner` give a learner whose `predict` and `get_preds` equal
    the trained learner's and a plain learner's on the same model: the callbacks that travel with it do nothing at
    inference, and no hook is left on the model"""
    dls = block_dls()
    cbs = EXPORT_CONFIGS[name]()
    learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=cbs, path=tmp_path)
    assert n_hooks(learn.model) == 0
    set_seed(0)
    quiet(learn, 'fit', 2, 1e-2)
    assert n_hooks(learn.model) == 0
    items = list(range(N_TRAIN, N_TRAIN + N_VALID))
    want = quiet(learn, 'get_preds', dl=dls.test_dl(items))[0]
    want_one = quiet(learn, 'predict', items[0])
    learn.export('export.pkl')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        loaded = load_learner(tmp_path/'export.pkl')
    assert {type(c) for c in cbs} <= {type(c) for c in loaded.cbs}  # the callbacks travel with the learner
    assert all(c.learn is loaded for c in loaded.cbs)
    assert n_hooks(loaded.model) == 0
    got = quiet(loaded, 'get_preds', dl=loaded.dls.test_dl(items))[0]
    got_one = quiet(loaded, 'predict', items[0])
    assert torch.equal(got, want)
    assert got_one[0] == want_one[0] and torch.equal(got_one[1], want_one[1]) and torch.equal(got_one[2], want_one[2])
    plain = Learner(loaded.dls, copy.deepcopy(loaded.model), loss_func=CrossEntropyLossFlat())
    assert torch.equal(quiet(plain, 'get_preds', dl=plain.dls.test_dl(items))[0], got)
    assert torch.equal(quiet(plain, 'predict', items[0])[2], got_one[2])
    assert n_hooks(loaded.model) == 0 and n_hooks(learn.model) == 0
    if name == 'annealer':  # exported after the fit: the annealed attribute and the batch size are the original ones
        assert loaded.progressive_sprinkles.p == .5 and loaded.dls.train.bs == BS and learn.dls.train.bs == BS
    if name == 'saliency_early_keep_cutmix':  # the early head travels too, and is not part of the model
        h0, h1 = learn.saliency_hook.head, loaded.saliency_hook.head
        assert h1 is not None and same_state(h0, h1)
        assert not any(p is q for p in h1.parameters() for q in loaded.model.parameters())
    quiet(learn, 'fit', 1, 1e-2)  # the exported learner trains on
    assert n_hooks(learn.model) == 0

@pytest.mark.parametrize('mode', ['full', 'lowres', 'early'])
def test_saliency_hook_on_fastai_image_batches(mode):
    """The usual fastai vision batches (`TensorImage` inputs, `TensorCategory` targets, as from `imagenette_dls`) train
    with every mode of the hook: fastai's tensor subclasses must not meet in the `gather` of the target logits"""
    dls = block_dls()
    x, y = dls.one_batch()
    assert type(x) is TensorImage and type(y).__name__ == 'TensorCategory'
    hook = SaliencyHook(mode)
    learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=[hook, KeepCutout(size=.3)])
    quiet(learn, 'fit', 1)
    s = hook.compute(x, y)
    assert s.shape == (BS, 16, 16) and bool(torch.isfinite(s).all()) and n_hooks(learn.model) == 0

# ---------------------------------------------------------------- resuming with start_epoch

def sprinkles_cb(**kw):
    return ProgressiveSprinkles(p=SchedLin(0, 1), n=(1, SchedLin(2, 10)), size=(.05, SchedLin(.1, .3)),
                                opacity=SchedLin(1., .5), **kw)

@pytest.mark.parametrize('kw', [{}, dict(every=2), dict(steps=3)], ids=['per_batch', 'every2', 'steps3'])
def test_resume_progressive_sprinkles(kw):
    "`fit(4, start_epoch=2)` gives at each batch the values of epochs 2 and 3 of the uninterrupted `fit(4)`"
    keys = ('pct_train', 'pct', 'p', 'n', 'size', 'opacity')
    full, sp = Learner(tensor_dls(), tiny_net(), loss_func=CrossEntropyLossFlat()), sprinkles_cb(**kw)
    quiet(full, 'fit', 4, cbs=sp)
    resumed, sp2 = Learner(tensor_dls(), tiny_net(), loss_func=CrossEntropyLossFlat()), sprinkles_cb(**kw)
    quiet(resumed, 'fit', 4, cbs=sp2, start_epoch=2)
    nb = N_TRAIN//BS
    assert len(rows(sp.hist)) == 4*nb and len(rows(sp2.hist)) == 2*nb
    assert [{k: h[k] for k in keys} for h in rows(sp2.hist)] == [{k: h[k] for k in keys} for h in rows(sp.hist)[2*nb:]]
    assert rows(sp2.hist)[0]['pct'] == (.5 if kw.get('steps') is None else 1/3)

def annealed():
    "Sprinkles whose p and size an Annealer ramps, with a batch-size ramp that scales the lr"
    return [ProgressiveSprinkles(p=0., n=3, size=.2),
            Annealer({'progressive_sprinkles.p': SchedCos(0, 1), 'progressive_sprinkles.size': SchedLin(.1, .3),
                      'bs': SchedLin(8, 20)}, every={'progressive_sprinkles.size': 2}, lr_scale='linear')]

def test_resume_annealer():
    "The values the Annealer sets, the batch sizes and the scaled lr of a resumed fit are the uninterrupted one's"
    full = Learner(tensor_dls(), tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=[*annealed(), Spy()])
    quiet(full, 'fit', 4, 1e-2)
    resumed = Learner(tensor_dls(), tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=[*annealed(), Spy()])
    quiet(resumed, 'fit', 4, 1e-2, start_epoch=2)
    want = [r for r in full.spy.rows if r['epoch'] >= 2]
    assert len(resumed.spy.rows) == len(want) > 0 and resumed.spy.rows == want
    assert [r['bs'] for r in want if r['iter'] == 0] == [14, 17]  # SchedLin(8, 20) at pct .5 and .75
    for k, v in resumed.annealer.hist.items():
        assert len(v) == len(want) and v == full.annealer.hist[k][-len(want):]
    sp = resumed.progressive_sprinkles
    assert (sp.p, sp.size, resumed.dls.train.bs) == (0., .2, BS)  # restored after the fit
    assert resumed.opt.hypers[0]['lr'] == pytest.approx(1e-2)

class KeepRNG(Callback):
    "Keep every random state at the start of epoch `at` (`restore=False`), or put kept ones back then (`restore=True`)"
    order = -20
    def __init__(self, at, states=None): self.at, self.states = at, states
    def before_epoch(self):
        if self.epoch != self.at: return
        if self.states is None:
            self.states = (torch.get_rng_state(), random.getstate(), copy.deepcopy(self.dls.train.rng))
        else:
            t, r, dl_rng = self.states
            torch.set_rng_state(t); random.setstate(r); self.dls.train.rng = copy.deepcopy(dl_rng)

def test_resume_from_save_model_callback(tmp_path):
    """Train with `SaveModelCallback(every_epoch=True, with_opt=True)`, load the epoch-1 file into a fresh learner and
    `fit(4, start_epoch=2)`: the schedules, batch sizes and lr are those of the uninterrupted run; with the random
    states of epoch 2 put back, the final weights are bit-identical to the uninterrupted run's"""
    set_seed(0)
    snaps = {}
    keep = KeepRNG(2)
    full = Learner(tensor_dls(), tiny_net(), loss_func=CrossEntropyLossFlat(), path=tmp_path, cbs=[*annealed(), Spy()])
    quiet(full, 'fit', 4, 1e-2, cbs=[SaveModelCallback(every_epoch=True, with_opt=True), keep,
                                    cb(after_epoch=lambda c: snaps.setdefault(c.epoch,
                                                                              copy.deepcopy(c.model.state_dict())))])
    assert sorted(p.name for p in (tmp_path/'models').glob('*.pth')) == [f'model_{e}.pth' for e in range(4)]
    fresh = Learner(tensor_dls(), tiny_net(seed=1), loss_func=CrossEntropyLossFlat(), path=tmp_path,
                    cbs=[*annealed(), Spy()])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fresh.load('model_1', with_opt=True)
    assert same_state(fresh.model.state_dict(), snaps[1])
    quiet(fresh, 'fit', 4, 1e-2, start_epoch=2, cbs=KeepRNG(2, keep.states))
    want = [r for r in full.spy.rows if r['epoch'] >= 2]
    assert fresh.spy.rows == want and len(want) > 0
    for k, v in fresh.annealer.hist.items(): assert v == full.annealer.hist[k][-len(want):]
    assert same_state(fresh.model, full.model)
    assert (fresh.progressive_sprinkles.p, fresh.dls.train.bs) == (0., BS)

# ---------------------------------------------------------------- faults in the middle of an epoch

def all_cbs():
    "Every callback at once: sprinkles, an Annealer (batch-size ramp, lr scaling), CutMix, an early head, KeepCutout"
    return [ProgressiveSprinkles(p=.5, n=3, size=.15),
            Annealer({'progressive_sprinkles.p': SchedLin(0, 1), 'keep_cutout.size': SchedLin(.2, .4),
                      'bs': SchedLin(8, 16)}, lr_scale='linear'),
            CutMix(alpha=.5), SaliencyHook('early'), KeepCutout(size=.3)]

def fault(exc, event, at=3):
    "A callback, after all the augmentations, that raises `exc` at `event` of the `at`-th training batch"
    n = [0]
    def f(c):
        if not c.training: return
        n[0] += 1
        if n[0] == at: raise exc()
    return cb(1, **{event: f})

LR = 1e-2

def interrupted(exc, event, cbs=all_cbs, seed=0):
    """A learner with `cbs` whose `fit(2)` was stopped by `exc` at the 3rd training batch, its loss function, and
    whether `exc` left `fit`"""
    set_seed(seed)
    lf = CrossEntropyLossFlat()
    learn = Learner(tensor_dls(), tiny_net(), loss_func=lf, lr=LR, cbs=cbs())
    try: quiet(learn, 'fit', 2, cbs=fault(exc, event))
    except (KeyboardInterrupt, CancelBatchException) as e:
        assert type(e) is exc
        return learn, lf, True
    return learn, lf, False

FAULTS = [CancelFitException, CancelEpochException, CancelBatchException, KeyboardInterrupt]
# fastai has no event for these: they leave `fit` without `after_cancel_*`/`after_fit` (a CancelBatchException raised
# in `after_batch` is outside the `try` that catches it)
ESCAPES = {(KeyboardInterrupt, 'before_batch'), (KeyboardInterrupt, 'after_batch'),
           (CancelBatchException, 'after_batch')}

def check_restored(learn, lf, hooks0):
    "The loss function, batch size, annealed attributes, lr and hooks are those from before the fit"
    assert learn.loss_func is lf
    assert learn.dls.train.bs == BS
    assert learn.progressive_sprinkles.p == .5 and learn.keep_cutout.size == .3
    assert [h['lr'] for h in learn.opt.hypers] == [LR]*len(learn.opt.hypers)
    assert n_hooks(learn.model) == hooks0
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled()
    assert '_with_events' not in vars(learn)  # the fit's guard is gone: the learner pickles (`export`) as before

@pytest.mark.parametrize('event', ['before_batch', 'after_batch'])
@pytest.mark.parametrize('exc', FAULTS, ids=lambda e: e.__name__)
def test_fault_mid_epoch_restores_and_predicts_as_the_plain_model(exc, event):
    """A fault at the 3rd batch of a learner with every callback attached to the `Learner` itself (so `fit` does not
    take them off: see the next test for callbacks passed to `fit`).

    For the Cancel* exceptions fastai handles (`after_cancel_*`, `after_fit` run), everything is back at once: the loss
    function passed, the training batch size, the attributes the Annealer ramps, the lr it scaled, the hooks; the modes
    of the model's modules are those of a learner without the callbacks stopped the same way.

    For the exceptions fastai has no event for (a KeyboardInterrupt, or a CancelBatchException raised in `after_batch`),
    fastai calls no callback; the `Restoring` callbacks (Annealer, SaliencyHook), standing in for the learner's
    `_with_events` during the fit, put everything back as the exception leaves the epoch. Either way, the learner is
    as before the fit the moment `fit` has stopped, and its predictions equal those of a plain learner with the same
    weights."""
    learn, lf, escaped = interrupted(exc, event)
    assert escaped == ((exc, event) in ESCAPES)
    assert learn.loss_func is lf
    plain, _, plain_escaped = interrupted(exc, event, cbs=lambda: [])
    assert plain_escaped == escaped
    assert modes(learn.model) == modes(plain.model)
    assert torch.is_grad_enabled()
    if exc is CancelFitException or escaped:  # stopped at the 3rd batch
        assert len(rows(learn.progressive_sprinkles.hist)) == 3
    check_restored(learn, lf, 0)
    net = tiny_net()
    net.load_state_dict(learn.model.state_dict())
    ref = Learner(tensor_dls(), net, loss_func=CrossEntropyLossFlat())
    a, b = quiet(learn, 'get_preds', with_loss=True), quiet(ref, 'get_preds', with_loss=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    check_restored(learn, lf, 0)

@pytest.mark.parametrize('event', ['before_batch', 'after_batch'])
@pytest.mark.parametrize('exc', FAULTS, ids=lambda e: e.__name__)
def test_fault_restores_at_once_callbacks_passed_to_fit(exc, event):
    """The usual way, callbacks passed to `fit`: whatever the fault, everything is back the moment `fit` has stopped.

    `fit` takes the callbacks passed to it off the learner in a `finally`; the `Restoring` callbacks (Annealer,
    SaliencyHook) put back the batch size, the annealed attributes, the scaled lr and the armed hook at that moment,
    with no `after_fit` and before any further use of the learner."""
    set_seed(0)
    lf = CrossEntropyLossFlat()
    learn = Learner(tensor_dls(), tiny_net(), loss_func=lf, lr=LR)
    cbs = all_cbs()
    seen = {}
    def look(c):  # at the first training batch: what the callbacks changed, to show that there is something to restore
        if c.training and not seen: seen.update(bs=c.dls.train.bs, hooks=n_hooks(c.model), p=cbs[0].p)
    try: quiet(learn, 'fit', 2, cbs=cbs + [cb(1, **{event: look}), fault(exc, event)])
    except (KeyboardInterrupt, CancelBatchException) as e: assert type(e) is exc and (exc, event) in ESCAPES
    else: assert (exc, event) not in ESCAPES
    assert seen['bs'] != BS and seen['p'] != .5
    if event == 'before_batch': assert seen['hooks'] == 1  # the early head's hook, armed for the coming forward pass
    assert learn.cbs.map(type).filter(lambda t: t.__module__.startswith('fastai_sprinkles')) == []
    assert learn.loss_func is lf and learn.dls.train.bs == BS and n_hooks(learn.model) == 0
    assert cbs[0].p == .5 and cbs[4].size == .3
    assert [h['lr'] for h in learn.opt.hypers] == [LR]*len(learn.opt.hypers)
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled()

def transplant(src, dst):
    "Give `dst` the state training rightly carries over: weights, optimizer state, early head, the loader's shuffle"
    dst.model.load_state_dict(src.model.state_dict())
    dst.create_opt()
    dst.opt.load_state_dict(copy.deepcopy(src.opt.state_dict()))
    hs, hd = src.saliency_hook, dst.saliency_hook
    # the hook's own `EarlyHeadTrainer`, off the learner after the fault: its head and Adam
    hd._own = copy.deepcopy(hs._own)
    dst.dls.train.rng = copy.deepcopy(src.dls.train.rng)

@pytest.mark.parametrize('event', ['before_batch', 'after_batch'])
@pytest.mark.parametrize('exc', FAULTS, ids=lambda e: e.__name__)
def test_fault_leaves_no_hidden_state(exc, event):
    """After the fault, `fit` again. Comparing with a fresh learner fitted without the fault is not meaningful: the
    interrupted learner's weights, optimizer state and early head moved during the batches before the fault. The
    meaningful statement is that nothing else is left behind (a scaled lr, a batch size, an armed hook, a mixed-batch
    flag, an annealed value): a fresh learner built the same way and given that legitimate state (weights, optimizer
    state, early head and its optimizer, the loader's shuffling state) fits, under the same seed, to bit-identical
    weights, heads, annealed values and sprinkles; and afterwards everything is restored."""
    learn, lf, _ = interrupted(exc, event)
    fresh = Learner(tensor_dls(), tiny_net(seed=1), loss_func=CrossEntropyLossFlat(), lr=LR, cbs=all_cbs())
    transplant(learn, fresh)
    runs = []
    for l in (learn, fresh):
        set_seed(5)
        quiet(l, 'fit', 1)
        runs.append(l)
    a, b = runs
    assert same_state(a.model, b.model)
    assert same_state(a.saliency_hook.head, b.saliency_hook.head)
    assert a.annealer.hist == b.annealer.hist and len(a.annealer.hist['bs']) == N_TRAIN//8
    assert a.progressive_sprinkles.hist == b.progressive_sprinkles.hist
    assert a.recorder.losses == b.recorder.losses
    check_restored(learn, lf, 0)
