"""No callback makes the host wait for the device in `before_batch` or `after_loss`, on the path a GPU takes; nor does
`EarlyHeadTrainer` in `before_backward` or `after_step`, in fp32. Segmentation batches (masks edited with the images,
`SEG_AUGMENTATIONS`) are guarded alike.

The test runs on the CPU. `HOST_PATHS = False` sends CPU tensors down the device paths (every choice between a host
and a device path is `boxes.on_host`), and a `TorchDispatchMode` fails on every operator that reads a device value
back to the host (`.item()`, `bool()`, `int()`, `nonzero`, boolean indexing, `repeat_interleave` without its
output size, `multinomial`'s checks, ...) while the callbacks' `before_batch`, `after_loss`, `before_backward` and
`after_step` run. (`.tolist()` bypasses the dispatcher; the callbacks keep their records as tensors and call it only
when `hist` is read.) One read is allowed: Adam's step counter, which stays on the host even when the parameters are on
a GPU (unless the optimizer is `capturable` or `fused`), so that reading it makes no wait."""
import ast
from pathlib import Path
import pytest, torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from fastai.vision.all import Learner, DataLoaders, TfmdDL, Normalize, CrossEntropyLossFlat, set_seed
from fastai.callback.schedule import SchedLin
from fastai.vision.models.xresnet import ResBlock
import fastai_sprinkles.boxes as boxes
from fastai_sprinkles.all import (ProgressiveSprinkles, CutMix, OneOf, SaliencyHook, EarlyHeadTrainer, KeepCutout,
                                  KeepCutMix, Annealer, fixed_sprinkles, on_host)
from fastai.torch_core import TensorMask
from helpers import quiet, cb, AUGMENTATIONS, SEG_AUGMENTATIONS

aten = torch.ops.aten
SYNCING = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.unique_consecutive, aten._unique2,
           aten.unique_dim, aten.multinomial, aten.equal, aten.is_nonzero, aten.bincount, aten.histc,
           aten.masked_scatter, aten.nonzero_numpy}
SYNCING = {op for op in SYNCING if op is not None}

def _bool_index(args) -> bool:
    "Whether an `index`/`index_put` call indexes with a bool (mask) tensor: it lists the True positions on the host"
    idx = args[1] if len(args) > 1 else ()
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in (idx or ()))

class NoSync(TorchDispatchMode):
    "Fail on every operator that makes the host wait for a device value; `host()` lists tensors that live on the host"
    def __init__(self, host=lambda: ()):
        super().__init__()
        self.host = host
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        pk = func.overloadpacket
        if pk is aten._local_scalar_dense and any(args[0] is t for t in self.host()): return func(*args, **kwargs)
        if pk in SYNCING: raise AssertionError(f"{func} reads a device value on the host")
        counts = args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None
        if pk is aten.repeat_interleave and 'output_size' not in kwargs and counts is not None \
                and not counts.is_floating_point():
            raise AssertionError(f"{func} without output_size reads the counts on the host")
        if pk in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_) and _bool_index(args):
            raise AssertionError(f"{func} with a bool mask lists its True positions on the host")
        return func(*args, **kwargs)

def test_the_mode_catches_syncs():
    x = torch.randn(4, 3)
    for f in (lambda: x.sum().item(), lambda: bool(x.sum() > 0), lambda: x.nonzero(), lambda: x[x > 0],
              lambda: torch.multinomial(x.abs(), 1),
              lambda: torch.tensor([1, 2]).repeat_interleave(torch.tensor([1, 2]))):
        with pytest.raises(AssertionError), NoSync(): f()
    with NoSync(): torch.where(x > 0, x, -x).sum()  # no sync: fine

def test_device_path_is_the_one_tested(monkeypatch):
    "A non-CPU tensor takes the device path, and `HOST_PATHS = False` sends CPU tensors down it too"
    assert not on_host(torch.empty(1, device='meta')) and on_host(torch.empty(1))
    monkeypatch.setattr(boxes, 'HOST_PATHS', False)
    assert not on_host(torch.empty(1))

def test_path_choices_go_through_on_host():
    "No module chooses a path by comparing a device type to 'cpu' or 'cuda' itself (autocast and MPS dtypes aside)"
    pkg = Path(boxes.__file__).parent
    found = []
    # run outside the training hot path; `clock == 'cpu'` names a clock
    harness = {'compare.py', 'analysis.py', 'cli.py', 'data.py'}
    for f in (f for f in pkg.glob('*.py') if f.name not in harness):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in ('cpu', 'cuda')
                                                     for c in node.comparators):
                src = ast.get_source_segment(f.read_text(), node)
                if 'device_type' not in src: found.append(f"{f.name}: {src}")
    # `on_host`; the sparse writer it picks
    allowed = {"boxes.py: t.device.type == 'cpu'", "fills.py: t.device.type == 'cpu'"}
    assert set(found) <= allowed, f"path choices outside on_host: {set(found) - allowed}"

N, BS, SIZE = 48, 16, 24

def learner(cbs):
    set_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(N + 16, 3, SIZE, SIZE, generator=g), torch.randint(0, 3, (N + 16,), generator=g)
    tfms = [Normalize.from_stats([.5]*3, [.25]*3, cuda=False)]
    dls = DataLoaders(TfmdDL(list(zip(x[:N], y[:N])), bs=BS, shuffle=True, after_batch=tfms),
                      TfmdDL(list(zip(x[N:], y[N:])), bs=BS, after_batch=tfms))
    dls.c = 3
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ResBlock(1, 8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 3))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=cbs)

