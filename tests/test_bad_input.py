"The bad-input table: every public parameter, the bad values tried and the error each gets; non-image batches given to the image callbacks."
import ast, inspect, json, re, warnings
from pathlib import Path

import torch
torch.set_num_threads(1)
import pytest
from torch import nn
from torch.utils.data import TensorDataset
import fastai.callback.progress  # Learner.no_bar
from fastai.basics import Learner, DataLoaders, TfmdDL, CrossEntropyLossFlat
from fastai.callback.schedule import SchedLin
from fastai.callback.mixup import CutMix as FastaiCutMix

from fastai_sprinkles.boxes import sprinkle, paint, sample_boxes
from fastai_sprinkles.sprinkles import ProgressiveSprinkles
from fastai_sprinkles.anneal import Annealer
from fastai_sprinkles.cutmix import CutMix, cutmix, OneOf
from fastai_sprinkles.saliency import SaliencyHook, saliency, lowres_saliency, choose_regions
from fastai_sprinkles.keep import KeepCutout, KeepCutMix, KeepSprinkles, SelectivePaste, keep_boxes

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- the table (the docs notebook `*bad_input*` holds the same)

nan, inf = float('nan'), float('inf')
X = torch.randn(4, 3, 16, 16)                               # a valid batch: 4 images, 3 channels, 16x16
Y = torch.tensor([0, 1, 2, 0])                              # its targets
torch.manual_seed(0)
NET = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
SAL = torch.rand(4, 16, 16)                                 # saliency maps
SCORES, VALID = torch.rand(4, 5, 5), torch.ones(4, 5, 5, dtype=torch.bool)

CALLS = {  # a valid call of every function; each case replaces (or adds) one argument
    'sprinkle': lambda **kw: sprinkle(**{**dict(x=X, p=1., n=2, size=.2), **kw}),
    'paint': lambda **kw: paint(**{**dict(x=X, mask=torch.ones(4, 1, 16, 16, dtype=torch.bool)), **kw}),
    'sample_boxes': lambda **kw: sample_boxes(**{**dict(B=4, H=16, W=16), **kw}),
    'ProgressiveSprinkles': lambda **kw: ProgressiveSprinkles(**kw),
    'Annealer': lambda **kw: Annealer(**{**dict(scheds={'bs': 16}), **kw}),
    'CutMix': lambda **kw: CutMix(**kw),
    'cutmix': lambda **kw: cutmix(**{**dict(x=X), **kw}),
    'OneOf': lambda **kw: OneOf(**{**dict(augs=[CutMix(), ProgressiveSprinkles()]), **kw}),
    'SaliencyHook': lambda **kw: SaliencyHook(**kw),
    'saliency': lambda **kw: saliency(**{**dict(model=NET, x=X, y=Y), **kw}),
    'lowres_saliency': lambda **kw: lowres_saliency(**{**dict(model=NET, x=X, y=Y), **kw}),
    'KeepCutout': lambda **kw: KeepCutout(**kw),
    'KeepCutMix': lambda **kw: KeepCutMix(**kw),
    'KeepSprinkles': lambda **kw: KeepSprinkles(**kw),
    'SelectivePaste': lambda **kw: SelectivePaste(**{**dict(tfm=lambda x: x.flip(-1)), **kw}),
    'choose_regions': lambda **kw: choose_regions(**{**dict(scores=SCORES, valid=VALID), **kw}),
    'keep_boxes': lambda **kw: keep_boxes(**{**dict(sal=SAL, h=4, w=4), **kw}),
}
ENV = dict(torch=torch, nan=nan, inf=inf, SchedLin=SchedLin, CutMix=CutMix, ProgressiveSprinkles=ProgressiveSprinkles,
           FastaiCutMix=FastaiCutMix, SaliencyHook=SaliencyHook, KeepCutout=KeepCutout, KeepCutMix=KeepCutMix,
           KeepSprinkles=KeepSprinkles, SelectivePaste=SelectivePaste, OneOf=OneOf)

