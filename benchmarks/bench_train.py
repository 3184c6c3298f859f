"""Training speed with each configuration of `fastai_sprinkles.compare.CONFIGS` against `none`: images per second
and host-device syncs per training step, in one run.

Run from the repository root:

    .venv/bin/python benchmarks/bench_train.py            # on CUDA when there is a GPU, else the small CPU version
    .venv/bin/python benchmarks/bench_train.py --tiny     # seconds, on the CPU: what tests/test_bench.py runs
    [--arch xresnet18] [--size 64] [--bs 32] [--steps 4] [--rounds 3] [--threads 2] [--max-minutes 4.5]

On CUDA: xresnet50 at 128 px, batch 128, bfloat16 autocast and a channels_last model (fastai's
`to_channelslast(amp_mode='bf16')`: `torch.autocast('cuda', torch.bfloat16)` from `before_batch` to `after_loss`),
channels_last batches, `cudnn.benchmark`. On the CPU: xresnet18 at 64 px, batch 32, float32. The batches are random
images already on the device, sliced in order (no per-item collation, no copy), then normalised, so the loader costs
every configuration the same little.

Each configuration is a `Learner` of its own, with the same initial weights. A round fits each for `--steps` training
steps (`fit(1)`, the validation skipped), in an order that rotates from round to round, so load from other processes
and clock changes hit them alike; the first round warms up (cudnn's autotuning, the allocator) and is not counted. A
fit's time runs from before its first batch to after its last, with `torch.cuda.synchronize()` at both ends only, so
the queued GPU work is inside it and the code under test keeps the syncs it makes. imgs/s is the images trained ÷ that
time; a configuration's ratio is its median imgs/s ÷ the median of `none`, over the same rounds. The goal: every
configuration at >= 0.99 of `none`.

Syncs per step are counted in a separate short fit of each configuration (counting slows a step), over the training
batches from the first `before_batch` to the last `after_batch`: on CUDA with `torch.cuda.set_sync_debug_mode('warn')`,
which warns at each synchronizing CUDA call; on the CPU, where nothing waits for a device, as the operators that would
make the host wait for a GPU (those of tests/test_no_sync.py: `.item()`, `nonzero`, a boolean-mask index,
`repeat_interleave` without its output size, ...) while the callbacks take their GPU paths (`boxes.HOST_PATHS = False`).

Under 5 minutes on one GPU by design: 15 configurations x (1 warm-up + 5 rounds) x 20 steps = 1,800 steps of
xresnet50, plus 15 x 5 counted steps; at the 40-80 ms a bf16 step of xresnet50 at 128 px and batch 128 takes on a
current data-centre GPU (an estimate: no GPU timed it yet), that is 1.5-2.5 minutes of steps, and set-up. Rounds stop
early if one more would end past `--max-minutes` (4.5), and the table says how many were run.
"""
import argparse, os, statistics, time, warnings
from datetime import datetime, timezone
from types import SimpleNamespace
warnings.filterwarnings('ignore')
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from common import cpu_seconds, cpu_name, other_load, sync
from fastai.basics import (Learner, DataLoaders, TfmdDL, Callback, CrossEntropyLossFlat, CancelValidException,
                           set_seed, find_bs)
from fastai.vision.core import TensorImage, TensorCategory
from fastai.data.transforms import Normalize
from fastai.vision.core import imagenet_stats
import fastai.callback.channelslast  # noqa: F401 (adds Learner.to_channelslast)

import fastai_sprinkles.boxes as boxes
from fastai_sprinkles.compare import CONFIGS, ARCHS, split_config

GOAL = .99
N_CLS = 10
PRESETS = {  # arch, size, bs, steps, rounds
    'cuda': ('xresnet50', 128, 128, 20, 5),
    'cpu':  ('xresnet18', 64, 32, 4, 3),
    'tiny': ('tiny', 16, 8, 2, 2),
}

def tiny_net(n_out:int=N_CLS):
    "A few convolutions with BatchNorm: the CPU test's model"
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, n_out))

class DeviceDL(TfmdDL):
    "Batches sliced in order from images and labels already on the device: no per-item collation, no copy"
    def __init__(self, xs, ys, bs, **kwargs):
        self.xs, self.ys = xs, ys
        super().__init__(list(range(len(xs))), bs=bs, drop_last=True, **kwargs)
    def create_item(self, s): return 0 if s is None else s
    def create_batch(self, b): return TensorImage(self.xs[b[0]:b[-1] + 1]), TensorCategory(self.ys[b[0]:b[-1] + 1])

