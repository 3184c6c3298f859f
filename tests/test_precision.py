"""Every augmentation callback under reduced precision and channels_last: fastai's `to_fp16` and `to_bf16`, a real CPU
bfloat16 autocast around the forward pass, channels_last inputs and model, and bfloat16 inputs and model.

The augmented batch must keep the input's dtype and memory format, and the batch, the saliency maps and the loss must
stay finite. Function-level checks cover `sprinkle` and the saliency maps on float16 and bfloat16 tensors.
"""
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset
from fastai.basics import Learner, DataLoaders, TfmdDL, Callback, CrossEntropyLossFlat
from fastai.data.transforms import Normalize

from helpers import quiet, cb, AUGMENTATIONS
from fastai_sprinkles.fills import sprinkle
from fastai_sprinkles.sprinkles import ProgressiveSprinkles
from fastai_sprinkles.cutmix import CutMix, cutmix
from fastai_sprinkles.saliency import saliency, lowres_saliency

torch.set_num_threads(1)

N_TRAIN, N_VALID, BS, N_CLS = 48, 16, 16, 3
MEAN, STD = (0.2, -0.1, 0.3), (0.9, 1.1, 1.3)
CL = torch.channels_last

# ---------------------------------------------------------------- helpers

def make_dls():
    "Random 3x16x16 images, 3 classes; a `Normalize` in the training loader gives the stats for `fill='mean'`"
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(N_TRAIN + N_VALID, 3, 16, 16, generator=g)
    ys = torch.randint(0, N_CLS, (N_TRAIN + N_VALID,), generator=g)
    norm = Normalize.from_stats(MEAN, STD, cuda=False)
    return DataLoaders(TfmdDL(TensorDataset(xs[:N_TRAIN], ys[:N_TRAIN]), bs=BS, shuffle=True, num_workers=0,
                              after_batch=norm),
                       TfmdDL(TensorDataset(xs[N_TRAIN:], ys[N_TRAIN:]), bs=BS, num_workers=0))

def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, N_CLS))

def finite(t) -> bool: return bool(torch.isfinite(t).all())

class Before(Callback):
    "Keep the batch as it is just before the augmentations (order 0)"
    order = -1
    def before_batch(self): self.x0 = self.x.clone()

class Record(Callback):
    "After the augmentations: what the model gets at each training batch, its prediction and loss"
    order = 1
    def __init__(self): self.rows = []
    def before_batch(self):
        if not self.training: return
        x, x0 = self.x, self.learn.before.x0
        row = dict(dtype=x.dtype, cl=x.is_contiguous(memory_format=CL), finite=finite(x), changed=bool((x != x0).any()))
        hook = getattr(self.learn, 'saliency_hook', None)
        if hook is not None:
            row.update(sal_dtype=hook.sal.dtype, sal_finite=finite(hook.sal), sal_any=bool(hook.sal.abs().sum() > 0))
        self.rows.append(row)
    def after_pred(self):
        if self.training: self.rows[-1]['pred_dtype'] = self.pred.dtype
    def after_loss(self):
        if self.training: self.rows[-1].update(loss=finite(self.loss), loss_grad=finite(self.loss_grad))

class CpuAutocast:
    "A real CPU bfloat16 autocast, entered before the saliency pass and the augmentations and left after the loss"
    def __init__(self): self.cm = None
    def enter(self, c):
        self.leave()
        self.cm = torch.autocast('cpu', dtype=torch.bfloat16)
        self.cm.__enter__()
    def leave(self, c=None):
        if self.cm is not None: self.cm.__exit__(None, None, None)
        self.cm = None
    def cbs(self): return [cb(-6, before_batch=self.enter), cb(2, after_loss=self.leave)]

def convert_xb(**kw):
    "A callback, before `SaliencyHook` and the augmentations, that converts the input batch with `Tensor.to(**kw)`"
    def conv(c): c.learn.xb = (c.xb[0].to(**kw), *c.xb[1:])
    return cb(-10, before_batch=conv)

SETUPS = {  # each augmentation of the registry, and the fills and pairings of this suite
    **AUGMENTATIONS,
    'sprinkles-zero-0.5':  lambda: [ProgressiveSprinkles(p=1., n=(2, 4), size=.25, fill='zero', opacity=.5)],
    'sprinkles-mean':      lambda: [ProgressiveSprinkles(p=1., n=(2, 4), size=.25, fill='mean')],
    'sprinkles-mean-0.5':  lambda: [ProgressiveSprinkles(p=1., n=(2, 4), size=.25, fill='mean', opacity=.5)],
    'sprinkles-noise-1':   lambda: [ProgressiveSprinkles(p=1., n=(2, 4), size=.25, fill='noise')],
    'cutmix-shuffle':      lambda: [CutMix(pairing='shuffle')],
}
MODES = ('fp16', 'bf16', 'cpu_autocast', 'channels_last', 'bf16_inputs')

