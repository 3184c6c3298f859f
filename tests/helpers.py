"Helpers shared by the learner tests: run a learner quietly, and make a callback from a few events."
import warnings
from fastai.basics import Callback

def quiet(learn, meth='fit', *args, **kwargs):
    "Call `learn.meth(*args, **kwargs)` without progress bars, logging or warnings (GradScaler and autocast warn without CUDA)"
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
