"Tests of `fastai_sprinkles.cutmix`: λ from the true pasted area, label mixing, the loss swap, OneOf, bad input."
import copy, warnings
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, example, strategies as st
from fastai.basics import (Learner, DataLoaders, TfmdDL, Callback, CancelFitException, CancelTrainException,
                           CrossEntropyLossFlat, BCEWithLogitsLossFlat, LabelSmoothingCrossEntropyFlat, set_seed)
from fastai.data.block import DataBlock, TransformBlock, CategoryBlock, MultiCategoryBlock
from fastai.data.transforms import IndexSplitter
from fastai.callback.mixup import CutMix as FastaiCutMix, MixUp
from fastai.callback.schedule import SchedLin
from torch.utils.data import TensorDataset

from fastai_sprinkles.cutmix import cutmix, partners, mix_loss, mix_mode, CutMix, sample_lam
from fastai_sprinkles.oneof import OneOf, assign, check_ps
from fastai_sprinkles.anneal import Annealer
from fastai_sprinkles.sprinkles import ProgressiveSprinkles, BatchAugment

prop = settings(max_examples=40, deadline=None)
N_CLS, NAMES = 4, list('abcd')

# ---------------------------------------------------------------- helpers

def synth_dls(n_train=64, n_valid=24, bs=15, multi=False, seed=0):
    "A DataBlock of random 3x16x16 'images' with 4 classes (or multi-label), so that `predict` works"
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_valid
    X = torch.randn(n, 3, 16, 16, generator=g)
    if multi:
        M = torch.rand(n, N_CLS, generator=g) < .4
        get_y = lambda i: [NAMES[j] for j in range(N_CLS) if M[i, j]]
    else:
        lab = torch.randint(0, N_CLS, (n,), generator=g)
        get_y = lambda i: NAMES[lab[i]]
    db = DataBlock(blocks=(TransformBlock, MultiCategoryBlock(vocab=NAMES) if multi else CategoryBlock(vocab=NAMES)),
                   get_x=lambda i: X[i], get_y=get_y, splitter=IndexSplitter(list(range(n_train, n))))
    return db.dataloaders(list(range(n)), bs=bs, num_workers=0, drop_last=False)

def cb(order=0, **events):
    "A `Callback` made of `events`, with an `order`"
    c = Callback(**events)
    c.order = order
    return c

def tiny_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, N_CLS))

def quiet(learn, meth='fit', *args, **kwargs):
    with learn.no_bar(), learn.no_logging(): return getattr(learn, meth)(*args, **kwargs)

class Record(Callback):
    "After CutMix: keep what the model saw and what the loss did at each training batch"
    order = 1
    def __init__(self): self.rows = []
    def after_loss(self):
        if not self.training: return
        cm = self.learn.cut_mix
        self.rows.append(dict(x=self.learn.xb[0].clone(), yb=tuple(self.learn.yb), pred=self.learn.pred.detach(),
                              loss=self.learn.loss.detach(), lam=cm.lam.clone(), perm=cm.perm.clone(),
                              lf=self.learn.loss_func))

def expected_loss(kind, pred, y, lam, perm):
    "The mixed loss, computed independently of `mix_loss`"
    pred = pred.float()
    if kind == 'bce':
        w = lam[:, None].to(y.dtype)
        return F.binary_cross_entropy_with_logits(pred, w*y + (1-w)*y[perm])
    ls = {'ce': 0., 'ce_ls': .1, 'lsce': .1}[kind]
    l1 = F.cross_entropy(pred, y, reduction='none', label_smoothing=ls)
    l2 = F.cross_entropy(pred, y[perm], reduction='none', label_smoothing=ls)
    return (lam*l1 + (1-lam)*l2).mean()

LOSSES = {'ce': CrossEntropyLossFlat, 'ce_ls': partial(CrossEntropyLossFlat, label_smoothing=.1),
          'lsce': LabelSmoothingCrossEntropyFlat, 'bce': BCEWithLogitsLossFlat}

# ---------------------------------------------------------------- the pure functions: properties

@prop
@given(st.integers(1, 9), st.integers(1, 24), st.integers(1, 24), st.floats(.05, 5.), st.sampled_from([0., .5, 1.]),
       st.booleans(), st.sampled_from(['shuffle', 'roll']), st.integers(0, 2**31))
