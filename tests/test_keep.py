"""Tests of `fastai_sprinkles.saliency` and `fastai_sprinkles.keep`: the maps, region scores, selective cut and paste,
the hook's side effects."""
import copy

import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st
from fastai.basics import (Learner, DataLoaders, TfmdDL, Callback, CancelFitException, CancelEpochException,
                           CrossEntropyLossFlat, set_seed)
from fastai.callback.schedule import SchedLin
from fastai.vision.models.xresnet import xresnet18
from torch.utils.data import TensorDataset

from helpers import quiet, cb, rand_dls
from fastai_sprinkles.boxes import integral_image, region_scores, choose_regions, box_mask
from fastai_sprinkles.saliency import (saliency, lowres_saliency, SaliencyHook,
                                       first_block, run_to, unwrap_model)
from fastai_sprinkles.keep import keep_boxes, keep_centres, KeepCutout, KeepCutMix, KeepSprinkles, SelectivePaste
from fastai_sprinkles.cutmix import own_fraction
from fastai_sprinkles.boxes import sample_boxes
from fastai_sprinkles.anneal import Annealer

prop = settings(max_examples=40, deadline=None)

class PatchNet(nn.Module):
    "Linear classifier of 3x16x16 images; class 0 looks only at the patch rows 5:9, cols 9:13"
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, 3, 16, 16))
        self.w.data[0, :, 5:9, 9:13] = 1.
        self.w.data[1, :, 5:9, 9:13] = -1.
    def forward(self, x): return (x[:, None]*self.w).sum((2, 3, 4))

PATCH = torch.zeros(16, 16, dtype=torch.bool)
PATCH[5:9, 9:13] = True

def bn_net(seed=0, n_out=3):
    "A small CNN with BatchNorm and dropout"
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_out))

def square_dls(n=480, bs=32, seed=0):
    "16x16 images of noise with a bright 4x4 square in one of 4 quadrants: the label is the quadrant"
    g = torch.Generator().manual_seed(seed)
    xs, ys = 0.3*torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 4, (n,), generator=g)
    off = torch.randint(0, 4, (n, 2), generator=g)
    for i in range(n):
        r, c = 8*(int(ys[i])//2) + int(off[i, 0]), 8*(int(ys[i]) % 2) + int(off[i, 1])
        xs[i, :, r:r+4, c:c+4] += 2.
    k = n*3//4
    return DataLoaders(TfmdDL(TensorDataset(xs[:k], ys[:k]), bs=bs, shuffle=True),
                       TfmdDL(TensorDataset(xs[k:], ys[k:]), bs=bs))

def n_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())

# ---------------------------------------------------------------- the map

def test_saliency_of_a_linear_model_is_its_weight():
    x = torch.randn(5, 3, 16, 16)
    s = saliency(PatchNet(), x, torch.tensor([0, 1, 0, 1, 0]))
    assert torch.equal(s, PATCH.float().expand(5, 16, 16))
    soft = torch.tensor([[.5, .5]]).expand(5, 2)  # float targets: target-weighted logits, here 0
    assert torch.equal(saliency(PatchNet(), x, soft), torch.zeros(5, 16, 16))

@pytest.mark.parametrize('mode', ['full', 'lowres'])
def test_saliency_pass_leaves_training_bit_identical(mode):
    "Grads, BN buffers, dropout draws, losses and weights: the same with the hook as without it"
    def run(with_hook):
        set_seed(1)
        rows = []
        def keep(c):
            if c.training: rows.append((c.learn.loss.detach().clone(),
                                        [p.grad.clone() for p in c.learn.model.parameters()],
                                        [b.clone() for b in c.learn.model.buffers()]))
        cbs = [cb(5, after_backward=keep)] + ([SaliencyHook(mode)] if with_hook else [])
        learn = Learner(rand_dls(), bn_net(), loss_func=CrossEntropyLossFlat(), cbs=cbs)
        quiet(learn, 'fit', 2, 1e-2)
        return rows, learn.model.state_dict()
    (a, sa), (b, sb) = run(True), run(False)
    assert len(a) == len(b) == 8
    for (la, ga, ba), (lb, gb, bb) in zip(a, b):
        assert torch.equal(la, lb)
        assert all(torch.equal(u, v) for u, v in zip(ga, gb)) and all(torch.equal(u, v) for u, v in zip(ba, bb))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

