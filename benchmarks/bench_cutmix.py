"""Speed of `fastai_sprinkles.cutmix` against other CutMix implementations, and of the ways to paste the boxes.

Run from the repository root (needs the `bench` extra: timm, kornia; torchvision comes with fastai):

    .venv/bin/python benchmarks/bench_cutmix.py [--repeats 50] [--threads 2] [--no-train]

Every method gets a 64x3x160x160 float32 batch and 10-class integer labels, on the CPU (and CUDA when available),
with alpha=1 and every sample mixed. Methods are timed in interleaved rounds (one call of each per round), so
load from other processes hits them all alike; the table gives medians and minimums in ms and the ratio to
fastai's `CutMix`.

How each is driven:
* ours: `cutmix(x, pairing=...)` (the function) with random partners ('shuffle': copies the permuted batch) and
  partners k places on ('roll': no copy), and `CutMix.before_batch` on a minimal fake learner whose training
  DataLoader shuffles, so that its default `pairing='auto'` rolls (this adds the target check). All return a new
  batch and leave `x` alone. The label side (two loss evaluations in `after_loss`) is not timed: it costs
  microseconds on 64x10 logits.
* fastai `CutMix.before_batch`, the code path of `learn.fit`, on a minimal fake learner (`xb`, `yb`, `x`, `y`,
  `loss_func`) after its `before_train`; it pastes one box into the batch in place, after copying the whole
  shuffled batch.
* timm `Mixup(mixup_alpha=0, cutmix_alpha=1, label_smoothing=0)`, `mode='batch'` (one box) and `mode='elem'` (a
  box per image, a Python loop); in place; the time includes building the mixed one-hot targets.
* torchvision `transforms.v2.CutMix(num_classes=10)`: one box per batch; includes the one-hot targets.
* kornia `RandomCutMixV2(use_correct_lambda=True)`: a box per image; returns labels and λs.
"""
import argparse, os, time, warnings
from datetime import datetime, timezone
from types import SimpleNamespace
warnings.filterwarnings('ignore')
import torch
from common import cpu_seconds, cpu_name, other_load, run_rounds, bench_train_step

from fastai_sprinkles.cutmix import cutmix, CutMix, cutmix_boxes, sample_lam, partners
from fastai_sprinkles.boxes import box_mask

B, C, H, W, N_CLS = 64, 3, 160, 160, 10
FASTAI = 'fastai CutMix.before_batch'
OURS = 'ours CutMix.before_batch'

def fake_learner(x, y, loss_func):
    "Just what a mixing callback reads and writes, with a training DataLoader that shuffles"
    return SimpleNamespace(xb=(x,), yb=(y,), x=x, y=y, loss_func=loss_func, training=True, pct_train=0.,
                           dl=SimpleNamespace(shuffle=True))

def methods(dev, x, y):
    "name -> (callable, boxes, in place)"
    from fastai.callback.mixup import CutMix as FastaiCutMix
    from fastai.losses import CrossEntropyLossFlat
    from timm.data.mixup import Mixup
    import torchvision.transforms.v2 as T
    import kornia.augmentation as K
    buf = x.clone()  # the in-place methods paste into this buffer: their cost does not depend on its values
    fa = FastaiCutMix(1.)
    fa.learn = fake_learner(buf, y, CrossEntropyLossFlat())
    fa.before_train()  # as in fit: takes over the loss (y_int), so the labels are mixed through the loss
    ours_cb = CutMix(1.)
    ours_cb.learn = fake_learner(x, y, CrossEntropyLossFlat())
    def ours_before_batch():
        ours_cb.learn.xb = (x,)
        ours_cb.before_batch()
        return ours_cb.learn.xb[0]
    timm_kw = dict(mixup_alpha=0., cutmix_alpha=1., label_smoothing=0., num_classes=N_CLS)
    tb, te = Mixup(mode='batch', **timm_kw), Mixup(mode='elem', **timm_kw)
    tv = T.CutMix(alpha=1., num_classes=N_CLS)
    kc = K.RandomCutMixV2(use_correct_lambda=True).to(dev)
    return {
        OURS: (ours_before_batch, 'per image', 'no'),
        "ours cutmix, 'roll'": (lambda: cutmix(x, pairing='roll'), 'per image', 'no'),
        "ours cutmix, 'shuffle'": (lambda: cutmix(x, pairing='shuffle'), 'per image', 'no'),
        "ours cutmix, 'roll', per batch": (lambda: cutmix(x, per_sample=False, pairing='roll'), 'per batch', 'no'),
        FASTAI: (fa.before_batch, 'per batch', 'yes'),
        "timm Mixup mode='batch'": (lambda: tb(buf, y), 'per batch', 'yes'),
        "timm Mixup mode='elem'": (lambda: te(buf, y), 'per image', 'yes'),
        'torchvision v2 CutMix': (lambda: tv(x, y), 'per batch', 'no'),
        'kornia RandomCutMixV2': (lambda: kc(x, y), 'per image', 'no'),
    }