@example(8, 12, 10, 1., .5, True, 'shuffle', 0)
@example(7, 9, 16, 1., .5, False, 'roll', 1)
@example(5, 1, 24, .3, 1., True, 'roll', 2)
def test_lam_is_fraction_of_own_pixels(B, H, W, alpha, p, per_sample, pairing, seed):
    torch.manual_seed(seed)
    x = torch.rand(B, 2, H, W) + torch.arange(B).view(B, 1, 1, 1)*10  # no two images share a pixel value
    x0 = x.clone()
    res = cutmix(x, alpha, p, per_sample, pairing=pairing)
    assert torch.equal(x, x0)  # the input is never modified
    assert res.x.shape == x.shape and res.x.dtype == x.dtype and res.lam.dtype == torch.float32
    own = (res.x == x).all(1)  # (B, H, W): pixels still the image's own
    assert torch.equal(res.lam, own.float().mean((1, 2)))
    changed = ~own
    assert torch.equal(res.x.permute(0, 2, 3, 1)[changed], x[res.perm].permute(0, 2, 3, 1)[changed])  # the partner's
    assert sorted(res.perm.tolist()) == list(range(B))
    if B > 1 and p > 0:
        assert (res.perm != torch.arange(B)).all()  # nobody is its own partner
        if pairing == 'roll': assert torch.equal(res.perm, (torch.arange(B) + res.perm[0]) % B)
    b, v = res.boxes
    assert b.shape == (B, 1, 4) and v.shape == (B, 1)
    y0, x0_, y1, x1 = b[:, 0].unbind(-1)
    assert ((0 <= y0) & (y0 <= y1) & (y1 <= H) & (0 <= x0_) & (x0_ <= x1) & (x1 <= W)).all()  # in bounds
    area = ((y1-y0)*(x1-x0_)*v[:, 0]).float()
    assert torch.allclose(res.lam, 1 - area/(H*W))
    assert (res.lam[~v[:, 0]] == 1).all()
    if p == 0 or B == 1: assert res.x is x and (res.lam == 1).all()
    if not per_sample and v.any(): assert (b[v[:, 0]] == b[v[:, 0]][:1]).all()  # one box for the batch

@prop
@given(st.integers(2, 12), st.integers(2, 6), st.integers(0, 2**31))
def test_label_weights_sum_to_one(B, K, seed):
    "The effective target of the mixed loss (read from its gradient) puts λ on y, 1-λ on the partner's y"
    torch.manual_seed(seed)
    res = cutmix(torch.randn(B, 1, 8, 8), alpha=.7, p=.8)
    lam, perm = res.lam, res.perm
    y = torch.randint(0, K, (B,))
    for lf in (CrossEntropyLossFlat(reduction='sum'), LabelSmoothingCrossEntropyFlat(eps=0., reduction='sum')):
        pred = torch.zeros(B, K, requires_grad=True)
        mix_loss(lf, pred, (y,), lam, perm).backward()
        t = 1/K - pred.grad  # d(CE)/d(logits) = softmax - target, and softmax(0) = 1/K
        assert torch.allclose(t.sum(1), torch.ones(B), atol=1e-5)
        want = lam[:, None]*F.one_hot(y, K) + (1-lam[:, None])*F.one_hot(y[perm], K)
        assert torch.allclose(t, want, atol=1e-5)
    yf = F.one_hot(y, K).float()  # float targets: the targets are mixed
    pred = torch.zeros(B, K, requires_grad=True)
    mix_loss(BCEWithLogitsLossFlat(reduction='sum'), pred, (yf,), lam, perm).backward()
    t = 0.5 - pred.grad  # d(BCE)/d(logits) = sigmoid - target
    assert torch.allclose(t.sum(1), torch.ones(B), atol=1e-5)
    assert torch.allclose(t, lam[:, None]*yf + (1-lam[:, None])*yf[perm], atol=1e-5)