def test_module_modes_are_restored():
    net = bn_net().train()
    net[1].eval()  # a frozen BatchNorm, as fastai's BnFreeze does
    saliency(net, torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]))
    assert net.training and not net[1].training and net[5].training

def test_saliency_works_with_frozen_parameters_and_fp16_autocast():
    net = bn_net()
    for p in net.parameters(): p.requires_grad_(False)
    s = saliency(net, torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]))
    assert s.shape == (4, 16, 16) and s.dtype == torch.float32 and bool(s.abs().sum() > 0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        s = saliency(bn_net(), torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]))
    assert s.dtype == torch.float32 and bool(torch.isfinite(s).all())

def test_lowres_map_shape_and_factor_check():
    net = bn_net()
    s = lowres_saliency(net, torch.randn(2, 3, 24, 20), torch.tensor([0, 1]), factor=3)
    assert s.shape == (2, 24, 20) and bool((s >= 0).all())
    with pytest.raises(ValueError, match='factor=11 shrinks 24x20 images to less than 2 pixels'):
        lowres_saliency(net, torch.randn(2, 3, 24, 20), torch.tensor([0, 1]), factor=11)

# ---------------------------------------------------------------- region scores

@prop
@given(st.integers(1, 4), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31),
       st.sampled_from(['corner', 'centre']))
