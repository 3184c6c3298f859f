"""Segmentation batches through the augmentations: masks pasted with the boxes, `mask_fill` under the holes, the
loss with `'ignore'`, the same batch for the same seed (each on the host path and, under the no-sync guard, on the
device path); saliency of a segmentation model; `show_augmented` with masks; and a real `unet_learner` trained with
each configuration of `SEG_AUGMENTATIONS` in fp32 and bf16, then exported, loaded and used to predict."""
import warnings
import numpy as np
import pytest, torch
import torch.nn.functional as F
from torch import nn
from hypothesis import given, settings, HealthCheck, strategies as st
from PIL import Image
from fastai.basics import Learner, DataLoaders, TfmdDL, Callback, CrossEntropyLossFlat, set_seed, load_learner
from fastai.torch_core import TensorMask
from fastai.vision.all import SegmentationDataLoaders, unet_learner, resnet18
import fastai_sprinkles.boxes as boxes
from fastai_sprinkles.all import (ProgressiveSprinkles, CutMix, OneOf, SaliencyHook, KeepCutout, KeepCutMix,
                                  SelectivePaste, EarlyHeadTrainer, GridMask, box_mask, saliency, lowres_saliency,
                                  mask_loglik, edit_target, Edit)
from helpers import quiet, SEG_AUGMENTATIONS
from test_no_sync import NoSync
from test_precision import CpuAutocast

torch.set_num_threads(1)

IGNORE, N_CLS = 255, 4
LOSS = lambda: CrossEntropyLossFlat(axis=1, ignore_index=IGNORE)

def seg_data(B=8, H=12, W=16, seed=0, float_maps=False):
    "Images (never exactly 0, so that a black hole shows) and masks of `N_CLS` classes (or their one-hot float maps)"
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(B, 3, H, W, generator=g) + 1, torch.randint(0, N_CLS, (B, H, W), generator=g)
    return x, (F.one_hot(y, N_CLS).permute(0, 3, 1, 2).float() if float_maps else TensorMask(y))

def seg_net(n_out=N_CLS):
    "A tiny fully convolutional net: per-pixel scores of the input's size"
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, n_out, 3, padding=1))

class Seen(Callback):
    "The batch before the augmentations (order -20) and after them (order 20), and the loss the learner computed"
    order = 20
    def __init__(self): self.rows = []
    def after_loss(self):
        if self.training: self.rows[-1].update(loss=self.loss.detach(), pred=self.pred.detach())
    def before_batch(self):
        if self.training: self.rows.append(dict(x=self.x.clone(), yb=tuple(y.clone() for y in self.yb)))

class Before(Seen):
    order = -20

class OneInput(list):
    "Samples `(x, *targets)`: one input, however many targets"
    n_inp = 1

def one_batch(cbs, x, yb, device_path=False, loss_func=None, model=None, monkeypatch=None):
    """Fit one epoch of the single batch `(x, *yb)` with the augmentations `cbs`: (before, after) records. On the
    device path (CPU tensors sent down it), every augmentation's `before_batch` runs under the no-sync guard"""
    if device_path:
        monkeypatch.setattr(boxes, 'HOST_PATHS', False)
        for c in cbs:
            f = c.before_batch
            def guarded(f=f):
                with NoSync(): return f()
            object.__setattr__(c, 'before_batch', guarded)
    ds = OneInput(zip(x, *yb))
    dls = DataLoaders(TfmdDL(ds, bs=len(x)), TfmdDL(ds, bs=len(x)))
    before, after = Before(), Seen()
    learn = Learner(dls, model or seg_net(), loss_func=loss_func or LOSS(), cbs=[*cbs, before, after])
    quiet(learn, 'fit', 1, 1e-3)
    return before.rows[0], after.rows[0]

SEEDS = st.integers(0, 2**16)
PROP = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
PATHS = pytest.mark.parametrize('device_path', [False, True], ids=['host', 'device'])