def test_partners():
    torch.manual_seed(0)
    for B in (2, 3, 7, 64):
        perm = partners(B)
        seen, i = [], 0
        for _ in range(B): seen.append(i); i = int(perm[i])
        assert sorted(seen) == list(range(B)) and i == 0  # one cycle through the whole batch
    assert partners(1).tolist() == [0] and partners(1, 'roll').tolist() == [0]
    ks = torch.tensor([int(partners(5, 'roll')[0]) for _ in range(2000)])  # roll: k uniform in 1..B-1
    assert set(ks.tolist()) == {1, 2, 3, 4} and (torch.bincount(ks)[1:].float()/2000 - .25).abs().max() < .05
    firsts = torch.tensor([int(partners(5)[0]) for _ in range(2000)])  # shuffle: partner uniform over the others
    assert set(firsts.tolist()) == {1, 2, 3, 4} and (torch.bincount(firsts)[1:].float()/2000 - .25).abs().max() < .05
    with pytest.raises(ValueError, match='pairing must be one of'): partners(4, 'flip')
    with pytest.raises(ValueError, match='pairing must be'): CutMix(pairing='flip')

@pytest.mark.parametrize('shuffle', [True, False])
def test_auto_pairing_follows_the_loader(shuffle):
    "'auto' rolls only when the training DataLoader shuffles; otherwise partners are drawn at random"
    x = torch.randn(96, 3, 16, 16)
    y = torch.randint(0, N_CLS, (96,))
    dls = DataLoaders(TfmdDL(TensorDataset(x[:64], y[:64]), bs=16, shuffle=shuffle),
                      TfmdDL(TensorDataset(x[64:], y[64:]), bs=16))
    rec = Record()
    learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=[CutMix(), rec])
    quiet(learn, 'fit', 3)
    rolled = [torch.equal(r['perm'], (torch.arange(16) + r['perm'][0]) % 16) for r in rec.rows]
    assert all(rolled) if shuffle else not any(rolled)

def test_p_is_the_chance_of_mixing_and_alpha_is_read_each_call():
    torch.manual_seed(0)
    x = torch.randn(4000, 1, 32, 32)
    for p in (.25, .75):
        frac = cutmix(x, 1., p).boxes.valid.float().mean().item()
        assert abs(frac - p) < 5*(p*(1-p)/4000)**.5
    # alpha -> 0: λ is 0 or 1 (half the samples get an empty box); alpha large: λ near 1/2, never an empty box
    small, large = cutmix(x, 1e-3).lam, cutmix(x, 1e4).lam  # torch's own Beta sampler gives 38% < 1/2 at 1e-3
    assert .4 < (small == 1).float().mean() < .6
    assert (large < 1).all() and (large >= 1 - 23**2/32**2).all()  # sides round(32·√½) = 23 at most

@pytest.mark.parametrize('alpha', [1e-4, 1e-3, .2, 1., 30.])
def test_sample_lam_is_beta(alpha):
    "Moments of Beta(α, α), and no atom at 1/2 for small α (torch's own Beta sampler has one)"
    torch.manual_seed(0)
    lam = sample_lam(alpha, 50_000)
    assert lam.dtype == torch.float32 and ((lam >= 0) & (lam <= 1)).all()
    assert abs(lam.mean().item() - .5) < .01 and abs(lam.var().item() - 1/(4*(2*alpha + 1))) < .005
    if alpha < .01: assert (lam == .5).float().mean() < .001

def test_dtypes_and_half_precision():
    torch.manual_seed(0)
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        x = torch.randn(6, 3, 8, 8).to(dt)
        res = cutmix(x)
        assert res.x.dtype == dt and res.lam.dtype == torch.float32
    x = torch.randn(6, 3, 8, 8).to(memory_format=torch.channels_last)
    res = cutmix(x)
    assert torch.equal(res.lam, (res.x == x).all(1).float().mean((1, 2)))
    seen = []
    yh = torch.rand(6, 4).half()
    mix_loss(lambda p, t: seen.append(t) or t.float().sum(), torch.zeros(6, 4), (yh,), res.lam, res.perm)
    assert seen[0].dtype == torch.float16  # targets keep their dtype
    lh = mix_loss(CrossEntropyLossFlat(), torch.randn(6, 4).half(), (torch.randint(0, 4, (6,)),), res.lam, res.perm)
    assert torch.isfinite(lh)