def test_region_scores_equal_brute_force_sums(B, H, W, seed, anchor):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(B, H, W, generator=g)
    h, w = torch.randint(1, H + 1, (B,), generator=g), torch.randint(1, W + 1, (B,), generator=g)
    sc, ok = region_scores(integral_image(m), h, w, anchor)
    if anchor == 'centre':  # clipped boxes: every position is allowed, and said so by None
        assert ok is None
        ok = torch.ones_like(sc, dtype=torch.bool)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                y0, x0 = (i, j) if anchor == 'corner' else (i - int(h[b])//2, j - int(w[b])//2)
                fits = y0 + h[b] <= H and x0 + w[b] <= W
                assert bool(ok[b, i, j]) == (bool(fits) if anchor == 'corner' else True)
                if ok[b, i, j]:
                    ys_ = slice(max(y0, 0), max(min(y0 + int(h[b]), H), 0))
                    xs_ = slice(max(x0, 0), max(min(x0 + int(w[b]), W), 0))
                    want = m[b, ys_, xs_].sum()
                    assert abs(float(sc[b, i, j]) - float(want)) < 1e-5

@prop
@given(st.integers(1, 6), st.integers(2, 10), st.integers(2, 10), st.floats(.05, .95), st.booleans(),
       st.integers(0, 2**31))
def test_choose_regions_respects_the_quantile(B, H, W, tau, above, seed):
    g = torch.Generator().manual_seed(seed)
    sc = torch.randint(0, 5, (B, H, W), generator=g).double()  # ties on purpose
    ok = torch.rand(B, H, W, generator=g) < .7
    ok[:, 0, 0] = True
    r, c = choose_regions(sc, ok, tau, above, generator=g)
    for b in range(B):
        vals = sc[b][ok[b]]
        thr = vals.quantile(tau, interpolation='lower')
        assert ok[b, r[b], c[b]]
        v = sc[b, r[b], c[b]]
        if above: assert v > thr or (not bool((vals > thr).any()) and v == vals.max())
        else: assert v <= thr

# ---------------------------------------------------------------- selective cut on a known saliency

def test_keep_cutout_never_cuts_the_patch_but_plain_cutout_does():
    set_seed(0)
    x = torch.randn(400, 3, 16, 16)
    sal = saliency(PatchNet(), x, torch.zeros(400, dtype=torch.long))
    sc, _ = region_scores(integral_image(sal[:1]), 5, 5, anchor='centre')
    thr = sc.flatten().quantile(0.6, interpolation='lower')
    keep = keep_boxes(sal, 5, 5, tau=0.6)
    plain = sample_boxes(400, 16, 16, n=1, size=5/16).boxes[:, 0]
    inside = lambda b: (box_mask(b[:, None], None, 16, 16)[:, 0] & PATCH).sum((1, 2))
    assert bool((inside(keep) <= thr).all())  # never a region scoring above the quantile
    assert bool((inside(plain) > thr).any())  # plain cutout does cut such regions
    paste = keep_boxes(sal, 5, 5, tau=0.6, above=True)
    assert bool((inside(paste) > thr).all())

def test_keep_holes_are_less_salient_than_random_ones_on_a_trained_model():
    "A small CNN trained to find a bright square: KeepCutout's holes hold less saliency than random ones"
    set_seed(0)
    dls = square_dls()
    learn = Learner(dls, bn_net(n_out=4), loss_func=CrossEntropyLossFlat())
    quiet(learn, 'fit', 6, 2e-2)
    x, y = dls.valid.one_batch()
    sal = saliency(learn.model, x, y)
    keep = keep_boxes(sal, 5, 5)
    rand = keep_boxes(torch.ones_like(sal), 5, 5)
    mean_in = lambda b: ((sal*box_mask(b[:, None], None, 16, 16)[:, 0]).sum((1, 2))/25).mean()
    assert mean_in(keep) < 0.8*mean_in(rand)

# ---------------------------------------------------------------- the callbacks

class Seen(Callback):
    "Keep the batch after the augmentations"
    order = 50
    def __init__(self): self.xs = []
    def before_batch(self):
        if self.training: self.xs.append((self.learn.xb[0].clone(), self.learn.yb[0].clone()))

def test_keep_cutout_in_training_avoids_the_patch():
    set_seed(0)
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(64, 3, 16, 16, generator=g) + 3., torch.zeros(64, dtype=torch.long)
    dls = DataLoaders(TfmdDL(TensorDataset(xs[:48], ys[:48]), bs=16, shuffle=True),
                      TfmdDL(TensorDataset(xs[48:], ys[48:]), bs=16))
    kc, seen = KeepCutout(size=4/16, tau=0.6), Seen()
    learn = Learner(dls, PatchNet(), loss_func=CrossEntropyLossFlat(), cbs=[SaliencyHook('full'), kc, seen], lr=0.)
    quiet(learn, 'fit', 1, 0.)
    holes = torch.cat([(x == 0.).all(1) for x, _ in seen.xs])  # black (0: no Normalize here) pixels, in every channel
    assert bool(holes.any(0).sum() > 50)  # the cuts went to many places...
    # ...hardly the patch
    assert int((holes & PATCH).sum(0).max()) <= len(holes)//2 and bool((holes & PATCH).sum((1, 2)).le(4).all())

def test_keep_cutout_needs_the_hook_and_checks_its_arguments():
    learn = Learner(rand_dls(), bn_net(), loss_func=CrossEntropyLossFlat(), cbs=[KeepCutout()])
    with pytest.raises(ValueError, match=r"KeepCutout needs a SaliencyHook among the learner's callbacks"):
        quiet(learn, 'fit', 1)
    for kw, msg in [(dict(tau=0.), r'tau must be in \(0, 1\)'), (dict(tau=1.), r'tau must be in \(0, 1\)'),
                    (dict(p=1.5), r'p must be in \[0, 1\]'), (dict(size=0.), r'size must be in \(0, 1\]'),
                    (dict(fill='blue'), 'fill must be one of')]:
        with pytest.raises(ValueError, match=msg): KeepCutout(**kw)
    for kw, msg in [(dict(mode='smooth'), 'mode must be one of'), (dict(factor=0.5), 'factor must be a number >= 1'),
                    (dict(early_weight=-1), 'early_weight must be a number >= 0')]:
        with pytest.raises(ValueError, match=msg): SaliencyHook(**kw)
    learn = Learner(rand_dls(size=16), bn_net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[SaliencyHook('lowres', factor=10)])
    with pytest.raises(ValueError, match='factor=10 shrinks 16x16 images'): quiet(learn, 'fit', 1)
    learn = Learner(rand_dls(size=16), bn_net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[SaliencyHook('early', factor=10, early_layer='0')])
    with pytest.raises(ValueError, match='factor=10 shrinks 16x16 images'):  # 'early' shrinks too
        quiet(learn, 'fit', 1)
    learn = Learner(rand_dls(), bn_net(), loss_func=CrossEntropyLossFlat(), cbs=[SaliencyHook('early')])
    with pytest.raises(ValueError, match='pass early_layer='): quiet(learn, 'fit', 1)

def test_keep_cutmix_lambda_and_placement():
    set_seed(0)
    dls = rand_dls(n=96, bs=16)
    seen, got, rec = Seen(), [], []
    hook, kcm = SaliencyHook('full'), KeepCutMix(tau=0.6)
    orig = kcm.where
    def spy(x, h, w):  # record the sides drawn from λ and the map the boxes were placed on
        got.append((h.clone(), w.clone(), hook.sal.clone())); return orig(x, h, w)
    kcm.where = spy
    def after_loss(c):
        if c.training: rec.append((kcm.lam.clone(), kcm.boxes.boxes[:, 0].clone()))
    learn = Learner(dls, bn_net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[hook, kcm, seen, cb(5, after_loss=after_loss)])
    quiet(learn, 'fit', 1)
    assert len(got) == len(rec) == 4
    for (h, w, sal), (lam, boxes) in zip(got, rec):
        B = len(lam)
        assert torch.allclose(lam, own_fraction(boxes[:, None], torch.ones(B, 1, dtype=torch.bool), 16, 16))
        sc, _ = region_scores(integral_image(sal), h, w, anchor='centre')
        thr = sc.flatten(1).quantile(0.6, dim=1, interpolation='lower')
        inside = torch.stack([sal[b, boxes[b, 0]:boxes[b, 2], boxes[b, 1]:boxes[b, 3]].sum() for b in range(B)])
        assert bool((inside <= thr + 1e-5).all())

@prop
@given(st.integers(1, 5), st.integers(2, 14), st.integers(2, 14), st.floats(.1, .9), st.integers(0, 2**31))
def test_keep_boxes_with_a_size_per_image(B, H, W, tau, seed):
    g = torch.Generator().manual_seed(seed)
    sal = torch.rand(B, H, W, generator=g)**4
    h, w = torch.randint(1, H + 1, (B,), generator=g), torch.randint(1, W + 1, (B,), generator=g)
    boxes = keep_boxes(sal, h, w, tau, generator=g)
    sc, _ = region_scores(integral_image(sal), h, w, anchor='centre')
    thr = sc.flatten(1).quantile(tau, dim=1, interpolation='lower')
    for b in range(B):
        y0, x0, y1, x1 = boxes[b].tolist()
        assert 0 <= y0 <= y1 <= H and 0 <= x0 <= x1 <= W and y1 - y0 <= h[b] and x1 - x0 <= w[b]
        assert float(sal[b, y0:y1, x0:x1].sum()) <= float(thr[b]) + 1e-6

def test_keep_sprinkles_holes_avoid_the_patch():
    set_seed(0)
    sal = saliency(PatchNet(), torch.randn(64, 3, 16, 16), torch.zeros(64, dtype=torch.long))
    ok = keep_centres(sal, 3, tau=0.6)
    bx = sample_boxes(64, 16, 16, n=12, size=3/16, where=ok)
    cy, cx = (bx.boxes[..., 0] + bx.boxes[..., 2])//2, (bx.boxes[..., 1] + bx.boxes[..., 3])//2
    assert bool(ok[torch.arange(64)[:, None], cy.clamp(max=15), cx.clamp(max=15)].all())
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(64, 3, 16, 16, generator=g) + 3., torch.zeros(64, dtype=torch.long)
    dls = DataLoaders(TfmdDL(TensorDataset(xs[:48], ys[:48]), bs=16, shuffle=True),
                      TfmdDL(TensorDataset(xs[48:], ys[48:]), bs=16))
    seen = Seen()
    learn = Learner(dls, PatchNet(), loss_func=CrossEntropyLossFlat(),
                    cbs=[SaliencyHook('full'), KeepSprinkles(p=1., n=8, size=2/16, tau=0.5), seen])
    quiet(learn, 'fit', 1, 0.)
    holes = torch.cat([(x == 0.).all(1) for x, _ in seen.xs])
    assert bool(holes.sum((1, 2)).gt(0).all()) and int((holes & PATCH).sum()) <= holes.sum()//20

def test_selective_paste_keeps_the_salient_region():
    set_seed(0)
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(64, 3, 16, 16, generator=g), torch.zeros(64, dtype=torch.long)
    dls = DataLoaders(TfmdDL(TensorDataset(xs[:48], ys[:48]), bs=16, shuffle=False),
                      TfmdDL(TensorDataset(xs[48:], ys[48:]), bs=16))
    sp, seen = SelectivePaste(lambda x: torch.zeros_like(x), size=4/16), Seen()
    learn = Learner(dls, PatchNet(), loss_func=CrossEntropyLossFlat(), cbs=[SaliencyHook('full'), sp, seen])
    quiet(learn, 'fit', 1, 0.)
    x0 = xs[:48]
    out = torch.cat([x for x, _ in seen.xs])
    kept = (out == x0).all(1)
    assert bool(((kept & PATCH).sum((1, 2)) > 0).all())  # part of the patch is back in every image
    assert bool((out[~kept[:, None].expand_as(out)] == 0).all())  # the rest is the transform's
    with pytest.raises(TypeError, match='tfm must be a function'): SelectivePaste(3)

# ---------------------------------------------------------------- early head, hooks, faults

def test_early_head_trains_and_leaves_no_hooks():
    set_seed(0)
    dls = rand_dls(n=96, bs=16, size=32, n_out=10)
    model = xresnet18(n_out=10, c_in=3)
    before = n_hooks(model)
    hook = SaliencyHook('early')
    seen = []
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(),
                    cbs=[hook, cb(20, before_backward=lambda c: seen.append((c.learn.loss.item(),
                                                                             c.learn.loss_grad.item())))])
    quiet(learn, 'fit', 1, 1e-3)
    head0 = copy.deepcopy(hook.head.state_dict())
    assert hook.head is not None and n_hooks(model) == before
    assert all(g > l for l, g in seen)  # the early loss was added to the loss backpropagated
    quiet(learn, 'fit', 1, 1e-3)
    assert any(not torch.equal(v, hook.head.state_dict()[k]) for k, v in head0.items())  # the head keeps training
    assert n_hooks(model) == before
    assert not any(p is q for p in hook.head.parameters() for q in model.parameters())  # the head is not in the model
    x, y = dls.one_batch()
    s = hook.compute(x, y)
    assert s.shape == (16, 32, 32) and bool(torch.isfinite(s).all())
    t = hook.trainer
    logits = lambda v: t.head(run_to(model, t.block, v))  # the head of the hook's trainer, on the first block
    assert torch.equal(s, lowres_saliency(model, x, y, 2, head=logits))  # by default, of the half-size copy
    hook.factor = 1  # the paper's variant: the early head's map at full size
    assert torch.equal(hook.compute(x, y), saliency(model, x, y, head=logits))
    assert not torch.equal(hook.compute(x, y), s)

