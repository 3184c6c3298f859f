"""Cost of KeepAugment's saliency: training-step time of Cutout against KeepCutout with full, low-resolution and
early-head maps.

Run from the repository root:

    .venv/bin/python benchmarks/bench_keep.py [--size 128] [--bs 64] [--rounds 3] [--batches 3] [--threads 2]

Each method is a fastai `Learner` (xresnet18, 10 classes, Adam, float32) on the same synthetic batches of
`bs`x3x`size`x`size`: Cutout is `ProgressiveSprinkles(p=1, n=1, size=0.5)` (one black square of half the shorter
side, centred anywhere, clipped), and KeepCutout is `SaliencyHook(mode)` + `KeepCutout(size=0.5)`; 'early' is the
early head on the half-size copy (factor 2, the default) and 'early f1' at full size, the paper's variant. A step is
timed from the first callback's `before_batch` to `after_batch` (augmentation, saliency, forward, loss, backward,
optimizer step). Methods take turns, `--batches` training batches each per round, for `--rounds` rounds, so load
from other processes hits them alike; the first round is a warm-up and is not counted. Region scoring (summed-area
table, scores of every position, quantile and draw) is timed alone on maps of the same batch.
"""
import argparse, os, statistics, time, warnings
from datetime import datetime, timezone
warnings.filterwarnings('ignore')
import torch
from common import cpu_seconds, cpu_name, other_load
from torch.utils.data import TensorDataset
from fastai.basics import Learner, DataLoaders, TfmdDL, Callback, CrossEntropyLossFlat
from fastai.vision.models.xresnet import xresnet18

from fastai_sprinkles.sprinkles import ProgressiveSprinkles
from fastai_sprinkles.saliency import SaliencyHook
from fastai_sprinkles.keep import KeepCutout, keep_boxes

PAPER = {'KeepCutout full': 38/19, 'KeepCutout lowres': 24/19, 'KeepCutout early f1': 23/19}  # Gong et al., Table 3

class StepTimer(Callback):
    "Wall time of each training step, from the first `before_batch` to `after_batch`"
    order = -100
    def __init__(self): self.times = []
    def before_batch(self):
        if self.training: self.t = time.perf_counter()
    def after_batch(self):
        if self.training:
            if torch.cuda.is_available(): torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--batches', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import fastai
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    print(f"# bench_keep, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name()}" if dev == 'cuda' else ''
    print(f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}{gpu}; "
          f"torch {torch.__version__}, fastai {fastai.__version__}")
    print(f"xresnet18, batch {a.bs}x3x{a.size}x{a.size}, {a.rounds} rounds of {a.batches} steps "
          "(the first round is a warm-up)")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    c0, w0 = cpu_seconds(), time.time()

    g = torch.Generator().manual_seed(0)
    n = a.bs*a.batches
    xs, ys = torch.randn(n, 3, a.size, a.size, generator=g), torch.randint(0, 10, (n,), generator=g)
    methods = {'Cutout': lambda: [ProgressiveSprinkles(p=1., n=1, size=.5)],
               'KeepCutout full': lambda: [SaliencyHook('full'), KeepCutout(size=.5)],
               'KeepCutout lowres': lambda: [SaliencyHook('lowres', factor=2), KeepCutout(size=.5)],
               'KeepCutout early': lambda: [SaliencyHook('early'), KeepCutout(size=.5)],  # factor 2, the default
               # full size: the paper's
               'KeepCutout early f1': lambda: [SaliencyHook('early', factor=1), KeepCutout(size=.5)]}
    learners, timers = {}, {}
    for k, cbs in methods.items():
        torch.manual_seed(0)
        dls = DataLoaders(TfmdDL(TensorDataset(xs, ys), bs=a.bs, shuffle=True, drop_last=True),
                          TfmdDL(TensorDataset(xs[:2], ys[:2]), bs=2), device=dev)
        timers[k] = StepTimer()
        learners[k] = Learner(dls, xresnet18(n_out=10), loss_func=CrossEntropyLossFlat(), cbs=cbs() + [timers[k]])
    for r in range(a.rounds):
        for k, l in learners.items():
            if r == 1: timers[k].times = []  # the first round warms up
            with l.no_bar(), l.no_logging(): l.fit(1, 1e-3)
    med = {k: statistics.median(t.times) for k, t in timers.items()}
    ref = med['Cutout']
    print("\n| method              | steps | median s/step | min s/step | x Cutout | paper (Table 3) |")
    print("|---------------------|------:|--------------:|-----------:|---------:|----------------:|")
    for k, t in timers.items():
        p = f"{PAPER[k]:.2f}" if k in PAPER else "1.00" if k == 'Cutout' else "-"
        print(f"| {k:19s} | {len(t.times):5d} | {med[k]:13.3f} | {min(t.times):10.3f} | {med[k]/ref:8.2f} | {p:>15s} |")

    hook = learners['KeepCutout lowres'].saliency_hook
    x, y = xs[:a.bs].to(dev), ys[:a.bs].to(dev)
    hook.learn = learners['KeepCutout lowres']
    sal = hook.compute(x, y)
    side = round(.5*a.size)
    keep_boxes(sal, side, side)
    ts = []
    for _ in range(20):
        t = time.perf_counter(); keep_boxes(sal, side, side)
        if dev == 'cuda': torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    rs = statistics.median(ts)
    print(f"\nregion scoring (keep_boxes on {a.bs} maps of {a.size}x{a.size}, at most 32x32 candidate centres): "
          f"median {rs*1e3:.1f} ms = {rs/ref:.2%} of a Cutout step")
    verdict = lambda r, t: f"{r:.2f}x ({'MET' if r <= t else 'MISSED'})"
    print(f"\ntargets: lowres <= 1.20x Cutout: {verdict(med['KeepCutout lowres']/ref, 1.2)}; "
          f"early <= 1.15x: {verdict(med['KeepCutout early']/ref, 1.15)} with the default factor 2, "
          f"{verdict(med['KeepCutout early f1']/ref, 1.15)} at full size (factor 1); "
          f"region scoring <= 1% of a step: {rs/ref:.2%} ({'MET' if rs/ref <= .01 else 'MISSED'})")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if (msg := other_load(c0, w0, time.time())): print(msg)

if __name__ == '__main__': main()
