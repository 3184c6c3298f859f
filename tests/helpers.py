"""Helpers shared by the learner tests: run a learner quietly, make a callback from a few events, random image data, and
the registry of augmentations that every "each augmentation" suite runs."""
import warnings
import torch
from torch.utils.data import TensorDataset
from fastai.basics import Callback, DataLoaders, TfmdDL
from fastai.callback.schedule import SchedLin
from fastai_sprinkles.all import (ProgressiveSprinkles, CutMix, OneOf, SaliencyHook, KeepCutout, KeepCutMix,
                                  KeepSprinkles, SelectivePaste, GridMask)

def quiet(learn, meth='fit', *args, **kwargs):
    """Call `learn.meth(*args, **kwargs)` without progress bars, logging or warnings (GradScaler and autocast warn
    without CUDA)"""
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return getattr(learn, meth)(*args, **kwargs)

def cb(order=0, **events):
    "A `Callback` made of `events`, with an `order`"
    c = Callback(**events)
    c.order = order
    return c

def rows(hist:dict) -> list:
    "A callback's `hist` ({name: values}) as one dict per batch"
    return [dict(zip(hist, vals)) for vals in zip(*hist.values())]

def rand_dls(n=96, bs=16, seed=0, size=16, n_out=3):
    "Random images and labels: two thirds to train on (shuffled), a third to validate"
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.randn(n, 3, size, size, generator=g), torch.randint(0, n_out, (n,), generator=g)
    k = n*2//3
    return DataLoaders(TfmdDL(TensorDataset(xs[:k], ys[:k]), bs=bs, shuffle=True),
                       TfmdDL(TensorDataset(xs[k:], ys[k:]), bs=bs))

# ---------------------------------------------------------------- every augmentation, registered once

def flip_dim(x):
    "The image-level augmentation `SelectivePaste` wraps here: flipped and dimmed (a function: the learner exports)"
    return x.flip(-1)*.5

# name -> the callbacks of one configuration of each augmentation, made fresh (after the learner's seed, as a sweep
# makes them). Every suite that runs "each augmentation" reads this: export and `load_learner` (test_robustness), no
# host sync on the device path (test_no_sync), reduced precision and channels_last (test_precision), golden batches
# (make_golden), two-process training (dist_worker), `lr_find`/`get_preds` and the contract of the base (test_augment).
# So a new augmentation is registered here, once. Each configuration changes every training batch, and needs no
# `Normalize` in the DataLoaders; a suite adds its own variants (other fills, pairings, ...) beside these.
AUGMENTATIONS = {
    'sprinkles-noise': lambda: [ProgressiveSprinkles(p=1., n=(1, SchedLin(2, 6)), size=(.05, SchedLin(.1, .2)),
                                                     fill='noise', opacity=.7)],
    'cutout':          lambda: [ProgressiveSprinkles(p=1., n=1, size=.5)],
    'cutmix':          lambda: [CutMix()],
    'oneof':           lambda: [OneOf([CutMix(), ProgressiveSprinkles()], ps=[.5, .5])],
    'keep-cutout':     lambda: [SaliencyHook('lowres'), KeepCutout(size=.5)],
    'keep-cutmix':     lambda: [SaliencyHook('lowres'), KeepCutMix()],
    'keep-sprinkles':  lambda: [SaliencyHook('lowres'), KeepSprinkles(p=1., n=(2, 6), size=.15)],
    'selective-paste': lambda: [SaliencyHook('full'), SelectivePaste(flip_dim, size=.4)],
    'gridmask':        lambda: [GridMask()],
}

# name -> the callbacks of one configuration of each augmentation on segmentation batches (masks of the images' size),
# made fresh. Read by the segmentation suites: a real `unet_learner` in fp32 and bf16 with export and `load_learner`
# (test_segmentation), no host sync on the device path (test_no_sync). Each changes every training batch and its masks.
SEG_AUGMENTATIONS = {
    'sprinkles-ignore': lambda: [ProgressiveSprinkles(p=1., n=(1, 3), size=.25, mask_fill='ignore')],
    'cutmix':           lambda: [CutMix()],
    'oneof':            lambda: [OneOf([CutMix(), ProgressiveSprinkles(p=1., n=2, size=.25, mask_fill=0)],
                                       ps=[.5, .5])],
    'keep-cutout':      lambda: [SaliencyHook('lowres'), KeepCutout(size=.4, mask_fill=0)],
}