@pytest.mark.parametrize('exc', [CancelFitException, CancelEpochException, KeyboardInterrupt])
@pytest.mark.parametrize('mode', ['full', 'early'])
def test_cancel_or_interrupt_removes_hooks_and_restores_modes(exc, mode):
    dls = rand_dls(n=96, bs=16, size=32, n_out=10)
    model = xresnet18(n_out=10)
    before = n_hooks(model)
    n = [0]
    def stop(c):
        n[0] += 1
        if n[0] == 2: raise exc()
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(),
                    cbs=[SaliencyHook(mode), KeepCutout(), cb(5, after_batch=stop)])
    if exc is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt): quiet(learn, 'fit', 2)
    else: quiet(learn, 'fit', 2)
    assert n_hooks(model) == before
    assert all(m.training == model.training for m in model.modules())
    quiet(learn, 'fit', 1)  # and it trains again
    assert n_hooks(model) == before

def test_lr_find_and_validation_are_untouched():
    dls = rand_dls()
    hook = SaliencyHook('full')
    calls = []
    orig = hook.compute
    hook.compute = lambda x, y: calls.append(hook.learn.training) or orig(x, y)
    learn = Learner(dls, bn_net(), loss_func=CrossEntropyLossFlat(), cbs=[hook, KeepCutout()])
    quiet(learn, 'lr_find', num_it=5, show_plot=False)
    assert calls == []
    quiet(learn, 'fit', 1)
    assert len(calls) == 4 and all(calls)  # 4 training batches, no validation ones
    quiet(learn, 'get_preds')
    assert len(calls) == 4

