"""One process of a 2-process CPU (gloo) training run through `learn.distrib_ctx()`, launched by
`tests/test_distributed.py`.

Usage: `python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py OUT_DIR`

Each rank trains a tiny CNN on tiny synthetic data several times, once per callback setup, and writes
`OUT_DIR/<run>-rank<r>.json` with what it saw at every training batch (batch size, annealed values, a hash of the
hole mask or of the pasted boxes) and a checksum of the model parameters after training.

fastai's distributed code assumes CUDA in two places; the shim below makes it run on the CPU, for this test only:
`DistributedDL._broadcast` moves the shuffled indices to CUDA for the broadcast, and `DistributedTrainer._wrap_dl` reads
`learn.model.device`, which a plain module lacks (recent torch gives `DistributedDataParallel` one).
"""
import hashlib, json, os, sys, warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

torch.set_num_threads(1)
warnings.filterwarnings('ignore')

import torch.distributed as dist
from fastai.basics import Learner, DataLoaders, TfmdDL, Callback, CrossEntropyLossFlat, set_seed
from fastai.callback.schedule import SchedLin
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.torch_core import rank_distrib, num_distrib

from fastai_sprinkles.sprinkles import ProgressiveSprinkles
from fastai_sprinkles.anneal import Annealer
from fastai_sprinkles.saliency import SaliencyHook, unwrap_model
from fastai_sprinkles.keep import KeepCutout
from helpers import AUGMENTATIONS

# ---------------------------------------------------------------- test-only shim for fastai's CUDA assumptions

def _broadcast_cpu(self, t, rank):
    "`DistributedDL._broadcast` without `.cuda()`: gloo broadcasts CPU tensors"
    t = torch.tensor(list(t), dtype=torch.long)
    dist.broadcast(t, rank)
    return t.tolist()

def _wrap_dl_cpu(self, dl):
    "`DistributedTrainer._wrap_dl` with the device taken from the model's parameters"
    if isinstance(dl, DistributedDL): return dl
    return DistributedDL(dl, device=next(self.learn.model.parameters()).device)

DistributedDL._broadcast = _broadcast_cpu
DistributedTrainer._wrap_dl = _wrap_dl_cpu

# ---------------------------------------------------------------- data, model, records

N_TRAIN, N_VALID, BS, N_CLS = 64, 16, 8, 3

def make_dls(bs=BS):
    "Random 3x16x16 images, labels from the mean of the red channel's top-left quarter"
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(N_TRAIN + N_VALID, 3, 16, 16, generator=g)
    ys = (xs[:, 0, :8, :8].mean((1, 2))*6).round().clamp(-1, 1).long() + 1
    return DataLoaders(TfmdDL(TensorDataset(xs[:N_TRAIN], ys[:N_TRAIN]), bs=bs, shuffle=True, num_workers=0),
                       TfmdDL(TensorDataset(xs[N_TRAIN:], ys[N_TRAIN:]), bs=bs, num_workers=0))

def tiny_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, N_CLS))

def digest(t) -> str: return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()

def param_checksum(model):
    "Hash and sum of all parameters"
    ps = torch.cat([p.detach().float().flatten() for p in unwrap_model(model).parameters()])
    return dict(sha1=digest(ps), sum=float(ps.double().sum()))

class Before(Callback):
    "Keep the batch as it is before the augmentations (after `Annealer` and `SaliencyHook`)"
    order = -1
    def before_batch(self):
        if self.training: self.x0 = self.x.clone()

class After(Callback):
    "Record, at each training batch, what the augmentations did"
    order = 1
    def __init__(self): self.rows = []
    def before_batch(self):
        if not self.training: return
        x0, x = self.learn.before.x0, self.x
        mask = (x0 != x).any(1)  # pixels changed by the augmentation: the holes or the pasted boxes
        row = dict(epoch=self.epoch, iter=self.iter, n_iter=self.n_iter, bs=int(x.shape[0]),
                   model=type(self.learn.model).__name__, dl=type(self.learn.dl).__name__,
                   mask_sha1=digest(mask), mask_sum=int(mask.sum()), x_sha1=digest(x),
                   finite=bool(torch.isfinite(x).all()))
        if hasattr(self.learn, 'progressive_sprinkles'): row['p'] = float(self.learn.progressive_sprinkles.p)
        if hasattr(self.learn, 'cut_mix'):
            cm = self.learn.cut_mix
            row.update(boxes=cm.boxes.boxes.tolist(), valid=cm.boxes.valid.tolist(), lam=cm.lam.tolist(),
                       perm=cm.perm.tolist())
        if hasattr(self.learn, 'saliency_hook'):
            row['sal_finite'] = bool(torch.isfinite(self.learn.saliency_hook.sal).all())
        self.rows.append(row)

def train(name, cbs, epochs, out):
    "Fit a fresh learner with `cbs` under `distrib_ctx` and write this rank's record"
    set_seed(0)  # the same seed on every rank, as a training script would do
    learn = Learner(make_dls(), tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=[Before(), After(), *cbs])
    start = param_checksum(learn.model)
    rec = dict(name=name, rank=rank_distrib(), world=num_distrib(), completed=False, start=start)
    with learn.distrib_ctx(sync_bn=False, cpu=True):
        rec['wrapped'] = any(isinstance(c, DistributedTrainer) for c in learn.cbs)
        with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-2)
    rec.update(completed=True, rows=learn.after.rows, params=param_checksum(learn.model),
               train_bs_after=learn.dls.train.bs, anneal=getattr(learn.recorder, 'anneal_hist', None),
               loss=float(learn.recorder.losses[-1]) if learn.recorder.losses else None)
    if hasattr(learn, 'progressive_sprinkles'): rec['hist_p'] = learn.progressive_sprinkles.hist['p']
    (Path(out)/f'{name}-rank{rank_distrib()}.json').write_text(json.dumps(rec))

RUNS = {  # name -> (callbacks, epochs): the runs the tests look into, and each augmentation of the registry
    'sprinkles': (lambda: [Annealer({'progressive_sprinkles.p': SchedLin(0.25, 1.), 'bs': SchedLin(4, 8)}),
                           ProgressiveSprinkles(p=0.5, n=(1, 3), size=0.2, fill='zero')], 2),
    'saliency_full': (lambda: [SaliencyHook('full'), KeepCutout(size=0.25)], 1),
    'saliency_lowres': (lambda: [SaliencyHook('lowres'), KeepCutout(size=0.25)], 1),
    **{name: (make, 1) for name, make in AUGMENTATIONS.items()},  # 'cutmix' among them: CutMix()
}

if __name__ == '__main__':
    out = sys.argv[1]
    (Path(out)/f"pid-rank{os.environ['RANK']}").write_text(str(os.getpid()))  # lets the test end a hung worker
    names = sys.argv[2:] or list(RUNS)
    for name in names:
        make_cbs, epochs = RUNS[name]
        train(name, make_cbs(), epochs, out)
    if dist.is_initialized():  # leave together: a rank that exits while the other still talks to it can abort in gloo
        dist.barrier()
        dist.destroy_process_group()