CONFIGS = {  # each augmentation of the registry, and variants of this suite
    **AUGMENTATIONS,
    'progressive':          lambda: [ProgressiveSprinkles()],
    'sprinkles-many':       lambda: [ProgressiveSprinkles(p=1., n=70, size=.05, fill='noise')],
    'sprinkles-mean':       lambda: [ProgressiveSprinkles(p=1., n=3, size=.2, fill='mean')],
    'sprinkles-fixed':      lambda: [fixed_sprinkles(ProgressiveSprinkles(), 32)],
    'annealed':             lambda: [ProgressiveSprinkles(p=0., n=3, size=.2),
                                     Annealer({'progressive_sprinkles.p': SchedLin(0, 1), 'bs': SchedLin(16, 24)})],
    'cutmix-roll':          lambda: [CutMix(pairing='roll', p=.5)],
    'cutmix-batch':         lambda: [CutMix(per_sample=False)],
    'oneof-keep':           lambda: [SaliencyHook('lowres'), OneOf([KeepCutMix(), KeepCutout(size=.3)], ps=[.5, .5])],
    'early':                lambda: [SaliencyHook('early'), KeepCutMix()],
    'early-trainer':        lambda: [EarlyHeadTrainer(weight=.5), SaliencyHook('early'), KeepCutMix()],
    'early-trainer-cutmix': lambda: [CutMix(), SaliencyHook('early', factor=1), EarlyHeadTrainer(lr=1e-3)],
    'trainer-alone':        lambda: [EarlyHeadTrainer()],
}
EVENTS = ('before_batch', 'after_loss', 'before_backward', 'after_step')

def adam_steps(cb):
    "The step counters of the Adam of `cb`'s early head, if it has one"
    opt = getattr(cb, 'head_opt', None)
    return [s['step'] for s in opt.state.values()] if opt is not None else []

def guard(cb, calls):
    "Run `cb`'s `EVENTS` under `NoSync`, counting calls; a `SaliencyHook` guards the trainer it adds in `before_fit`"
    if vars(cb).get('_guarded'): return
    object.__setattr__(cb, '_guarded', True)
    for ev in EVENTS:
        f = getattr(cb, ev, None)
        if f is None or getattr(type(cb), ev, None) is None: continue
        def run(f=f, ev=ev):
            if cb.learn.training: calls[ev] = calls.get(ev, 0) + 1
            with NoSync(lambda: adam_steps(cb)): return f()
        object.__setattr__(cb, ev, run)
    if isinstance(cb, SaliencyHook):
        def before_fit(f=cb.before_fit):
            f()
            if cb.trainer is not None: guard(cb.trainer, calls)
        object.__setattr__(cb, 'before_fit', before_fit)

@pytest.mark.parametrize('name', list(CONFIGS))
def test_no_sync_in_the_hot_path(name, monkeypatch):
    monkeypatch.setattr(boxes, 'HOST_PATHS', False)
    cbs, calls = CONFIGS[name](), {}
    for c in cbs: guard(c, calls)
    learn = learner(cbs)
    quiet(learn, 'fit', 2, 1e-2)
    assert calls.get('before_batch', 0) >= 2*N//24, calls  # it ran (and was guarded) at every training batch
    if 'early' in name or 'trainer' in name:  # the early head was trained, guarded, at every training batch
        assert calls.get('before_backward', 0) == calls.get('after_step', 0) == 2*N//BS, calls

SEG_CONFIGS = {  # each segmentation configuration of the registry, and variants of this suite
    **SEG_AUGMENTATIONS,
    'seg-keep-cutmix':  lambda: [SaliencyHook('lowres'), KeepCutMix()],
    'seg-sprinkles-noise': lambda: [ProgressiveSprinkles(p=1., n=(2, 5), size=.2, fill='noise', mask_fill=1)],
    'seg-cutmix-roll':  lambda: [CutMix(pairing='roll')],
}

def seg_learner(cbs):
    "A fully convolutional net on random images with masks of 3 classes"
    set_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(N + 16, 3, SIZE, SIZE, generator=g), torch.randint(0, 3, (N + 16, SIZE, SIZE), generator=g)
    tfms = [Normalize.from_stats([.5]*3, [.25]*3, cuda=False)]
    y = TensorMask(y)
    dls = DataLoaders(TfmdDL(list(zip(x[:N], y[:N])), bs=BS, shuffle=True, after_batch=tfms),
                      TfmdDL(list(zip(x[N:], y[N:])), bs=BS, after_batch=tfms))
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(axis=1, ignore_index=255), cbs=cbs)

@pytest.mark.parametrize('name', list(SEG_CONFIGS))
def test_no_sync_on_segmentation_batches(name, monkeypatch):
    monkeypatch.setattr(boxes, 'HOST_PATHS', False)
    cbs, calls, seen = SEG_CONFIGS[name](), {}, []
    for c in cbs: guard(c, calls)
    learn = seg_learner(cbs)
    rec = cb(50, before_batch=lambda c: seen.append(c.yb[0].clone()) if c.training else None)  # after them
    quiet(learn, 'fit', 2, 1e-2, cbs=rec)
    assert calls.get('before_batch', 0) >= 2*N//24, calls
    assert len(seen) == 2*N//BS and all(y.shape == (BS, SIZE, SIZE) for y in seen)
    assert any(bool((y == 255).any()) for y in seen) == (name == 'sprinkles-ignore')  # masks edited on this path