def test_unwrap_model_and_first_block():
    net = bn_net()
    assert unwrap_model(nn.DataParallel(net)) is net and unwrap_model(net) is net
    m = xresnet18(n_out=3)
    assert first_block(m) is m[4][0]
    assert run_to(m, m[4][0], torch.randn(2, 3, 32, 32)).shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match='pass layer=<'): first_block(net)
    with pytest.raises(ValueError, match="^layer='nope' is not a module name"): first_block(net, 'nope')
    with pytest.raises(ValueError, match="early_layer='nope' is not a module name"):
        first_block(net, 'nope', 'early_layer')

def test_annealer_schedules_keep_cutout_size():
    dls = rand_dls(n=96, bs=16)
    sizes = []
    kc = KeepCutout(size=.1)
    learn = Learner(dls, bn_net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[SaliencyHook('full'), kc, cb(5, before_batch=lambda c: c.training and sizes.append(kc.size))])
    quiet(learn, 'fit', 2, cbs=Annealer({'keep_cutout.size': SchedLin(.1, .5)}))
    assert sizes[0] == pytest.approx(.1) and sizes[-1] > .4 and kc.size == .1

def test_fastai_tensor_types():
    "Batches from fastai's pipelines are TensorImage with TensorCategory targets: the map and the cuts work on them"
    from fastai.torch_core import TensorImage, TensorCategory
    x, y = TensorImage(torch.randn(4, 3, 16, 16)), TensorCategory(torch.tensor([0, 1, 2, 0]))
    s = saliency(bn_net(), x, y)
    assert type(s) is torch.Tensor and s.shape == (4, 16, 16) and bool(torch.isfinite(s).all())
    dls = DataLoaders(TfmdDL(TensorDataset(x, y), bs=2, shuffle=True), TfmdDL(TensorDataset(x, y), bs=2))
    assert isinstance(dls.one_batch()[0], TensorImage) and isinstance(dls.one_batch()[1], TensorCategory)
    seen = []  # what KeepCutout hands on, before fastai's CastToTensor makes plain tensors of it
    learn = Learner(dls, bn_net(), loss_func=CrossEntropyLossFlat(),
                    cbs=[SaliencyHook('lowres'), KeepCutout(),
                         cb(1, before_batch=lambda c: c.training and seen.append(c.learn.xb[0]))])
    quiet(learn, 'fit', 1)
    assert len(seen) == 2 and all(isinstance(o, TensorImage) for o in seen)