def test_several_targets_are_all_kept():
    "Every element of yb gets its partner's value; a loss of two targets sees both mixed"
    torch.manual_seed(0)
    B = 6
    res = cutmix(torch.randn(B, 1, 8, 8))
    y1, y2 = torch.randint(0, 3, (B,)), torch.rand(B, 2)
    calls = []
    def lf(pred, a, b, reduction='mean'):
        calls.append((a, b))
        l = F.cross_entropy(pred, a, reduction='none') + ((pred[:, :2] - b)**2).sum(1)
        return l if reduction == 'none' else l.mean()
    pred = torch.randn(B, 3)
    out = mix_loss(lf, pred, (y1, y2), res.lam, res.perm)
    assert torch.equal(calls[1][0], y1[res.perm]) and torch.equal(calls[1][1], y2[res.perm])
    want = (res.lam*lf(pred, y1, y2, 'none') + (1-res.lam)*lf(pred, y1[res.perm], y2[res.perm], 'none')).mean()
    assert torch.allclose(out, want)

# ---------------------------------------------------------------- in a Learner

@pytest.mark.parametrize('kind', list(LOSSES))
def test_trains_and_mixes_each_loss(kind):
    dls = synth_dls(multi=kind == 'bce')
    lf = LOSSES[kind]()
    rec = Record()
    learn = Learner(dls, tiny_net(), loss_func=lf, cbs=[CutMix(), rec], lr=1e-2)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    set_seed(0)
    quiet(learn, 'fit', 2)
    assert len(rec.rows) == 2*len(dls.train)
    assert any((r['lam'] < 1).any() for r in rec.rows)  # samples were mixed
    for r in rec.rows:
        assert r['lf'] is lf  # the loss function is never replaced
        y = r['yb'][0]
        assert torch.allclose(r['loss'], expected_loss(kind, r['pred'], y, r['lam'], r['perm']), atol=1e-5)
        assert r['yb'][0].dtype == (torch.float32 if kind == 'bce' else torch.long)  # targets are not touched
    assert learn.loss_func is lf and lf.reduction == 'mean'
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))

def test_odd_batches_and_a_batch_of_one():
    dls = synth_dls(n_train=31, bs=15)  # batches of 15, 15 and 1
    rec = Record()
    learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=[CutMix(), rec])
    quiet(learn, 'fit', 1)
    assert sorted(len(r['lam']) for r in rec.rows) == [1, 15, 15]
    one = next(r for r in rec.rows if len(r['lam']) == 1)
    assert one['lam'].tolist() == [1.] and torch.allclose(one['loss'], F.cross_entropy(one['pred'], one['yb'][0]))

