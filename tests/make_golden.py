"""Golden batches: what every public function and callback produces for fixed seeds, as compact fingerprints.

`python tests/make_golden.py` writes `tests/golden.json`; `tests/test_golden.py` checks that the code reproduces
it: batches, boxes, masks, labels and partners bit for bit, training losses within a stated tolerance. The file was
written before the core was redesigned, so the test holds the redesign to the same batches for the same seeds: the
evidence sweeps stay comparable across it. Each case calls the current API; where
an API was renamed, the case calls the new name and keeps its key.
"""
import hashlib, json, sys
from pathlib import Path
import torch
from torch import nn, Tensor

GOLDEN = Path(__file__).with_name('golden.json')

def fingerprint(v):
    "A JSON-able fingerprint of `v`: tensors by shape, dtype, sum and a hash of their bytes (values too when small)"
    if isinstance(v, Tensor):
        t = v.detach().as_subclass(Tensor).cpu().contiguous()
        raw = (t if t.dtype != torch.bfloat16 else t.view(torch.int16)).numpy().tobytes()
        f = dict(shape=list(t.shape), dtype=str(t.dtype).replace('torch.', ''),
                 sha=hashlib.sha256(raw).hexdigest()[:16])
        if t.numel(): f['sum'] = float(t.double().sum())
        if t.numel() <= 24: f['values'] = t.tolist()
        return f
    if isinstance(v, dict): return {k: fingerprint(o) for k, o in v.items()}
    if isinstance(v, (tuple, list)): return [fingerprint(o) for o in v]
    if isinstance(v, float): return repr(v)  # exact
    return v

# ---------------------------------------------------------------- functions

def _x(B=4, C=3, H=20, W=24, seed=0):
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(seed))

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

def f_sample_boxes():
    from fastai_sprinkles.boxes import sample_boxes
    out = {}
    for i, kw in enumerate([dict(n=3, size=.2), dict(n=(0, 5), size=(.1, .3), p=.5), dict(n=70, size=.05),
                            dict(n=2, size=torch.tensor([.1, .2, .3, .4, .5]))]):
        g = torch.Generator().manual_seed(i)
        out[f'gen{i}'] = tuple(sample_boxes(5, 20, 24, generator=g, **kw))
        torch.manual_seed(i)
        out[f'global{i}'] = tuple(sample_boxes(5, 20, 24, **kw))
    where = torch.zeros(5, 20, 24); where[:, 5:10, 3:9] = 1.
    where[2] = torch.rand(20, 24, generator=torch.Generator().manual_seed(9))
    out['where'] = tuple(sample_boxes(5, 20, 24, n=4, size=.1, generator=torch.Generator().manual_seed(3), where=where))
    out['empty'] = tuple(sample_boxes(0, 20, 24, n=3, size=.2, generator=torch.Generator().manual_seed(3)))
    return out

def f_paint():
    from fastai_sprinkles.boxes import sample_boxes, box_mask
    from fastai_sprinkles.fills import paint
    x = _x()
    bx = sample_boxes(4, 20, 24, n=3, size=.3, generator=torch.Generator().manual_seed(1))
    m = box_mask(*bx, 20, 24)
    soft = m.float()*torch.rand(m.shape, generator=torch.Generator().manual_seed(2))
    out = dict(mask=m)
    for fill in ('zero', 'mean', 'noise', 0.5, [0.1, 0.2, 0.3]):
        for op in (1., .4):
            for name, mk in (('bool', m), ('soft', soft)):
                for sparse in ((None, False) if fill == 'noise' else (None,)):
                    r = paint(x, mk, fill, op, MEAN, STD, generator=torch.Generator().manual_seed(5), sparse=sparse)
                    out[f'{fill}-{op}-{name}-{sparse}'] = r
    return out