def test_lowres_with_a_fixed_size_model_says_why():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3*16*16, 3))
    with pytest.raises(RuntimeError, match=r"shrunk by factor=2.0 to \(8, 8\).*use mode=.full."):
        lowres_saliency(flat, torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))

def test_hook_maps_after_a_fit_it_was_passed_to():
    "A hook passed to `fit` is detached from the learner afterwards; it still maps with the model it trained with"
    learn = Learner(rand_dls(size=32, n_out=10), xresnet18(n_out=10), loss_func=CrossEntropyLossFlat())
    for mode in ('full', 'lowres', 'early'):
        hook = SaliencyHook(mode)
        quiet(learn, 'fit', 1, cbs=hook)
        assert hook.learn is None
        x, y = learn.dls.one_batch()
        assert hook.compute(x, y).shape == (16, 32, 32)

@pytest.mark.parametrize('make', [lambda g: KeepCutout(size=.25, grid=g),
                                  lambda g: SelectivePaste(lambda x: -x, size=.25, grid=g)],
                         ids=['KeepCutout', 'SelectivePaste'])
def test_grid_reaches_the_placement(make):
    "`grid` of the callbacks is the grid of candidate centres: grid=4 on 32 px images puts 8 px squares 8 px apart"
    tops = {}
    for g in (4, 32):
        set_seed(0)
        aug = make(g)
        seen = []
        learn = Learner(rand_dls(size=32), bn_net(), loss_func=CrossEntropyLossFlat(),
                        cbs=[SaliencyHook('full'), aug,
                             cb(10, before_batch=lambda c: seen.append(aug.boxes.boxes[:, 0].clone()))])
        quiet(learn, 'fit', 1)
        b = torch.cat(seen)
        assert bool(((b[:, 2] - b[:, 0] == 8) | (b[:, 0] == 0) | (b[:, 2] == 32)).all())
        tops[g] = set(b[:, 0].tolist()) | set(b[:, 1].tolist())
    assert tops[4] <= {0, 8, 16, 24}
    assert not tops[32] <= {0, 8, 16, 24}  # every pixel is a candidate centre by default at 32 px