def device_data(n:int, size:int, dev, channels_last:bool, seed:int=0) -> tuple:
    "`n` random images of `size` px in [0, 1] and their labels, on `dev`: one copy that every learner reads"
    g = torch.Generator().manual_seed(seed)
    xs, ys = torch.rand(n, 3, size, size, generator=g), torch.randint(0, N_CLS, (n,), generator=g)
    return xs.to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format), ys.to(dev)

def device_dls(xs, ys, bs:int, dev) -> DataLoaders:
    "Training batches of `bs` from `xs`, `ys` (read, never written), normalised with ImageNet's statistics"
    norm = lambda: [Normalize.from_stats(*imagenet_stats, cuda=dev.type == 'cuda')]
    dls = DataLoaders(DeviceDL(xs, ys, bs, after_batch=norm()), DeviceDL(xs[:bs], ys[:bs], bs, after_batch=norm()),
                      device=dev)
    dls.c = N_CLS
    return dls

class Meter(Callback):
    "Images trained and the time of a fit's training batches, synchronised at both ends; no validation"
    order = -1000
    def before_train(self): sync(self.dls.device); self.n, self.t0 = 0, time.perf_counter()
    def after_batch(self):
        if self.training: self.n += find_bs(self.learn.yb)
    def after_train(self): sync(self.dls.device); self.dt = time.perf_counter() - self.t0
    def before_validate(self): raise CancelValidException()

# ---------------------------------------------------------------- counting syncs

aten = torch.ops.aten
SYNCING = {getattr(aten, n, None) for n in ('_local_scalar_dense', 'nonzero', 'masked_select', 'unique_consecutive',
           '_unique2', 'unique_dim', 'multinomial', 'equal', 'is_nonzero', 'bincount', 'histc', 'masked_scatter',
           'nonzero_numpy')} - {None}
INDEXING = (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_)

class SyncCounter(TorchDispatchMode):
    "Count the operators that make the host wait for a device value (the list of tests/test_no_sync.py)"
    def __init__(self):
        super().__init__()
        self.n = 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs, pk = kwargs or {}, func.overloadpacket
        if pk in SYNCING: self.n += 1
        elif pk is aten.repeat_interleave and 'output_size' not in kwargs and len(args) == 1 \
                and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point(): self.n += 1
        elif pk in INDEXING and len(args) > 1 and any(isinstance(t, torch.Tensor) and t.dtype == torch.bool
                                                       for t in (args[1] or ())): self.n += 1
        return func(*args, **kwargs)

class SyncsOn(Callback):
    "Start counting at the first `before_batch` of a training step"
    order = -1000
    def __init__(self, cuda:bool): self.cuda, self.mode, self.n, self.steps = cuda, None, 0, 0
    def before_batch(self):
        if not self.training: return
        if self.cuda: torch.cuda.set_sync_debug_mode('warn')
        else: self.mode = SyncCounter(); self.mode.__enter__()

class SyncsOff(Callback):
    "Stop counting after the last `after_batch`"
    order = 1000
    def __init__(self, on:SyncsOn): self.on = on
    def after_batch(self):
        if not self.training: return
        if self.on.cuda: torch.cuda.set_sync_debug_mode(0)
        elif self.on.mode is not None:
            self.on.mode.__exit__(None, None, None)
            self.on.n += self.on.mode.n
            self.on.mode = None
        self.on.steps += 1

def syncs_per_step(learn, cuda:bool) -> float:
    "Host-device syncs per training step of one short fit of `learn`"
    on = SyncsOn(cuda)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        host, boxes.HOST_PATHS = boxes.HOST_PATHS, False  # the paths a GPU takes, on the CPU too
        try:
            with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=[on, SyncsOff(on)])
        finally:
            boxes.HOST_PATHS = host
            if cuda: torch.cuda.set_sync_debug_mode(0)
    n = sum('synchroniz' in str(w.message) for w in ws) if cuda else on.n
    return n/max(on.steps, 1)

# ---------------------------------------------------------------- the run

def make_learner(name, a, data, dev, cuda:bool):
    "The `Learner` of configuration `name`: the same data and initial weights as every other"
    set_seed(0)
    dls = device_dls(*data, a.bs, dev)
    cbs, tfms = split_config(CONFIGS[name](SimpleNamespace(size=a.size, bs=a.bs, epochs=1, seed=0)))
    for t in tfms: dls.train.after_batch.add(t)
    model = tiny_net() if a.arch == 'tiny' else ARCHS[a.arch](n_out=N_CLS)
    meter = Meter()
    learn = Learner(dls, model.to(dev), loss_func=CrossEntropyLossFlat(), cbs=cbs + [meter])
    if cuda: learn.to_channelslast(amp_mode='bf16')
    return learn, meter