# ---------------------------------------------------------------- properties

@PATHS
@PROP
@given(seed=SEEDS, float_maps=st.booleans())
def test_cutmix_pastes_the_same_boxes_into_the_masks(monkeypatch, device_path, seed, float_maps):
    "Outside the pasted boxes images and masks are their own; inside, both are the partner's; the loss is unmixed"
    set_seed(seed)
    x, y = seg_data(seed=seed, float_maps=float_maps)
    cm = CutMix()
    loss_func = LOSS() if not float_maps else (lambda p, t: F.cross_entropy(p, t))
    b, a = one_batch([cm], x, (y,), device_path, loss_func, monkeypatch=monkeypatch)
    m = box_mask(*cm.boxes, *x.shape[-2:])  # (B, 1, H, W)
    x0, y0, x1, y1 = b['x'], b['yb'][0], a['x'], a['yb'][0]
    assert bool(m.any()) and cm.perm is not None
    p, my = cm.perm, (m[:, 0] if y0.ndim == 3 else m)
    assert torch.equal(x1, torch.where(m, x0[p], x0))
    assert torch.equal(y1, torch.where(my, y0[p], y0))
    assert torch.allclose(cm.lam, 1 - m.flatten(1).float().mean(1))  # λ recorded, as for labels
    assert torch.allclose(a['loss'], loss_func(a['pred'], y1))  # the learner's own loss of the pasted masks

@PATHS
@PROP
@given(seed=SEEDS, fill=st.sampled_from([0, 2, 'ignore']), aug=st.sampled_from(['sprinkles', 'keep', 'grid']))
def test_mask_fill_paints_exactly_the_holes(monkeypatch, device_path, seed, fill, aug):
    "Black holes on images never black: the pixels that changed are the holes, and exactly they get `mask_fill`"
    set_seed(seed)
    x, y = seg_data(seed=seed)
    cbs = dict(sprinkles=lambda: [ProgressiveSprinkles(p=1., n=(1, 4), size=(.1, .4), mask_fill=fill)],
               keep=lambda: [SaliencyHook('lowres'), KeepCutout(size=.4, mask_fill=fill)],
               grid=lambda: [GridMask(period=.5, mask_fill=fill)])[aug]()
    b, a = one_batch(cbs, x, (y,), device_path, monkeypatch=monkeypatch)
    holes = (a['x'] != b['x']).any(1)
    assert bool(holes.any())
    assert torch.equal(a['yb'][0], torch.where(holes, IGNORE if fill == 'ignore' else fill, b['yb'][0]))

@PROP
@given(seed=SEEDS)
def test_mask_fill_on_float_maps_paints_the_one_hot_class(seed):
    set_seed(seed)
    x, y = seg_data(seed=seed, float_maps=True)
    b, a = one_batch([ProgressiveSprinkles(p=1., n=3, size=.3, mask_fill=1)], x, (y,),
                     loss_func=lambda p, t: F.cross_entropy(p, t))
    holes = (a['x'] != b['x']).any(1, keepdim=True)
    one = torch.tensor([0., 1., 0., 0.]).view(1, 4, 1, 1)
    assert bool(holes.any()) and torch.equal(a['yb'][0], torch.where(holes, one, b['yb'][0]))

@PATHS
@PROP
@given(seed=SEEDS)
def test_ignore_leaves_the_hidden_pixels_out_of_the_loss(monkeypatch, device_path, seed):
    "With 'ignore', the learner's loss is the cross-entropy over the pixels no hole hides, and only over them"
    set_seed(seed)
    x, y = seg_data(seed=seed)
    b, a = one_batch([ProgressiveSprinkles(p=1., n=(2, 5), size=(.1, .4), mask_fill='ignore')], x, (y,),
                     device_path, monkeypatch=monkeypatch)
    seen = ~(a['x'] != b['x']).any(1)  # (B, H, W): the pixels left as they were
    assert bool((~seen).any()) and bool(seen.any())
    pred = a['pred'].permute(0, 2, 3, 1)[seen]  # (n, C): the scores of the unhidden pixels
    want = F.cross_entropy(pred, b['yb'][0].as_subclass(torch.Tensor)[seen])
    assert torch.allclose(a['loss'], want, rtol=1e-5, atol=1e-6)