def f_sprinkle():
    from fastai_sprinkles.fills import sprinkle
    x, out = _x(B=6), {}
    for fill in ('zero', 'mean', 'noise', [0.1, 0.2, 0.3]):
        for op in (1., .6):
            for n, size in ((4, .2), ((1, 6), (.05, .25)), (70, .05)):
                g = torch.Generator().manual_seed(7)
                r = sprinkle(x, .8, n, size, fill, op, MEAN, STD, return_mask=True, generator=g)
                out[f'{fill}-{op}-{n}-{size}'] = tuple(r)
    torch.manual_seed(11)
    out['global'] = tuple(sprinkle(x, 1., 5, .2, 'noise', 1., return_mask=True))
    torch.manual_seed(11)
    out['global-zero'] = tuple(sprinkle(x, 1., 5, .2, 'zero', 1., return_mask=True))
    where = torch.zeros(6, 20, 24); where[:, :6] = 1
    out['where'] = tuple(sprinkle(x, 1., 3, .1, generator=torch.Generator().manual_seed(1), where=where,
                                  return_mask=True))
    return out

def f_cutmix():
    from fastai_sprinkles.cutmix import cutmix
    x, out = _x(B=6), {}
    for i, kw in enumerate([dict(), dict(alpha=.4, p=.5), dict(per_sample=False), dict(pairing='roll'),
                            dict(which=torch.tensor([True, False, True, True, False, True]))]):
        torch.manual_seed(i)
        r = cutmix(x, **kw)
        out[f'case{i}'] = dict(x=r.x, lam=r.lam, perm=r.perm, boxes=tuple(r.boxes))
    return out

class PatchNet(nn.Module):
    "Two classes that look at different patches, and a third at the whole image"
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    def forward(self, x):
        if x.shape[-1] != 16: x = nn.functional.interpolate(x, size=(16, 16), mode='bilinear', align_corners=False)
        return (x[:, None]*self.w).sum((2, 3, 4))

def f_saliency():
    from fastai_sprinkles.saliency import saliency, lowres_saliency
    from fastai_sprinkles.boxes import integral_image, region_scores, choose_regions
    m, x, y = PatchNet(), _x(B=4, H=16, W=16), torch.tensor([0, 1, 2, 1])
    s = saliency(m, x, y)
    S = integral_image(s)
    out = dict(full=s, lowres=lowres_saliency(m, x, y, 2.), soft=saliency(m, x, nn.functional.one_hot(y, 3).float()))
    for anchor, stride in (('corner', 1), ('centre', 3)):
        sc, ok = region_scores(S, 5, torch.tensor([3, 4, 5, 6]), anchor=anchor, stride=stride)
        out[f'scores-{anchor}'] = (sc, ok)
        for above in (False, True):
            out[f'choose-{anchor}-{above}'] = choose_regions(sc, ok, .6, above, torch.Generator().manual_seed(2))
    return out

def f_keep():
    from fastai_sprinkles.keep import keep_boxes, keep_centres
    sal = torch.rand(4, 20, 24, generator=torch.Generator().manual_seed(0))
    return dict(cut=keep_boxes(sal, 6, 8, generator=torch.Generator().manual_seed(1)),
                paste=keep_boxes(sal, torch.tensor([2, 4, 6, 8]), 5, .3, above=True, grid=8,
                                 generator=torch.Generator().manual_seed(1)),
                centres=keep_centres(sal, 5, .6, 8))

# ---------------------------------------------------------------- callbacks in a real learner

def _learner(cbs, n_train=48, bs=16, size=24, seed=0):
    from fastai.vision.all import Learner, DataLoaders, TfmdDL, Normalize, CrossEntropyLossFlat, set_seed
    set_seed(seed, reproducible=True)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n_train + 16, 3, size, size, generator=g), torch.randint(0, 3, (n_train + 16,), generator=g)
    tfms = [Normalize.from_stats(MEAN, STD)]
    dls = DataLoaders(TfmdDL(list(zip(x[:n_train], y[:n_train])), bs=bs, shuffle=True, after_batch=tfms),
                      TfmdDL(list(zip(x[n_train:], y[n_train:])), bs=bs, after_batch=tfms))
    torch.manual_seed(seed)
    from fastai.vision.models.xresnet import ResBlock
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ResBlock(1, 8, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 3))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=cbs)

def _fit(cbs, epochs=2, **kw):
    "What the model saw and the loss at every training batch of a short fit with `cbs`"
    import warnings
    from fastai.callback.core import Callback
    rows = []
    class Spy(Callback):
        order = 50
        def after_loss(self):
            if self.training: rows.append(dict(x=self.learn.xb[0], y=self.learn.yb[0], loss=self.learn.loss))
    learn = _learner(list(cbs) + [Spy()], **kw)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn.fit(epochs, 1e-2)
    return rows