T, V = 'TypeError', 'ValueError'
CASES = [  # (function, parameter, bad value, other arguments, error type, part of the message)
    ('sprinkle', 'x', 'torch.rand(4, 16)', '', T, 'x must be a 4-D floating point tensor (B, C, H, W)'),
    ('sprinkle', 'x', 'torch.zeros(4, 3, 16, 16, dtype=torch.uint8)', '', T, 'x must be a 4-D floating point tensor (B, C, H, W)'),
    ('sprinkle', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('sprinkle', 'p', 'nan', '', V, 'p must be in [0, 1]'),
    ('sprinkle', 'p', 'True', '', V, 'p must be in [0, 1]'),
    ('sprinkle', 'n', '-1', '', V, 'n must be >= 0'),
    ('sprinkle', 'n', '(3, 1)', '', V, 'n=(3, 1) is inverted'),
    ('sprinkle', 'n', '2.5', '', T, 'n must be an int or a (lo, hi) pair of them'),
    ('sprinkle', 'size', '0', '', V, 'size must be > 0 and finite'),
    ('sprinkle', 'size', 'inf', '', V, 'size must be > 0 and finite'),
    ('sprinkle', 'size', '(0.3, 0.1)', '', V, 'size=(0.3, 0.1) is inverted'),
    ('sprinkle', 'size', 'True', '', T, 'size must be a number or a (lo, hi) pair of them'),
    ('sprinkle', 'fill', "'red'", '', V, "fill must be one of ('zero', 'mean', 'noise') or a pixel colour"),
    ('sprinkle', 'fill', "'mean'", '', V, "fill='mean' paints the data set mean, so it needs mean and std"),
    ('sprinkle', 'fill', '[0., 0.]', '', V, 'fill has 2 values but x has C=3 channels'),
    ('sprinkle', 'fill', 'nan', '', V, 'fill must be finite'),
    ('sprinkle', 'opacity', '0', '', V, 'opacity must be in (0, 1]'),
    ('sprinkle', 'opacity', 'nan', '', V, 'opacity must be in (0, 1]'),
    ('sprinkle', 'mean', '[.5]*3', '', V, 'mean and std must be given together'),
    ('sprinkle', 'mean', '[.5]*4', 'std=[.2]*4', V, 'mean has 4 values but x has C=3 channels'),
    ('sprinkle', 'mean', '[nan]*3', 'std=[.2]*3', V, 'mean must be finite'),
    ('sprinkle', 'std', '[0., .2, .2]', 'mean=[.5]*3', V, 'std must be > 0 in every channel'),
    ('sprinkle', 'std', '[nan]*3', 'mean=[.5]*3', V, 'std must be'),
    ('sprinkle', 'return_mask', "'no'", '', T, 'return_mask must be True or False'),
    ('sprinkle', 'generator', "'seed'", '', T, 'generator must be a torch.Generator or None'),
    ('sprinkle', 'inplace', "'no'", '', T, 'inplace must be True or False'),
    ('sprinkle', 'where', 'torch.ones(4, 8, 8)', '', V, 'where must be None or a (B, H, W) = (4, 16, 16) tensor'),
    ('paint', 'x', 'torch.rand(4, 16)', '', T, 'x must be a 4-D floating point tensor (B, C, H, W)'),
    ('paint', 'mask', 'torch.ones(4, 3, 16, 16)', '', V, 'mask must have shape (B, 1, H, W) = (4, 1, 16, 16)'),
    ('paint', 'mask', '[1]', '', V, 'mask must have shape (B, 1, H, W) = (4, 1, 16, 16)'),
    ('paint', 'fill', "'red'", '', V, "fill must be one of ('zero', 'mean', 'noise') or a pixel colour"),
    ('paint', 'fill', 'inf', '', V, 'fill must be finite'),
    ('paint', 'opacity', 'True', '', V, 'opacity must be in (0, 1]'),
    ('paint', 'mean', '[.5]*3', '', V, 'mean and std must be given together'),
    ('paint', 'std', '[-1.]*3', 'mean=[.5]*3', V, 'std must be > 0 in every channel'),
    ('paint', 'generator', "'seed'", "fill='noise'", T, 'generator must be a torch.Generator or None'),
    ('paint', 'inplace', "'no'", '', T, 'inplace must be True or False'),
    ('paint', 'sparse', "'no'", '', T, 'sparse must be True or False'),
    ('sample_boxes', 'B', '-1', '', V, 'B must be an int >= 0'),
    ('sample_boxes', 'B', '2.5', '', V, 'B must be an int >= 0'),
    ('sample_boxes', 'H', '0', '', V, 'H must be an int >= 1'),
    ('sample_boxes', 'W', '-3', '', V, 'W must be an int >= 1'),
    ('sample_boxes', 'n', '-1', '', V, 'n must be >= 0'),
    ('sample_boxes', 'n', '(3, 1)', '', V, 'n=(3, 1) is inverted'),
    ('sample_boxes', 'size', '0', '', V, 'size must be > 0 and finite'),
    ('sample_boxes', 'size', 'nan', '', V, 'size must be > 0 and finite'),
    ('sample_boxes', 'size', '(0.3, 0.1)', '', V, 'size=(0.3, 0.1) is inverted'),
    ('sample_boxes', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('sample_boxes', 'p', 'nan', '', V, 'p must be in [0, 1]'),
    ('sample_boxes', 'generator', "'seed'", '', T, 'generator must be a torch.Generator or None'),
    ('sample_boxes', 'device', "'gpu'", '', 'RuntimeError', 'device string: gpu'),
    ('sample_boxes', 'where', 'torch.ones(4, 8, 8)', '', V, 'where must be None or a (B, H, W) = (4, 16, 16) tensor'),
    ('ProgressiveSprinkles', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('ProgressiveSprinkles', 'p', 'SchedLin(0, 1.5)', '', V, 'p must be in [0, 1]'),
    ('ProgressiveSprinkles', 'p', 'object()', '', T, 'p must be a constant'),
    ('ProgressiveSprinkles', 'n', '(3, 1)', '', V, 'n=(3, 1) is inverted'),
    ('ProgressiveSprinkles', 'n', '-1', '', V, 'n must be >= 0'),
    ('ProgressiveSprinkles', 'size', '0', '', V, 'size must be > 0 and finite'),
    ('ProgressiveSprinkles', 'size', '(0.3, 0.1)', '', V, 'size=(0.3, 0.1) is inverted'),
    ('ProgressiveSprinkles', 'fill', "'red'", '', V, "fill must be one of ('zero', 'mean', 'noise') or a pixel colour"),
    ('ProgressiveSprinkles', 'fill', 'nan', '', V, 'fill must be finite'),
    ('ProgressiveSprinkles', 'opacity', '0', '', V, 'opacity must be in (0, 1]'),
    ('ProgressiveSprinkles', 'opacity', 'nan', '', V, 'opacity must be in (0, 1]'),
    ('ProgressiveSprinkles', 'every', '0', '', V, 'every must be an int >= 1 or None'),
    ('ProgressiveSprinkles', 'every', '2.5', '', V, 'every must be an int >= 1 or None'),
    ('ProgressiveSprinkles', 'every', 'True', '', V, 'every must be an int >= 1 or None'),
    ('ProgressiveSprinkles', 'steps', '0', '', V, 'steps must be an int >= 1 or None'),
    ('ProgressiveSprinkles', 'steps', '-2', '', V, 'steps must be an int >= 1 or None'),
    ('ProgressiveSprinkles', 'mean', '[.5]*3', '', V, 'mean and std must be given together'),
    ('ProgressiveSprinkles', 'std', '[0.]*3', 'mean=[.5]*3', V, 'std must be > 0 in every channel'),
    ('Annealer', 'scheds', '{}', '', T, 'scheds must be a non-empty dict'),
    ('Annealer', 'scheds', "{'lr': 0.1}", '', V, "scheds key 'lr' must be 'bs' (the training batch size) or 'callback_name.attribute'"),
    ('Annealer', 'scheds', "{'bs': 0}", '', V, "scheds['bs'] gives 0; batch sizes must be >= 1"),
    ('Annealer', 'scheds', "{'bs': nan}", '', V, "scheds['bs'] must be a number (a batch size)"),
    ('Annealer', 'scheds', "{'progressive_sprinkles.p': object()}", '', T, "scheds['progressive_sprinkles.p'] must be a constant"),
    ('Annealer', 'every', '0', '', V, 'every must be an int >= 1 or None'),
    ('Annealer', 'every', 'True', '', V, 'every must be an int >= 1 or None'),
    ('Annealer', 'every', "{'nope': 1}", '', V, "every has key 'nope', which is not a key of scheds"),
    ('Annealer', 'steps', '2.5', '', V, 'steps must be an int >= 1 or None'),
    ('Annealer', 'lr_scale', "'cubic'", '', V, "lr_scale must be one of ('none', 'linear', 'sqrt')"),
    ('Annealer', 'lr_scale', "'linear'", "scheds={'progressive_sprinkles.p': .5}", V, "lr_scale='linear' needs a 'bs' key in scheds"),
    ('Annealer', 'ref_bs', '0', '', V, 'ref_bs must be an int >= 1 or None'),
    ('Annealer', 'ref_bs', 'True', '', V, 'ref_bs must be an int >= 1 or None'),
    ('CutMix', 'alpha', '0', '', V, 'alpha must be a finite number > 0'),
    ('CutMix', 'alpha', 'inf', '', V, 'alpha must be a finite number > 0'),
    ('CutMix', 'alpha', 'nan', '', V, 'alpha must be a finite number > 0'),
    ('CutMix', 'alpha', 'True', '', V, 'alpha must be a finite number > 0'),
    ('CutMix', 'p', '-0.1', '', V, 'p must be in [0, 1]'),
    ('CutMix', 'p', 'nan', '', V, 'p must be in [0, 1]'),
    ('CutMix', 'per_sample', "'no'", '', T, 'per_sample must be True or False'),
    ('CutMix', 'pairing', "'random'", '', V, "pairing must be 'auto' or one of ('shuffle', 'roll')"),
    ('cutmix', 'x', 'torch.rand(4, 16)', '', T, 'x must be a 4-D floating point tensor (B, C, H, W)'),
    ('cutmix', 'x', 'torch.zeros(4, 3, 16, 16, dtype=torch.long)', '', T, 'x must be a 4-D floating point tensor (B, C, H, W)'),
    ('cutmix', 'alpha', '-1', '', V, 'alpha must be a finite number > 0'),
    ('cutmix', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('cutmix', 'per_sample', "'no'", '', T, 'per_sample must be True or False'),
    ('cutmix', 'mixed', 'torch.ones(3, dtype=torch.bool)', '', V, 'mixed must be a (B,) = (4,) bool tensor'),
    ('cutmix', 'pairing', "'random'", '', V, "pairing must be one of ('shuffle', 'roll')"),
    ('cutmix', 'place', '3', '', T, 'place must be None or a function of the box sides'),
    ('OneOf', 'augs', '[]', '', V, 'augs must hold at least one augmentation callback'),
    ('OneOf', 'augs', '[CutMix]', '', T, 'augs must be BatchAugment callbacks'),
    ('OneOf', 'augs', '[CutMix(), CutMix()]', '', V, 'augs may hold at most one augmentation that mixes labels'),
    ('OneOf', 'augs', '[FastaiCutMix()]', '', T, "augs must not hold fastai's CutMix"),
    ('OneOf', 'ps', '[0.8, 0.8]', '', V, 'ps must be probabilities in [0, 1] with a sum of at most 1'),
    ('OneOf', 'ps', '[1.]', '', V, 'ps must be a list of 2 numbers, one per augmentation'),
    ('OneOf', 'ps', '[nan, 0.5]', '', V, 'ps must be probabilities in [0, 1]'),
    ('OneOf', 'ps', '[True, False]', '', V, 'ps must be a list of 2 numbers, one per augmentation'),
    ('SaliencyHook', 'mode', "'fast'", '', V, "mode must be one of ('full', 'lowres', 'early')"),
    ('SaliencyHook', 'factor', '0.5', '', V, 'factor must be a number >= 1'),
    ('SaliencyHook', 'factor', 'nan', '', V, 'factor must be a number >= 1'),
    ('SaliencyHook', 'factor', 'True', '', V, 'factor must be a number >= 1'),
    ('SaliencyHook', 'early_weight', '-1', '', V, 'early_weight must be a number >= 0'),
    ('SaliencyHook', 'early_weight', 'inf', '', V, 'early_weight must be a number >= 0'),
    ('SaliencyHook', 'early_layer', '3', '', T, 'early_layer must be a module, a module name or None'),
    ('SaliencyHook', 'early_lr', '-1e-3', '', V, 'early_lr must be a finite number > 0'),
    ('SaliencyHook', 'early_lr', '0', '', V, 'early_lr must be a finite number > 0'),
    ('SaliencyHook', 'early_lr', 'nan', '', V, 'early_lr must be a finite number > 0'),
    ('saliency', 'model', '3', '', T, 'model must be a torch.nn.Module'),
    ('saliency', 'x', 'torch.rand(4, 16)', '', T, 'x must be a 4-D floating point tensor (B, C, H, W)'),
    ('saliency', 'y', 'torch.tensor([0, 1])', '', V, 'y must be one class index per sample'),
    ('saliency', 'y', 'torch.rand(4, 2)', '', V, "y (float targets) must have the output's shape"),
    ('saliency', 'head', '3', '', T, 'head must be None or a function of x'),
    ('lowres_saliency', 'model', '3', '', T, 'model must be a torch.nn.Module'),
    ('lowres_saliency', 'x', 'torch.rand(4, 16)', '', T, 'x must be a 4-D floating point tensor (B, C, H, W)'),
    ('lowres_saliency', 'y', 'torch.tensor([0, 1])', '', V, 'y must be one class index per sample'),
    ('lowres_saliency', 'factor', '0.5', '', V, 'factor must be a number >= 1'),
    ('lowres_saliency', 'factor', 'True', '', V, 'factor must be a number >= 1'),
    ('lowres_saliency', 'factor', '100', '', V, 'factor=100 shrinks 16x16 images to less than 2 pixels a side'),
    ('lowres_saliency', 'head', '3', '', T, 'head must be None or a function of x'),
    ('KeepCutout', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('KeepCutout', 'p', 'True', '', V, 'p must be in [0, 1]'),
    ('KeepCutout', 'size', '0', '', V, 'size must be in (0, 1]'),
    ('KeepCutout', 'size', '1.5', '', V, 'size must be in (0, 1]'),
    ('KeepCutout', 'tau', '0', '', V, 'tau must be in (0, 1)'),
    ('KeepCutout', 'tau', '1', '', V, 'tau must be in (0, 1)'),
    ('KeepCutout', 'tau', 'nan', '', V, 'tau must be in (0, 1)'),
    ('KeepCutout', 'fill', "'red'", '', V, "fill must be one of ('zero', 'mean', 'noise') or a pixel colour"),
    ('KeepCutout', 'fill', 'nan', '', V, 'fill must be finite'),
    ('KeepCutout', 'opacity', '0', '', V, 'opacity must be in (0, 1]'),
    ('KeepCutout', 'mean', '[.5]*3', '', V, 'mean and std must be given together'),
    ('KeepCutout', 'std', '[0.]*3', 'mean=[.5]*3', V, 'std must be > 0 in every channel'),
    ('KeepCutout', 'grid', '0', '', V, 'grid must be an int >= 1'),
    ('KeepCutout', 'grid', '2.5', '', V, 'grid must be an int >= 1'),
    ('KeepCutMix', 'alpha', '0', '', V, 'alpha must be a finite number > 0'),
    ('KeepCutMix', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('KeepCutMix', 'tau', '1.5', '', V, 'tau must be in (0, 1)'),
    ('KeepCutMix', 'pairing', "'random'", '', V, "pairing must be 'auto' or one of ('shuffle', 'roll')"),
    ('KeepCutMix', 'grid', '0', '', V, 'grid must be an int >= 1'),
    ('KeepSprinkles', 'tau', '0', '', V, 'tau must be in (0, 1)'),
    ('KeepSprinkles', 'tau', 'nan', '', V, 'tau must be in (0, 1)'),
    ('KeepSprinkles', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('KeepSprinkles', 'steps', '0', '', V, 'steps must be an int >= 1 or None'),
    ('KeepSprinkles', 'grid', 'True', '', V, 'grid must be an int >= 1'),
    ('SelectivePaste', 'tfm', '3', '', T, 'tfm must be a function of the batch'),
    ('SelectivePaste', 'p', '1.5', '', V, 'p must be in [0, 1]'),
    ('SelectivePaste', 'size', '0', '', V, 'size must be in (0, 1]'),
    ('SelectivePaste', 'grid', '-1', '', V, 'grid must be an int >= 1'),
    ('SelectivePaste', 'tau', '1', '', V, 'tau must be in (0, 1)'),
    ('choose_regions', 'scores', 'torch.rand(4, 25)', '', V, 'scores must be a (B, H, W) tensor'),
    ('choose_regions', 'valid', 'torch.ones(4, 5, 5)', '', V, 'valid must be a bool tensor of the shape of scores'),
    ('choose_regions', 'valid', 'torch.zeros(4, 5, 5, dtype=torch.bool)', '', V, 'some image has no valid position'),
    ('choose_regions', 'tau', '0', '', V, 'tau must be in (0, 1)'),
    ('choose_regions', 'tau', 'nan', '', V, 'tau must be in (0, 1)'),
    ('choose_regions', 'tau', 'True', '', V, 'tau must be in (0, 1)'),
    ('choose_regions', 'above', "'no'", '', T, 'above must be True or False'),
    ('choose_regions', 'generator', "'seed'", '', T, "argument 'generator' must be torch.Generator"),
    ('keep_boxes', 'sal', 'torch.rand(4, 256)', '', V, 'sal must be a (B, H, W) tensor'),
    ('keep_boxes', 'h', '-3', '', V, 'h must be an int >= 0 or a (B,) tensor of them'),
    ('keep_boxes', 'h', '2.5', '', V, 'h must be an int >= 0 or a (B,) tensor of them'),
    ('keep_boxes', 'h', 'True', '', V, 'h must be an int >= 0 or a (B,) tensor of them'),
    ('keep_boxes', 'w', '-1', '', V, 'w must be an int >= 0 or a (B,) tensor of them'),
    ('keep_boxes', 'tau', '0', '', V, 'tau must be in (0, 1)'),
    ('keep_boxes', 'above', "'no'", '', T, 'above must be True or False'),
    ('keep_boxes', 'grid', '0', '', V, 'grid must be an int >= 1'),
    ('keep_boxes', 'grid', 'True', '', V, 'grid must be an int >= 1'),
    ('keep_boxes', 'generator', "'seed'", '', T, "argument 'generator' must be torch.Generator"),
]

NON_IMAGE = [  # (callbacks, batch): a batch that is not (B, C, H, W) images, given to the image callbacks in a fit
    (cbs, batch) for batch in ('tabular', 'tokens') for cbs in (
        "[ProgressiveSprinkles()]", "[CutMix()]", "[OneOf([CutMix(), ProgressiveSprinkles()])]",
        "[SaliencyHook('full')]", "[SaliencyHook('lowres')]", "[SaliencyHook('early', early_layer='0')]",
        "[KeepCutout()]", "[KeepCutMix()]", "[KeepSprinkles()]", "[SelectivePaste(lambda x: x.flip(-1))]",
        "[SaliencyHook('full'), KeepCutMix()]")]
NON_IMAGE_ERROR = ('TypeError', 'x must be a 4-D floating point tensor (B, C, H, W)')

KNOWN_GAPS = {}  # cases the library does not handle yet, with the reason: none at present

# ---------------------------------------------------------------- running a case

def run_case(function, parameter, value, also=''):
    "Call `function` with `parameter` set to the bad `value` (and the other arguments `also`); the error raised, or None"
    kw = {**(eval(f'dict({also})', ENV) if also else {}), parameter: eval(value, ENV)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            CALLS[function](**kw)
    except Exception as e: return e
    return None

def names(parameter, message):
    "Whether `message` names `parameter` as a word of its own"
    return re.search(rf'(?<![\w.]){re.escape(parameter)}(?!\w)', message) is not None

def non_image_dls(batch):
    "DataLoaders of 2-D batches: (B, 5) floats ('tabular') or (B, 6) token ids ('tokens')"
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(32, 5, generator=g) if batch == 'tabular' else torch.randint(0, 10, (32, 6), generator=g)
    ys = torch.randint(0, 2, (32,), generator=g)
    return DataLoaders(TfmdDL(TensorDataset(xs[:24], ys[:24]), bs=8), TfmdDL(TensorDataset(xs[24:], ys[24:]), bs=8))

def non_image_model(batch):
    torch.manual_seed(0)
    if batch == 'tabular': return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    return nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.ReLU(), nn.Linear(24, 2))

def run_non_image(cbs, batch):
    "Fit one epoch on a non-image `batch` with the callbacks `cbs`: the error raised (or None), and whether the weights moved"
    model = non_image_model(batch)
    w0 = [p.detach().clone() for p in model.parameters()]
    learn = Learner(non_image_dls(batch), model, loss_func=CrossEntropyLossFlat(), cbs=eval(cbs, ENV))
    err = None
    try:
        with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            learn.fit(1)
    except Exception as e: err = e
    return err, any(not torch.equal(a, b) for a, b in zip(w0, model.parameters()))

# ---------------------------------------------------------------- the tests

def _param(case, key):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[key])] if key in KNOWN_GAPS else []
    return pytest.param(*case, marks=marks, id='-'.join(map(str, case[:3])))

@pytest.mark.parametrize('function,parameter,value,also,error,message', [_param(c, c[:3]) for c in CASES])
def test_bad_value_is_a_clear_error(function, parameter, value, also, error, message):
    "The bad value is refused with the expected type of error, and the message names the parameter and what is allowed"
    err = run_case(function, parameter, value, also)
    assert err is not None, f"{function}({parameter}={value}) raised nothing"
    assert type(err).__name__ == error, f"{function}({parameter}={value}) raised {type(err).__name__}: {err}"
    assert message in str(err)
    assert names(parameter, str(err))

@pytest.mark.parametrize('cbs,batch', [_param(c, c) for c in NON_IMAGE])
def test_non_image_batch_is_a_clear_error(cbs, batch):
    "A 2-D batch (tabular floats, token ids) given to an image callback fails at the first batch, naming x and (B, C, H, W)"
    err, moved = run_non_image(cbs, batch)
    assert err is not None, f"{cbs} trained on a {batch} batch"
    assert type(err).__name__ == NON_IMAGE_ERROR[0] and NON_IMAGE_ERROR[1] in str(err), f"{type(err).__name__}: {err}"
    assert f"got a 2-D {'torch.float32' if batch == 'tabular' else 'torch.int64'} tensor of shape (8, " in str(err)
    assert not moved  # refused before the first step

FUNCS = dict(sprinkle=sprinkle, paint=paint, sample_boxes=sample_boxes, ProgressiveSprinkles=ProgressiveSprinkles,
             Annealer=Annealer, CutMix=CutMix, cutmix=cutmix, OneOf=OneOf, SaliencyHook=SaliencyHook, saliency=saliency,
             lowres_saliency=lowres_saliency, KeepCutout=KeepCutout, KeepCutMix=KeepCutMix, KeepSprinkles=KeepSprinkles,
             SelectivePaste=SelectivePaste, choose_regions=choose_regions, keep_boxes=keep_boxes)

def test_every_public_parameter_is_tried():
    "Each parameter of each function in the table has at least one bad value (a new parameter needs its row)"
    assert set(FUNCS) == set(CALLS) == {c[0] for c in CASES}
    for name, f in FUNCS.items():
        ps = [p.name for p in inspect.signature(f).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        tried = {c[1] for c in CASES if c[0] == name}
        assert set(ps) <= tried, f"{name}: no bad value tried for {sorted(set(ps) - tried)}"
    assert len({c[:4] for c in CASES}) == len(CASES)  # no case twice

def test_known_gaps_are_cases_and_the_valid_calls_run():
    "Every known gap is a case of a table, and every valid call, without a bad value, runs"
    keys = {c[:3] for c in CASES} | set(NON_IMAGE)
    assert set(KNOWN_GAPS) <= keys, sorted(set(KNOWN_GAPS) - keys)
    for name, call in CALLS.items():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            call()

def _defined(src, name):
    "The node that defines `name` at the top level of the code `src` (the value of an assignment, or a function), or None"
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets): return node.value
        if isinstance(node, ast.FunctionDef) and node.name == name: return node

def test_docs_notebook_holds_the_same_table():
    "The docs notebook's table is this module's: the same calls, cases, non-image batches, known gaps and ways to run them"
    nbs = sorted((ROOT/'nbs').glob('*bad_input*.ipynb'))
    if not nbs: pytest.skip('no bad-input notebook in nbs/')
    cells = [''.join(c['source']) for c in json.loads(nbs[0].read_text())['cells'] if c['cell_type'] == 'code']
    src = '\n'.join(c for c in cells if not c.lstrip().startswith('%'))
    here = Path(__file__).read_text()
    for name in ('CALLS', 'ENV', 'CASES', 'NON_IMAGE', 'NON_IMAGE_ERROR', 'KNOWN_GAPS',
                 'run_case', 'names', 'non_image_dls', 'non_image_model', 'run_non_image'):
        a, b = _defined(src, name), _defined(here, name)
        assert a is not None, f"{nbs[0].name} defines no {name}"
        assert ast.dump(a) == ast.dump(b), f"{name} differs between {nbs[0].name} and {Path(__file__).name}"
