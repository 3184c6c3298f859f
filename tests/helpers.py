"Helpers shared by the learner tests: run a learner quietly, make a callback from a few events, random image data."
import warnings
import torch
from torch.utils.data import TensorDataset
from fastai.basics import Callback, DataLoaders, TfmdDL

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