def _cfg(name):
    "The callbacks of configuration `name`, made after the learner's seed: the order a sweep makes them in"
    import fastai_sprinkles.all as fs
    from helpers import AUGMENTATIONS
    return {  # variants of this record; each augmentation's own configuration comes from the registry
        'progressive':         lambda: [fs.ProgressiveSprinkles()],
        'progressive-frosted': lambda: [fs.ProgressiveSprinkles(fill='noise', opacity=.7)],
        'progressive-mean':    lambda: [fs.ProgressiveSprinkles(p=.7, n=(2, 9), size=(.05, .2), fill='mean')],
        'sprinkles-fixed':     lambda: [fs.fixed_sprinkles(fs.ProgressiveSprinkles(), 64)],
        'cutmix-batch':        lambda: [fs.CutMix(p=.7, per_sample=False)],
        'cutmix-shuffle':      lambda: [fs.CutMix(alpha=.5, pairing='shuffle')],
        'oneof-sprinkles':     lambda: [fs.OneOf([fs.ProgressiveSprinkles(p=1., n=3, size=.2),
                                                  fs.ProgressiveSprinkles(p=1., n=1, size=.5, fill='noise')],
                                                 ps=[.4, .4])],
        'keep-cutout-full':    lambda: [fs.SaliencyHook('full'),
                                        fs.KeepCutout(p=.8, size=.3, fill='noise', opacity=.5)],
        **AUGMENTATIONS,
    }[name]

# the configurations recorded before the redesign (those of the registry among them: 'cutout', 'cutmix', 'oneof',
# 'keep-cutout', 'keep-cutmix', 'keep-sprinkles', 'selective-paste'), then the registry's later ones
RECORDED = ['progressive', 'progressive-frosted', 'progressive-mean', 'cutout', 'sprinkles-fixed', 'cutmix',
            'cutmix-batch', 'cutmix-shuffle', 'oneof', 'oneof-sprinkles', 'keep-cutout', 'keep-cutout-full',
            'keep-cutmix', 'keep-sprinkles', 'selective-paste']

def _config_names():
    from helpers import AUGMENTATIONS
    return RECORDED + [n for n in AUGMENTATIONS if n not in RECORDED]

def f_fixed_p():
    import fastai_sprinkles.all as fs
    cb = fs.fixed_sprinkles(fs.ProgressiveSprinkles(), 64)
    return dict(p=cb.p, n=cb.n, size=cb.size)

FUNCTIONS = dict(sample_boxes=f_sample_boxes, paint=f_paint, sprinkle=f_sprinkle, cutmix=f_cutmix, saliency=f_saliency,
                 keep=f_keep, fixed_p=f_fixed_p)

def case(name:str):
    "The fingerprint of one case: a function's key in `FUNCTIONS`, or 'fit:' and a configuration name"
    torch.manual_seed(0)
    # the training step is part of the record (the Keep family's maps depend on the trained weights); it runs with the
    # process's threads: test_golden compares its losses within a tolerance that covers the thread count and the kernels
    if name.startswith('fit:'): return fingerprint(_fit(_cfg(name[4:])()))
    return fingerprint(FUNCTIONS[name]())

def all_cases(): return [*FUNCTIONS, *(f'fit:{n}' for n in _config_names())]

def _line(k, v) -> str: return f'{json.dumps(k)}: {json.dumps(v, sort_keys=True)}'

if __name__ == '__main__':
    # `python tests/make_golden.py`: record every case; `python tests/make_golden.py fit:name ...`: record only these
    # (new) cases and add them to the file, leaving the recorded ones as they are
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    torch.set_num_threads(1)  # the record is made with one thread: CPU reductions in one fixed order
    names = sys.argv[1:]
    if not names: lines = [_line(k, case(k)) for k in all_cases()]
    else:
        recorded = json.loads(GOLDEN.read_text())
        if set(names) & set(recorded): sys.exit(f"already recorded: {sorted(set(names) & set(recorded))}")
        lines = GOLDEN.read_text().strip()[2:-2].split(',\n') + [_line(k, case(k)) for k in names]
    GOLDEN.write_text('{\n' + ',\n'.join(lines) + '\n}\n')
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes, {len(lines)} cases)")