@PATHS
@pytest.mark.parametrize('name', list(SEG_AUGMENTATIONS))
def test_same_seed_same_batch(monkeypatch, device_path, name):
    x, y = seg_data(seed=3)
    def run():
        set_seed(7)
        return one_batch(SEG_AUGMENTATIONS[name](), x, (y,), device_path, monkeypatch=monkeypatch)[1]
    r1, r2 = run(), run()
    assert torch.equal(r1['x'], r2['x']) and torch.equal(r1['yb'][0], r2['yb'][0])
    assert not torch.equal(r1['yb'][0], y)  # the masks were changed

@PATHS
@PROP
@given(seed=SEEDS)
def test_oneof_composes_its_members_records(monkeypatch, device_path, seed):
    "Each sample's mask follows what its own member did: pasted (CutMix), painted (sprinkles), or left alone"
    set_seed(seed)
    x, y = seg_data(B=12, seed=seed)
    cm, sp = CutMix(), ProgressiveSprinkles(p=1., n=(1, 3), size=.3, mask_fill=3)
    one = OneOf([sp, cm], ps=[.4, .4])
    b, a = one_batch([one], x, (y,), device_path, monkeypatch=monkeypatch)
    x0, y0, x1, y1, w = b['x'], b['yb'][0], a['x'], a['yb'][0], one.which
    pasted = box_mask(*cm.boxes, *x.shape[-2:])[:, 0]
    holes = (x1 != x0).any(1) & (w == 0)[:, None, None]
    want = torch.where(pasted, y0[cm.perm], y0)  # CutMix first, on its own samples
    want = torch.where(holes, 3, want)  # then the sprinkles on theirs
    assert torch.equal(y1, want)
    assert not bool(pasted[w != 1].any()) and torch.equal(y1[w == 2], y0[w == 2])  # the others: untouched

def test_labels_and_masks_mix_the_labels_and_paste_the_masks():
    """A batch with a class label and a mask: the label's loss is mixed by λ, the mask's is the loss of the pasted mask,
    the same in both halves of the mix"""
    class Both(nn.Module):
        "Per-pixel scores and, from their mean, per-image scores"
        def __init__(self): super().__init__(); self.net = seg_net()
        def forward(self, x): return self.net(x)
    class BothLoss:
        "Cross-entropy of the mean scores against the label, plus the mean per-pixel cross-entropy of the mask"
        reduction = 'mean'
        def __call__(self, p, lbl, m):
            per = F.cross_entropy(p.mean((2, 3)), lbl, reduction='none') + \
                F.cross_entropy(p, m.as_subclass(torch.Tensor), reduction='none').mean((1, 2))
            return per.mean() if self.reduction == 'mean' else per
    set_seed(0)
    x, y = seg_data()
    lbl = torch.arange(8) % N_CLS
    cm = CutMix()
    b, a = one_batch([cm], x, (lbl, y), loss_func=BothLoss(), model=Both())
    m = box_mask(*cm.boxes, *x.shape[-2:])[:, 0]
    lbl1, y1 = a['yb']
    assert torch.equal(lbl1, lbl) and torch.equal(y1, torch.where(m, y[cm.perm], y))  # labels kept, masks pasted
    lf, p, lam = BothLoss(), a['pred'], cm.lam
    lf.reduction = 'none'
    want = (lam*lf(p, lbl, y1) + (1 - lam)*lf(p, lbl[cm.perm], y1)).mean()
    assert torch.allclose(a['loss'], want, rtol=1e-5)