class TwoPatchNet(nn.Module):
    "Class 0 looks only at rows 2:6, cols 2:6; class 1 only at rows 10:14, cols 9:13"
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, 3, 16, 16))
        self.w.data[0, :, 2:6, 2:6] = 1.
        self.w.data[1, :, 10:14, 9:13] = 2.
    def forward(self, x): return (x[:, None]*self.w).sum((2, 3, 4))

def test_saliency_follows_the_label_not_the_top_logit():
    "Each image's map lights the region its own label's class looks at, even where the other class scores higher"
    net, A, B = TwoPatchNet(), torch.zeros(16, 16, dtype=torch.bool), torch.zeros(16, 16, dtype=torch.bool)
    A[2:6, 2:6], B[10:14, 9:13] = True, True
    x = torch.ones(4, 3, 16, 16)  # class 1 has the larger logit for every image
    y = torch.tensor([0, 1, 0, 1])
    assert (net(x).argmax(1) == 1).all()
    s = saliency(net, x, y)
    for i, lab in enumerate(y.tolist()):
        assert torch.equal(s[i] > 0, A if lab == 0 else B)
    soft = saliency(net, x, torch.nn.functional.one_hot(y, 2).float())  # float targets weigh the logits alike
    assert torch.equal(soft, s)

def test_keep_cutout_fill_mean_without_normalize_is_a_clear_error():
    """`fill='mean'` on DataLoaders without `Normalize` (and no `mean`, `std`) fails at `before_fit`, as for sprinkles,
    instead of painting black; with the statistics given, it paints their mean"""
    cbs = [SaliencyHook('lowres'), KeepCutout(fill='mean')]
    learn = Learner(rand_dls(), bn_net(), loss_func=CrossEntropyLossFlat(), cbs=cbs)
    with pytest.raises(ValueError, match="fill='mean' paints the data set mean, but the DataLoaders have no Normalize"):
        quiet(learn, 'fit', 1)
    seen = []
    kc = KeepCutout(fill='mean', mean=[.2]*3, std=[.5]*3)
    spy = cb(5, before_batch=lambda c: c.training and seen.append(c.xb[0].clone()))
    learn = Learner(rand_dls(), bn_net(), loss_func=CrossEntropyLossFlat(), cbs=[SaliencyHook('lowres'), kc, spy])
    quiet(learn, 'fit', 1)
    holes = box_mask(*kc.boxes, 16, 16)[:, 0]
    assert bool(holes.any()) and bool((seen[-1].permute(0, 2, 3, 1)[holes] == 0).all())  # the mean is 0 once normalised

def test_keep_cutmix_tau_and_grid_are_checked_when_set():
    "`tau` and `grid` are checked whenever they are set: by you, or by an `Annealer` during the fit"
    kc = KeepCutMix()
    with pytest.raises(ValueError, match=r'tau must be in \(0, 1\)'): kc.tau = 1.
    with pytest.raises(ValueError, match='grid must be an int >= 1'): kc.grid = 0
    assert (kc.tau, kc.grid) == (.6, 32)  # the bad values were not kept
    learn = Learner(rand_dls(), bn_net(), loss_func=CrossEntropyLossFlat(), cbs=[SaliencyHook('lowres'), KeepCutMix()])
    # tau=1, the top quantile, would allow every position: plain CutMix, silently
    with pytest.raises(ValueError, match=r'tau must be in \(0, 1\) \(a quantile level\), got 1.0'):
        quiet(learn, 'fit', 1, cbs=Annealer({'keep_cut_mix.tau': 1.}))
    assert learn.keep_cut_mix.tau == .6  # and the Annealer put it back