def test_p0_changes_nothing():
    "With p=0 training is bit for bit the same as without the callback"
    runs = []
    for cbs in ([], [CutMix(p=0.)]):
        set_seed(1)
        dls = synth_dls()  # its shuffling generator is seeded from the global one
        losses = []
        learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(), lr=1e-2,
                        cbs=cbs + [cb(1, after_loss=lambda c: losses.append(c.learn.loss.item()) if c.training
                                      else None)])
        quiet(learn, 'fit', 1)
        runs.append((losses, [p.detach().clone() for p in learn.model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))

@pytest.mark.parametrize('multi', [False, True])
def test_predict_and_get_preds_as_without_the_callback(multi):
    dls = synth_dls(multi=multi)
    lf = BCEWithLogitsLossFlat() if multi else CrossEntropyLossFlat()
    learn = Learner(dls, tiny_net(), loss_func=lf, cbs=CutMix(), lr=1e-2)
    set_seed(0)
    quiet(learn, 'fit', 2)
    assert learn.loss_func is lf
    plain = Learner(dls, copy.deepcopy(learn.model),
                    loss_func=BCEWithLogitsLossFlat() if multi else CrossEntropyLossFlat())
    a = quiet(learn, 'get_preds', with_loss=True, with_decoded=True)
    b = quiet(plain, 'get_preds', with_loss=True, with_decoded=True)
    for u, v in zip(a, b): assert torch.equal(u, v)
    for i in (64, 70, 87):
        pa, pb = quiet(learn, 'predict', i), quiet(plain, 'predict', i)
        assert str(pa[0]) == str(pb[0]) and torch.equal(pa[2], pb[2])
    ta = quiet(learn, 'get_preds', ds_idx=0, with_loss=True)  # the training set too, unmixed
    tb = quiet(plain, 'get_preds', ds_idx=0, with_loss=True)
    assert all(torch.equal(u, v) for u, v in zip(ta, tb))

def test_validation_and_lr_find_are_untouched():
    dls = synth_dls()
    lf = CrossEntropyLossFlat()
    seen = []
    def check(cb):
        if cb.training and not hasattr(cb.learn, 'lr_finder'): return
        seen.append((cb.training, cb.learn.loss_func is lf, cb.learn.xb[0].clone()))
    cm = CutMix()
    learn = Learner(dls, tiny_net(), loss_func=lf, cbs=[cm, cb(1, after_loss=check)])
    quiet(learn, 'fit', 1)
    valid = [s for s in seen if not s[0]]
    assert len(valid) == len(dls.valid) and all(s[1] for s in valid)
    assert all(torch.equal(s[2], b[0]) for s, b in zip(valid, dls.valid))  # validation batches as loaded
    seen.clear(); cm.lam = None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        quiet(learn, 'lr_find', num_it=8, show_plot=False)
    train = [s for s in seen if s[0]]
    assert len(train) >= 4 and all(s[1] for s in train) and cm.lam is None  # lr_find: no mixing, no swap
    assert learn.loss_func is lf

def test_fp16_and_cpu_autocast_keep_dtypes():
    for multi in (False, True):
        dls = synth_dls(multi=multi)
        lf = BCEWithLogitsLossFlat() if multi else CrossEntropyLossFlat()
        rec = Record()
        learn = Learner(dls, tiny_net(), loss_func=lf, cbs=[CutMix(), rec]).to_fp16()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            quiet(learn, 'fit', 1)
        assert learn.loss_func is lf
        assert all(r['x'].dtype == torch.float32 and torch.isfinite(r['loss']) for r in rec.rows)
        assert all(r['yb'][0].dtype == (torch.float32 if multi else torch.long) for r in rec.rows)
        # reduced precision for real on the CPU: bfloat16 autocast around the forward pass and the loss
        ac = {}
        def enter(cb): ac['cm'] = torch.autocast('cpu', dtype=torch.bfloat16); ac['cm'].__enter__()
        def leave(cb): ac['cm'].__exit__(None, None, None)
        rec = Record()
        learn = Learner(dls, tiny_net(), loss_func=lf,
                        cbs=[CutMix(), cb(-1, before_batch=enter), cb(2, after_loss=leave), rec])
        quiet(learn, 'fit', 1)
        assert rec.rows[0]['pred'].dtype == torch.bfloat16
        assert all(torch.isfinite(r['loss']) and r['loss'].dtype == torch.float32 for r in rec.rows)
        assert learn.loss_func is lf

def test_same_seed_same_batches():
    runs = []
    for seed in (3, 3, 4):
        set_seed(seed)
        dls, rec = synth_dls(), Record()
        learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=[CutMix(alpha=.5, p=.7), rec])
        quiet(learn, 'fit', 1)
        runs.append(rec.rows)
    same = lambda a, b: all(torch.equal(u['x'], v['x']) and torch.equal(u['lam'], v['lam']) for u, v in zip(a, b))
    assert same(runs[0], runs[1]) and not same(runs[0], runs[2])