def test_edit_target_applies_edits_in_order():
    m1 = torch.zeros(2, 1, 4, 4, dtype=torch.bool); m1[..., :2] = True
    m2 = torch.zeros(2, 1, 4, 4, dtype=torch.bool); m2[..., :1, :] = True
    y = torch.tensor([1, 2])[:, None, None].expand(2, 4, 4)
    out = edit_target(y, [Edit(m1, perm=torch.tensor([1, 0])), Edit(m2, fill=0)])
    assert torch.equal(out[:, 0], torch.zeros(2, 4, dtype=torch.long))  # painted last
    assert torch.equal(out[:, 1:, :2], torch.tensor([2, 1])[:, None, None].expand(2, 3, 2))  # pasted
    assert torch.equal(out[:, 1:, 2:], y[:, 1:, 2:])

# ---------------------------------------------------------------- refusals

def test_ignore_without_an_ignore_index_fails_at_before_fit():
    x, y = seg_data()
    for cbs in ([ProgressiveSprinkles(mask_fill='ignore')], [KeepCutout(mask_fill='ignore')],
                [OneOf([CutMix(), ProgressiveSprinkles(mask_fill='ignore')])]):
        net = seg_net()
        w0 = [p.detach().clone() for p in net.parameters()]
        with pytest.raises(ValueError, match="mask_fill='ignore' paints the loss's ignore_index"):
            one_batch(cbs, x, (y,), loss_func=lambda p, t: F.cross_entropy(p, t), model=net)
        assert all(torch.equal(p, q) for p, q in zip(w0, net.parameters()))

@pytest.mark.parametrize('y, msg', [
    (torch.zeros(8, 6, 8, dtype=torch.long), r'target 0, a torch.int64 tensor of shape \(8, 6, 8\), is not a dense'),
    (torch.zeros(8, 12, 16), r'target 0, a torch.float32 tensor of shape \(8, 12, 16\), is not a dense target'),
    (torch.zeros(8, 4, 6, 8), r'target 0, a torch.float32 tensor of shape \(8, 4, 6, 8\), is not a dense target'),
])
@pytest.mark.parametrize('cbs', ['sprinkles', 'cutmix', 'oneof'])
def test_dense_targets_of_the_wrong_shape_are_refused(y, msg, cbs):
    x, _ = seg_data()
    make = dict(sprinkles=lambda: [ProgressiveSprinkles()], cutmix=lambda: [CutMix()],
                oneof=lambda: [OneOf([CutMix(), ProgressiveSprinkles()])])[cbs]
    with pytest.raises(ValueError, match=msg): one_batch(make(), x, (y,), loss_func=lambda p, t: p.sum())

def test_mask_fill_that_a_float_map_cannot_take():
    x, y = seg_data(float_maps=True)
    lf = lambda p, t: F.cross_entropy(p, t)
    with pytest.raises(ValueError, match='mask_fill=7 is not a class of target 0'):
        one_batch([ProgressiveSprinkles(mask_fill=7)], x, (y,), loss_func=lf)
    with pytest.raises(ValueError, match="mask_fill='ignore' paints the loss's ignore_index, an integer label"):
        one_batch([ProgressiveSprinkles(mask_fill='ignore')], x, (y,))

def test_selective_paste_and_the_early_head_refuse_masks():
    x, y = seg_data()
    with pytest.raises(ValueError, match='SelectivePaste cannot augment a batch with dense targets'):
        one_batch([SaliencyHook('full'), SelectivePaste(lambda v: v.flip(-1))], x, (y,))
    with pytest.raises(ValueError, match=r"early head predicts one label per image.*SaliencyHook\('lowres'\)"):
        one_batch([SaliencyHook('early', early_layer='0'), KeepCutMix()], x, (y,))
    with pytest.raises(ValueError, match='early head predicts one label per image'):
        one_batch([EarlyHeadTrainer(layer='0')], x, (y,))

# ---------------------------------------------------------------- saliency of a segmentation model