def fit_once(learn) -> None:
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', choices=['cuda', 'cpu'], default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--tiny', action='store_true', help='the tiny CPU version the tests run')
    ap.add_argument('--arch', help="'tiny' or a key of compare.ARCHS (default: xresnet50 on CUDA, xresnet18 on CPU)")
    ap.add_argument('--size', type=int)
    ap.add_argument('--bs', type=int)
    ap.add_argument('--steps', type=int, help='training steps per fit')
    ap.add_argument('--rounds', type=int, help='timed rounds, after one warm-up round')
    ap.add_argument('--threads', type=int, default=2, help='torch threads on the CPU')
    ap.add_argument('--max-minutes', type=float, default=4.5, help='start no round that would end later than this')
    a = ap.parse_args()
    preset = PRESETS['tiny' if a.tiny else a.device]
    for k, v in zip(('arch', 'size', 'bs', 'steps', 'rounds'), preset):
        if getattr(a, k) is None: setattr(a, k, v)
    if a.arch != 'tiny' and a.arch not in ARCHS: ap.error(f"--arch must be 'tiny' or one of {list(ARCHS)}")
    dev, cuda = torch.device(a.device), a.device == 'cuda'
    if cuda: torch.backends.cudnn.benchmark = True
    else: torch.set_num_threads(a.threads)
    t_start = time.time()

    import fastai
    print(f"# bench_train, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    gpu = f", GPU {torch.cuda.get_device_name()}" if cuda else ''
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}{gpu}; "
          f"torch {torch.__version__}, fastai {fastai.__version__}")
    prec = 'bfloat16 autocast, channels_last' if cuda else 'float32'
    print(f"{a.arch}, batch {a.bs}x3x{a.size}x{a.size}, {prec}, on {dev.type}; {len(CONFIGS)} configurations, "
          f"1 warm-up round + {a.rounds} rounds of {a.steps} steps each")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    c0, w0 = cpu_seconds(), time.time()

    names = list(CONFIGS)
    data = device_data(a.bs*a.steps, a.size, dev, channels_last=cuda)
    learners = {k: make_learner(k, a, data, dev, cuda) for k in names}
    for learn, _ in learners.values(): fit_once(learn)  # warm-up
    syncs = {k: syncs_per_step(learn, cuda) for k, (learn, _) in learners.items()}
    speed = {k: [] for k in names}
    for r in range(a.rounds):
        t = time.time()
        for k in names[r % len(names):] + names[:r % len(names)]:
            learn, meter = learners[k]
            fit_once(learn)
            speed[k].append(meter.n/meter.dt)
        if r + 1 < a.rounds and (time.time() - t_start) + (time.time() - t) > 60*a.max_minutes:
            print(f"stopping after round {r + 1}: another would end past {a.max_minutes} minutes")
            break
    report(speed, syncs, cuda)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}; {time.time() - t_start:.0f} s in all")
    if (msg := other_load(c0, w0, time.time())): print(msg)

def report(speed:dict, syncs:dict, cuda:bool):
    "The table of imgs/s, ratios to `none` and syncs per step, and the goal"
    med = {k: statistics.median(v) for k, v in speed.items()}
    base = med['none']
    per_round = {k: [s/b for s, b in zip(v, speed['none'])] for k, v in speed.items()}
    how = 'CUDA sync debug mode' if cuda else 'ops that would wait for a GPU'
    print(f"\n| configuration       | rounds | imgs/s median | min - max           | ÷ none | rounds ÷ none | "
          f"syncs/step ({how}) |")
    print("|---------------------|-------:|--------------:|--------------------:|-------:|--------------:|---:|")
    for k, v in speed.items():
        pr = per_round[k]
        print(f"| {k:19s} | {len(v):6d} | {med[k]:13.1f} | {min(v):8.1f} - {max(v):8.1f} | {med[k]/base:6.3f} | "
              f"{min(pr):5.2f} - {max(pr):5.2f} | {syncs[k]:.2f} |")
    missed = [k for k in speed if med[k]/base < GOAL]
    print(f"\ngoal: every configuration at >= {GOAL} of none's imgs/s (same rounds): "
          + ("MET" if not missed else f"MISSED by {len(missed)} of {len(speed) - 1}: " + ', '.join(
             f"{k} {med[k]/base:.3f}" for k in missed)))

if __name__ == '__main__': main()