@pytest.mark.parametrize('exc', [CancelFitException, CancelTrainException, KeyboardInterrupt])
def test_cancel_or_interrupt_leaves_the_loss_alone(exc):
    "Training stopped mid-epoch, even by an exception fastai has no event for, leaves a learner that predicts as before"
    dls = synth_dls()
    lf = CrossEntropyLossFlat()
    rec, n = Record(), [0]
    def stop(c):
        n[0] += 1
        if n[0] == 3: raise exc()
    learn = Learner(dls, tiny_net(), loss_func=lf, cbs=[CutMix(), rec, cb(5, after_batch=stop)])
    set_seed(0)
    if exc is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt): quiet(learn, 'fit', 2)
    else: quiet(learn, 'fit', 2)
    assert len(rec.rows) >= 3 and all(r['lf'] is lf for r in rec.rows) and learn.loss_func is lf
    r = rec.rows[0]
    assert not torch.allclose(r['loss'], lf(r['pred'], *r['yb']))  # training batches had the mixed loss
    plain = Learner(dls, copy.deepcopy(learn.model), loss_func=CrossEntropyLossFlat())
    a = quiet(learn, 'get_preds', with_loss=True)
    b = quiet(plain, 'get_preds', with_loss=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert torch.equal(quiet(learn, 'predict', 70)[2], quiet(plain, 'predict', 70)[2])

def test_annealer_schedules_alpha_and_p():
    dls = synth_dls(n_train=120, bs=15)
    seen = []
    def spy(cb):
        if cb.training: seen.append((cb.learn.cut_mix.alpha, cb.learn.cut_mix.p, cb.learn.cut_mix.lam.clone()))
    learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[CutMix(alpha=1., p=0.), cb(1, after_loss=spy)])
    set_seed(0)
    quiet(learn, 'fit', 2, cbs=Annealer({'cut_mix.p': SchedLin(0., 1.), 'cut_mix.alpha': SchedLin(.5, 2.)}))
    ps = [s[1] for s in seen]
    assert ps[0] == 0 and ps == sorted(ps) and ps[-1] > .9
    assert seen[0][0] == .5 and seen[-1][0] > 1.8
    assert (seen[0][2] == 1).all() and (seen[-1][2] < 1).any()
    assert learn.cut_mix.p == 0. and learn.cut_mix.alpha == 1.

# ---------------------------------------------------------------- bad input

def test_bad_arguments_name_the_parameter():
    for kw, msg in ((dict(alpha=0.), 'alpha must'), (dict(alpha=-1.), 'alpha must'),
                    (dict(alpha=float('inf')), 'alpha must'),
                    (dict(p=-.1), 'p must be in'), (dict(p=1.5), 'p must be in'), (dict(p='1'), 'p must be in')):
        with pytest.raises(ValueError, match=msg): CutMix(**kw)
        with pytest.raises(ValueError, match=msg): cutmix(torch.zeros(2, 1, 4, 4), **kw)
    cm = CutMix()
    # set later, as the Annealer would: fails when set
    with pytest.raises(ValueError, match='alpha must'): cm.alpha = 0.
    with pytest.raises(ValueError, match='p must be in'): cm.p = 1.5
    assert (cm.alpha, cm.p) == (1., 1.)
    with pytest.raises(TypeError, match='x must be a 4-D floating point'): cutmix(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match='which must be None or a'):
        cutmix(torch.zeros(3, 1, 4, 4), which=torch.ones(2, dtype=bool))

NOT_DENSE = r'is not a dense target of these images'  # the base's refusal of a target that looks dense but is not

@pytest.mark.parametrize('y, fit_msg, msg', [
    # a mask of another size than the images: the base refuses it; mix_mode alone refuses it as a label
    (torch.zeros(8, 8, 8, dtype=torch.long), NOT_DENSE, 'integer targets must be one class index per sample'),
    (torch.zeros(8, 2, 3, 3), NOT_DENSE, r'float targets must be \(B,\) or \(B, n_labels\)'),
    (torch.zeros(8, 4, dtype=torch.bool), 'use float multi-label targets', 'use float multi-label targets'),
])
def test_unmixable_targets(y, fit_msg, msg):
    x = torch.randn(8, 3, 16, 16)
    dls = DataLoaders(TfmdDL(TensorDataset(x, y), bs=8), TfmdDL(TensorDataset(x, y), bs=8))
    learn = Learner(dls, tiny_net(), loss_func=lambda p, t: p.sum(), cbs=CutMix())
    with pytest.raises(ValueError, match=fit_msg): quiet(learn, 'fit', 1)
    with pytest.raises(ValueError, match=msg): mix_mode((y,), 8)
    with pytest.raises(ValueError, match='cannot mix target 0'): mix_mode((y,), 8)
    with pytest.raises(ValueError, match='first dim 8'): mix_mode((torch.zeros(7),), 8)
    with pytest.raises(ValueError, match='yb is empty'): mix_mode((), 8)