def bench_peers(dev, repeats):
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(B, C, H, W, device=dev, generator=g)
    y = torch.randint(0, N_CLS, (B,), device=dev, generator=g)
    rows = methods(dev, x, y)
    times = run_rounds({k: f for k, (f, _, _) in rows.items()}, dev, repeats)
    ref = times[FASTAI][0]
    print(f"\n## {dev.type}: CutMix of a {B}x{C}x{H}x{W} float32 batch, {repeats} rounds\n")
    print(f"| {'method':30s} | boxes     | in place | median ms | min ms | x fastai |")
    print(f"|{'-'*32}|-----------|----------|----------:|-------:|---------:|")
    for k, (_, boxes, inplace) in rows.items():
        med, mn = times[k]
        print(f"| {k:30s} | {boxes:9s} | {inplace:8s} | {med:9.2f} | {mn:6.2f} | {med/ref:8.2f} |")
    ours = times[OURS][0]
    print(f"\ntarget, per-sample CutMix (CutMix's default) no slower than fastai's per-batch CutMix: {ours:.2f} vs "
          f"{ref:.2f} ms = {ours/ref:.2f}x fastai's time ({'MET' if ours <= ref else 'MISSED'})")
    sh = times["ours cutmix, 'shuffle'"][0]
    print(f"with random partners ('shuffle', used when the DataLoader does not shuffle): {sh:.2f} ms = {sh/ref:.2f}x")
    return times

def bench_paste(dev, repeats):
    "Ways to paste each image's box from its partner, given the boxes; all give the same batch"
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(B, C, H, W, device=dev, generator=g)
    torch.manual_seed(0)
    perm = partners(B, device=dev)
    boxes = cutmix_boxes(sample_lam(1., B, dev), H, W)[:, None]
    mask = box_mask(boxes, None, H, W)
    frac = mask.float().mean().item()

    k = 5
    rolled = (torch.arange(B, device=dev) + k) % B
    valid = torch.ones(B, dtype=torch.bool, device=dev)

    def where_new(): return torch.where(mask, x[perm], x)
    def where_into_gather():
        out = x[perm]
        return torch.where(mask, out, x, out=out)
    def where_roll():
        out = torch.empty_like(x)
        torch.where(mask[:B-k], x[k:], x[:B-k], out=out[:B-k]); torch.where(mask[B-k:], x[:k], x[B-k:], out=out[B-k:])
        return out
    def index_pixels():  # gather and scatter only the pasted pixels, by their flat indices
        pix = mask.view(-1).nonzero().squeeze(1)
        b = pix // (H*W); s = pix - b*(H*W)
        out = x.clone()
        out.view(B, C, H*W)[b, :, s] = x.view(B, C, H*W)[perm[b], :, s]
        return out
    def masked_scatter():
        m = mask.expand_as(x)
        return x.clone().masked_scatter_(m, x[perm][m])
    fns = {'torch.where(mask, x[perm], x)': where_new,
           "out = x[perm]; torch.where(mask, out, x, out=out) ('shuffle')": where_into_gather,
           "torch.where on shifted views of x, k=5 ('roll')": where_roll,
           'clone + index only the pasted pixels': index_pixels,
           'clone + masked_scatter_': masked_scatter,
           '(part) x[perm] alone': lambda: x[perm],
           '(part) box_mask(boxes, valid, H, W)': lambda: box_mask(boxes, valid[:, None], H, W)}
    ref = where_new()
    for name, f in fns.items():
        if not name.startswith('(part)'):
            assert torch.equal(f(), torch.where(mask, x[rolled], x) if 'roll' in name else ref), name
    times = run_rounds(fns, dev, repeats)
    print(f"\n## {dev.type}: pasting the boxes ({frac:.0%} of the pixels pasted), {repeats} rounds\n")
    print(f"| {'paste':66s} | median ms | min ms |")
    print(f"|{'-'*68}|----------:|-------:|")
    for k, (med, mn) in times.items(): print(f"| {k:66s} | {med:9.2f} | {mn:6.2f} |")
    return times

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--repeats', type=int, default=50)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--no-train', action='store_true')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import timm, kornia, torchvision, fastai
    print(f"# bench_cutmix, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    cpu = cpu_name()
    print(f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}, fastai {fastai.__version__}, torchvision {torchvision.__version__}, "
          f"timm {timm.__version__}, kornia {kornia.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    c0, w0 = cpu_seconds(), time.time()
    devs = [torch.device('cpu')] + ([torch.device('cuda')] if torch.cuda.is_available() else [])
    for dev in devs:
        if dev.type == 'cuda': print(f"\nGPU: {torch.cuda.get_device_name()}")
        bench_peers(dev, args.repeats)
        bench_paste(dev, max(10, args.repeats//2))
        if not args.no_train: bench_train_step(dev, 3 if dev.type == 'cpu' else 20, B, C, H, W, N_CLS)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if (msg := other_load(c0, w0, time.time())): print(msg)