def train(setup, mode):
    "A tiny learner fitted with `setup`'s callbacks under `mode` for one epoch, its loss function and record"
    lf, rec, ac = CrossEntropyLossFlat(), Record(), CpuAutocast()
    cbs = [Before(), rec, *SETUPS[setup]()]
    model = tiny_cnn()
    if mode == 'cpu_autocast': cbs += ac.cbs()
    if mode == 'channels_last': model, cbs = model.to(memory_format=CL), cbs + [convert_xb(memory_format=CL)]
    if mode == 'bf16_inputs':  # predictions back to float32, as MixedPrecision does: fastai's loss smoothing needs it
        model = model.to(torch.bfloat16)
        cbs += [convert_xb(dtype=torch.bfloat16), cb(5, after_pred=lambda c: setattr(c.learn, 'pred', c.pred.float()))]
    learn = Learner(make_dls(), model, loss_func=lf, cbs=cbs)
    if mode == 'fp16': learn.to_fp16()
    if mode == 'bf16': learn.to_bf16()
    try: quiet(learn, 'fit', 1, 1e-2)
    finally: ac.leave()  # never leave an autocast open for the next test
    return learn, lf, rec

# ---------------------------------------------------------------- training under each precision and memory format

@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('setup', list(SETUPS))
def test_training_keeps_dtype_format_and_finite_values(setup, mode):
    learn, lf, rec = train(setup, mode)
    assert learn.loss_func is lf
    assert len(rec.rows) == N_TRAIN//BS
    want = torch.bfloat16 if mode == 'bf16_inputs' else torch.float32
    for r in rec.rows:
        assert r['dtype'] == want, f"the augmented batch is {r['dtype']}, the input was {want}"
        assert r['cl'] == (mode == 'channels_last'), "the augmented batch changed memory format"
        assert r['finite'] and r['changed']
        assert r['loss'] and r['loss_grad']
        if 'sal_dtype' in r: assert r['sal_dtype'] == torch.float32 and r['sal_finite'] and r['sal_any']
    if mode == 'cpu_autocast': assert all(r['pred_dtype'] == torch.bfloat16 for r in rec.rows)  # the autocast is real
    if mode in ('fp16', 'bf16'): assert learn.mixed_precision.autocast is None  # MixedPrecision ran its after_fit
    # train and valid loss
    assert learn.recorder.values and all(torch.isfinite(torch.tensor(v)) for v in learn.recorder.values[-1])

# ---------------------------------------------------------------- functions on float16 and bfloat16 tensors

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('fill', ['zero', 'mean', 'noise'])
@pytest.mark.parametrize('opacity', [1., .5])
def test_sprinkle_on_half_tensors(dtype, fill, opacity):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 16, 16, generator=g).to(dtype)
    stats = dict(mean=MEAN, std=STD) if fill == 'mean' else {}
    for xin in (x, x.to(memory_format=CL)):
        r = sprinkle(xin, 1., (2, 4), .25, fill, opacity, return_mask=True, generator=torch.Generator().manual_seed(2),
                     **stats)
        assert r.x.dtype == dtype and r.x.shape == x.shape and finite(r.x)
        assert r.x.is_contiguous(memory_format=CL) == (xin is not x)
        m = r.mask.expand_as(x)
        assert bool(m.any()) and bool((r.coverage > 0).all())
        assert torch.equal(r.x[~m], x[~m])  # outside the holes: the input, bit for bit
        if fill != 'noise':  # 'zero', and 'mean' (the mean colour is 0 in the normalised space): x*(1 - opacity)
            assert torch.allclose(r.x[m].float(), x[m].float()*(1 - opacity), atol=1e-2, rtol=1e-2)
        else: assert bool((r.x[m] != x[m]).any())

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cutmix_on_half_tensors(dtype):
    x = torch.randn(8, 3, 16, 16).to(dtype)
    for pairing in ('shuffle', 'roll'):
        r = cutmix(x, pairing=pairing)
        assert r.x.dtype == dtype and finite(r.x) and r.lam.dtype == torch.float32
        assert bool(((r.lam >= 0) & (r.lam <= 1)).all())

def test_saliency_under_cpu_bf16_autocast_is_finite_float32():
    net, x, y = tiny_cnn(), torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert net(x).dtype == torch.bfloat16  # the autocast is active
        maps = [saliency(net, x, y), lowres_saliency(net, x, y, 2.)]
    for s in maps:
        assert s.dtype == torch.float32 and s.shape == (4, 16, 16)
        assert finite(s) and bool((s >= 0).all()) and bool(s.sum() > 0)

def test_saliency_of_a_bfloat16_model_is_finite_float32():
    net = tiny_cnn().to(torch.bfloat16)
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.bfloat16), torch.tensor([0, 1, 2, 0])
    for s in (saliency(net, x, y), lowres_saliency(net, x, y, 2.)):
        assert s.dtype == torch.float32 and s.shape == (4, 16, 16) and finite(s) and bool(s.sum() > 0)