def test_loss_without_reduction_none():
    res = cutmix(torch.randn(4, 1, 8, 8))
    with pytest.raises(TypeError, match="must accept reduction='none'"):
        mix_loss(lambda p, t: F.cross_entropy(p, t), torch.randn(4, 3), (torch.randint(0, 3, (4,)),), res.lam, res.perm)
    with pytest.raises(ValueError, match='one value per sample'):
        mix_loss(lambda p, t, reduction='mean': p.sum(), torch.randn(4, 3), (torch.randint(0, 3, (4,)),),
                 res.lam, res.perm)

# ---------------------------------------------------------------- OneOf

class Mark(BatchAugment):
    "An input-only augmentation that adds `v` to every image it is given (and keeps their count)"
    def __init__(self, v): self.v, self.n = v, 0
    def augment(self, x, which=None):
        which = torch.ones(len(x), dtype=torch.bool) if which is None else which
        self.n += int(which.sum())
        return torch.where(which[:, None, None, None], x + self.v, x)

def test_assign_frequencies():
    torch.manual_seed(0)
    for ps in ([.5, .25], [1/3]*3, [0., 1.], [.1]):
        n = 50_000
        a = assign(check_ps(ps, len(ps)), n)
        freq = torch.bincount(a, minlength=len(ps)+1).float()/n
        want = torch.tensor(ps + [1 - sum(ps)])
        assert (freq - want).abs().max() < 5*(.25/n)**.5

def test_one_of_gives_each_sample_at_most_one():
    dls = synth_dls(n_train=600, bs=50)
    lf = CrossEntropyLossFlat()
    cm, m1, m2 = CutMix(), Mark(1000.), Mark(-1000.)
    oo = OneOf([m1, cm, m2], ps=[.3, .3, .2])
    rows = []
    before = cb(-1, before_batch=lambda c: rows.append([c.learn.xb[0].clone()]) if c.training else None)
    def after(c):
        if not c.training: return
        rows[-1] += [c.learn.xb[0], oo.which.clone(), cm.lam.clone(), cm.perm.clone(), c.learn.loss, c.learn.pred,
                     c.learn.yb[0]]
    learn = Learner(dls, tiny_net(), loss_func=lf, cbs=[before, oo, cb(1, after_loss=after)])
    set_seed(0)
    quiet(learn, 'fit', 2)
    counts = torch.zeros(4)
    for x0, x1, which, lam, perm, loss, pred, y in rows:
        d = x1 - x0
        assert torch.allclose(d[which == 0], torch.tensor(1000.))
        assert torch.allclose(d[which == 2], torch.tensor(-1000.))
        assert (lam[which != 1] == 1).all()  # only CutMix's share is mixed
        assert torch.equal(x1[which == 3], x0[which == 3])  # the rest is untouched
        sel = which == 1
        assert torch.equal(lam[sel], (x1[sel] == x0[sel]).all(1).float().mean((1, 2)))
        changed = (x1 != x0).all(1) & sel[:, None, None]
        assert torch.equal(x1.permute(0, 2, 3, 1)[changed], x0[perm].permute(0, 2, 3, 1)[changed])  # original partners
        assert torch.allclose(loss, expected_loss('ce', pred, y, lam, perm), atol=1e-5)
        counts += torch.bincount(which, minlength=4)
    n = counts.sum()
    assert n == 2*600 and torch.equal(oo.counts.float(), counts)  # counted over the whole fit
    assert ((counts/n - torch.tensor([.3, .3, .2, .2])).abs() < 5*(.25/n)**.5).all()
    assert m1.n == counts[0] and m2.n == counts[2]
    assert learn.loss_func is lf

def test_one_of_never_writes_into_the_batch():
    "With a CutMix that mixes nothing (p=0) and an input augmentation, the loader's batch is left alone"
    dls = synth_dls()
    seen = []
    def keep(c):
        if c.training: seen.append((c.learn.xb[0], c.learn.xb[0].clone()))
    def check(c):
        if c.training: assert torch.equal(seen[-1][0], seen[-1][1])
    oo = OneOf([CutMix(p=0.), Mark(5.)], ps=[.5, .5])
    learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[cb(-1, before_batch=keep), oo, cb(1, after_loss=check)])
    quiet(learn, 'fit', 1)
    assert len(seen) == len(dls.train) and oo.counts[1] > 0