class LeftHalf(nn.Module):
    "Per-pixel scores that depend on the left half of the image only (the right half's scores are constant)"
    def __init__(self): super().__init__(); self.conv = seg_net()
    def forward(self, x):
        keep = (torch.arange(x.shape[-1], device=x.device) < x.shape[-1]//2).to(x.dtype)
        return self.conv(x*keep)

@pytest.mark.parametrize('lowres', [False, True])
def test_saliency_of_a_segmentation_model_is_where_its_loss_depends(lowres):
    x, y = seg_data(W=16)
    net = LeftHalf()
    s = lowres_saliency(net, x, y, 2.) if lowres else saliency(net, x, y)
    assert s.shape == (8, 12, 16) and s.dtype == torch.float32 and bool(torch.isfinite(s).all())
    assert bool((s[..., :8].sum((1, 2)) > 0).all())  # every image has a map on the left
    if not lowres: assert float(s[..., 8:].abs().max()) == 0.  # and none on the right
    # the map is |d log p(mask) / d x|: minus the summed per-pixel loss
    xg = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(-F.cross_entropy(net(xg), y.as_subclass(torch.Tensor), reduction='sum'), xg)
    if not lowres: assert torch.allclose(s, g.abs().amax(1), atol=1e-6)

class LeftQuarter(LeftHalf):
    "Per-pixel scores that depend on the left quarter of the image only"
    def forward(self, x):
        keep = (torch.arange(x.shape[-1], device=x.device) < x.shape[-1]//4).to(x.dtype)
        return self.conv(x*keep)

@pytest.mark.parametrize('seed', [0, 1])
def test_keep_cutout_avoids_what_the_segmentation_depends_on(seed):
    """On a model whose masks depend on the left quarter of the images only, most squares score 0: the squares
    `KeepCutout` cuts (below the median score) all leave that quarter alone, and so do the masks painted under them"""
    set_seed(seed)
    x, y = seg_data(B=8, H=16, W=32, seed=seed)
    b, a = one_batch([SaliencyHook('full'), KeepCutout(size=.25, tau=.5, mask_fill=0)], x, (y,), model=LeftQuarter())
    holes = (a['x'] != b['x']).any(1)
    assert bool(holes.any(-1).any(-1).all())  # every image got its square
    assert not bool(holes[..., :8].any())  # none in the left quarter
    assert torch.equal(a['yb'][0], torch.where(holes, 0, b['yb'][0]))

def test_mask_loglik_leaves_out_labels_that_are_no_class():
    out, y = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    y2 = y.clone(); y2[:, 0] = IGNORE
    keep = torch.ones(2, 4, 4, dtype=torch.bool); keep[:, 0] = False
    want = F.log_softmax(out, 1).gather(1, y[:, None])[:, 0][keep].sum()
    assert torch.allclose(mask_loglik(out, y2), want)
    assert torch.allclose(mask_loglik(out, y), -F.cross_entropy(out, y, reduction='sum'))

def test_show_augmented_draws_the_masks(monkeypatch):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    x, y = seg_data()
    ds = list(zip(x, y))
    dls = DataLoaders(TfmdDL(ds, bs=8, shuffle=True), TfmdDL(ds, bs=8))
    dls.c = N_CLS
    sp = ProgressiveSprinkles(p=1., n=2, size=.3, mask_fill='ignore')
    learn = Learner(dls, seg_net(), loss_func=LOSS(), cbs=[SaliencyHook('lowres'), OneOf([CutMix(), sp])])
    learn.show_augmented(n=3)
    axs = plt.gcf().axes
    assert len(axs) == 9 and all(len(ax.get_images()) == 3 for ax in axs)  # image, saliency map, mask
    drawn = axs[0].get_images()[-1].get_array()
    assert isinstance(drawn, np.ma.MaskedArray) and drawn.shape == (12, 16)
    assert sp.at_pct is None  # put back
    plt.close('all')

# ---------------------------------------------------------------- a real unet_learner

SIZE, N_IMGS, CODES = 32, 16, ['background', 'square', 'disc']

@pytest.fixture(scope='module')
def seg_folder(tmp_path_factory):
    "Small photos-like images (smooth noise) with a square and a disc drawn on each, and their masks"
    root = tmp_path_factory.mktemp('seg')
    (root/'images').mkdir(); (root/'labels').mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(N_IMGS):
        img = (rng.random((SIZE, SIZE, 3))*80 + 60).astype(np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        r, c = rng.integers(2, SIZE - 12, 2)
        mask[r:r + 10, c:c + 10] = 1
        cy, cx = rng.integers(6, SIZE - 6, 2)
        mask[(yy - cy)**2 + (xx - cx)**2 < 25] = 2
        img[mask == 1] = (200, 40, 40); img[mask == 2] = (40, 40, 200)
        Image.fromarray(img).save(root/'images'/f'{i:02d}.png')
        Image.fromarray(mask).save(root/'labels'/f'{i:02d}.png')
    return root

def seg_dls(root):
    return SegmentationDataLoaders.from_label_func(root, sorted((root/'images').glob('*.png')),
                                                   lambda f: root/'labels'/f.name, codes=CODES, bs=4, valid_pct=.25,
                                                   seed=0, num_workers=0)

@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
@pytest.mark.parametrize('name', list(SEG_AUGMENTATIONS))
def test_unet_learner_trains_exports_and_predicts(seg_folder, tmp_path, name, precision):
    set_seed(0)
    dls = seg_dls(seg_folder)
    before, seen, ac = Before(), Seen(), CpuAutocast()
    learn = unet_learner(dls, resnet18, pretrained=False, n_out=len(CODES), loss_func=LOSS(), path=tmp_path,
                         cbs=[*SEG_AUGMENTATIONS[name](), before, seen])
    # fastai's `to_bf16` (what a GPU user writes; its autocast is CUDA's), and a real CPU bfloat16 autocast from before
    # the saliency pass and the augmentations to the loss
    if precision == 'bf16': learn.to_bf16(); learn.add_cbs(ac.cbs())
    dtypes = []  # of the first convolution's output: bfloat16 under the autocast (the unet's output is resized in fp32)
    h = learn.model[0][0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    try: quiet(learn, 'fit', 1, 1e-3)
    finally: ac.leave(); h.remove()
    assert (torch.bfloat16 in dtypes) == (precision == 'bf16')  # (the saliency pass runs outside the CPU autocast)
    assert len(seen.rows) == 3 and all(bool(torch.isfinite(r['loss'])) for r in seen.rows)
    assert all(r['yb'][0].shape == (4, SIZE, SIZE) and r['yb'][0].dtype == torch.long for r in seen.rows)
    ys = torch.stack([r['yb'][0] for r in seen.rows])
    assert not torch.equal(ys, torch.stack([r['yb'][0] for r in before.rows]))  # the masks were changed with the images
    if name == 'sprinkles-ignore': assert bool((ys == IGNORE).any())  # the holes are out of the loss
    else: assert not bool((ys == IGNORE).any()) and bool((ys <= 2).all())
    assert all(torch.isfinite(torch.tensor(v)).all() for v in learn.recorder.values[-1])
    if precision == 'bf16': learn.remove_cbs(learn.cbs.filter(lambda c: type(c).__name__ == 'Callback'))
    learn.export('export.pkl')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        loaded = load_learner(tmp_path/'export.pkl')
    img = sorted((seg_folder/'images').glob('*.png'))[0]
    dec, _, probs = quiet(loaded, 'predict', img)
    assert dec.shape == (SIZE, SIZE) and probs.shape == (len(CODES), SIZE, SIZE)
    assert bool(torch.isfinite(probs).all()) and bool(((dec >= 0) & (dec < len(CODES))).all())