def test_multi_input_batches():
    "Only the first input is mixed; the others are kept"
    x = torch.randn(40, 3, 16, 16); side = torch.randn(40, 2); y = torch.randint(0, N_CLS, (40,))
    class Net(torch.nn.Module):
        def __init__(self): super().__init__(); self.body, self.side = tiny_net(), torch.nn.Linear(2, N_CLS)
        def forward(self, a, b): return self.body(a) + self.side(b)
    dls = DataLoaders(TfmdDL(TensorDataset(x[:32], side[:32], y[:32]), bs=8, shuffle=True, n_inp=2),
                      TfmdDL(TensorDataset(x[32:], side[32:], y[32:]), bs=8, n_inp=2))
    got = []
    learn = Learner(dls, Net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[CutMix(), cb(1, after_loss=lambda c: got.append(c.learn.xb) if c.training else None)])
    quiet(learn, 'fit', 1)
    assert len(got) == 4 and all(len(xb) == 2 and xb[1].shape == (8, 2) for xb in got)

def test_one_of_with_sprinkles_and_annealer():
    dls = synth_dls()
    lf = CrossEntropyLossFlat()
    oo = OneOf([CutMix(alpha=1.), ProgressiveSprinkles(p=1., n=4, size=.2)], ps=[.5, .5])
    alphas = []
    learn = Learner(dls, tiny_net(), loss_func=lf,
                    cbs=[oo, cb(1, after_loss=lambda c: alphas.append(oo.cut_mix.alpha) if c.training else None)])
    set_seed(0)
    quiet(learn, 'fit', 2,
          cbs=Annealer({'one_of.cut_mix.alpha': SchedLin(.2, 2.), 'one_of.ps': [SchedLin(0., .5), .5]}))
    assert alphas[0] == pytest.approx(.2) and alphas[-1] > 1.8
    assert learn.loss_func is lf and oo.cut_mix.alpha == 1. and oo.ps == [.5, .5]
    assert oo.counts[0] > 0 and oo.counts[1] > 0 and oo.progressive_sprinkles.hist

def test_one_of_bad_input():
    with pytest.raises(ValueError, match='at most one augmentation that mixes labels'): OneOf([CutMix(), CutMix()])
    with pytest.raises(ValueError, match='sum of at most 1'): OneOf([CutMix(), Mark(1.)], ps=[.6, .6])
    with pytest.raises(ValueError, match='list of 2 numbers'): OneOf([CutMix(), Mark(1.)], ps=[.5])
    with pytest.raises(TypeError, match="use fastai_sprinkles' CutMix"): OneOf([FastaiCutMix()])
    with pytest.raises(TypeError, match="use fastai_sprinkles' CutMix"): OneOf([MixUp()])
    with pytest.raises(TypeError, match='BatchAugment callbacks'): OneOf([CutMix])
    with pytest.raises(TypeError, match='BatchAugment callbacks'): OneOf([Callback()])
    with pytest.raises(ValueError, match='at least one'): OneOf([])
    dls = synth_dls()
    m = Mark(1.)
    learn = Learner(dls, tiny_net(), loss_func=CrossEntropyLossFlat(), cbs=[m, OneOf([m])])
    with pytest.raises(ValueError, match='would run twice'): quiet(learn, 'fit', 1)
    oo = OneOf([CutMix(), Mark(1.)])
    # as a bad schedule would: fails when set
    with pytest.raises(ValueError, match='ps must be probabilities'): oo.ps = [.9, .9]
    assert oo.ps == [.5, .5]

def test_cutmix_drops_in_for_fastais():
    "fastai's call works, and after both star imports the later one's `CutMix` is the one in scope"
    import fastai_sprinkles.cutmix as ours
    ns = {}
    exec('from fastai.vision.all import *\nfrom fastai_sprinkles.all import *', ns)
    assert ns['CutMix'] is ours.CutMix
    exec('from fastai_sprinkles.all import *\nfrom fastai.vision.all import *', ns)
    assert ns['CutMix'] is FastaiCutMix
    cm = ours.CutMix(alpha=.4)
    assert (cm.alpha, cm.p, cm.per_sample) == (.4, 1., True)
