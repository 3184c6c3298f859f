"""Speed of `fastai_sprinkles.fills.sprinkle` against other random-erasing implementations.

Run from the repository root (needs the `bench` extra: timm, kornia, albumentations):

    .venv/bin/python benchmarks/bench_sprinkles.py [--repeats 50] [--threads 2] [--no-train] [--compiled] [--pieces]

Every method gets a 64x3x160x160 float32 batch, on the CPU (and CUDA when available). Methods are timed in
interleaved rounds (one call of each per round), so load from other processes hits them all alike; the table
gives medians in ms, the ratio to the frosted sprinkle, and the fraction of pixels each method changed
(measured on a constant batch, so the amount of occlusion can be compared too).
"""
import argparse, os, time, warnings
from datetime import datetime, timezone
warnings.filterwarnings('ignore')
import numpy as np, torch
from common import cpu_seconds, cpu_name, other_load, run_rounds, bench_train_step

from fastai_sprinkles.boxes import sample_boxes, box_mask, _mask_cumsum, BOX_BITS
from fastai_sprinkles.fills import sprinkle

def box_mask_bmm(boxes, valid, H, W, dtype=torch.bool):
    """The union of the boxes by a batched matrix product of row and column indicators: the mask builder the library
    does not use"""
    y0, x0, y1, x1 = boxes.unbind(-1)
    r, c = torch.arange(H, device=boxes.device), torch.arange(W, device=boxes.device)
    rows = (r >= y0[..., None]) & (r < y1[..., None])
    if valid is not None: rows &= valid[..., None]
    cnt = torch.bmm(rows.transpose(1, 2).float(), ((c >= x0[..., None]) & (c < x1[..., None])).float()).unsqueeze(1)
    return cnt > 0 if dtype == torch.bool else cnt.clamp_(max=1).to(dtype)

B, C, H, W = 64, 3, 160, 160
N_HOLES, SIZE = 16, 0.1  # 16 holes of 16 px per 160 px image

def peers(dev, x):
    "name -> (callable that augments a batch, whether it works in place, fill description)"
    from timm.data.random_erasing import RandomErasing as TimmRE
    from fastai.vision.augment import RandomErasing as FastaiRE
    from fastai.torch_core import TensorImage
    import torchvision.transforms.v2 as T
    import kornia.augmentation as K
    timm_re = TimmRE(probability=1, mode='pixel', max_count=4, device=dev.type)
    timm_16 = TimmRE(probability=1, mode='pixel', min_count=N_HOLES, max_count=N_HOLES, device=dev.type)
    fastai_re = FastaiRE(p=1, max_count=4)
    tv_re = T.RandomErasing(p=1.)
    kornia_re = K.RandomErasing(p=1.).to(dev)
    res = {
        'timm RandomErasing pixel, max_count=4': (timm_re, True, 'noise, 1-4 boxes/img'),
        'timm RandomErasing pixel, count=16': (timm_16, True, 'noise, 16 boxes/img'),
        # as fastai's pipeline calls it: on the whole TensorImage batch, after Normalize (same boxes for all images)
        'fastai RandomErasing max_count=4': (lambda t: fastai_re(TensorImage(t), split_idx=0), True,
                                             'noise, 1-4 boxes/batch'),
        'torchvision v2 RandomErasing': (tv_re, False, 'zero, 1 box/batch'),
        'kornia RandomErasing': (kornia_re, False, 'zero, 1 box/img'),
    }
    if dev.type == 'cpu':
        import albumentations as A
        cd = A.CoarseDropout(num_holes_range=(N_HOLES, N_HOLES), hole_height_range=(16, 16),
                             hole_width_range=(16, 16), fill='random', p=1.)
        res['albumentations CoarseDropout (loop)'] = ((lambda imgs: [cd(image=im)['image'] for im in imgs]), None,
                                                      'random, 16 holes/img')
    return res

def coverage_of(f, inplace, dev):
    "Fraction of pixels `f` changes in a constant batch"
    if inplace is None:  # albumentations: list of HWC numpy images in [0, 1]
        imgs = [np.full((H, W, C), 0.5, np.float32) for _ in range(B)]
        out = np.stack(f(imgs))
        return float((out != 0.5).any(-1).mean())
    x0 = torch.full((B, C, H, W), 0.5, device=dev)
    out = f(x0.clone())
    return float((torch.as_tensor(out) != 0.5).any(1).float().mean())

def bench_device(dev, repeats):
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(B, C, H, W, device=dev, generator=g)
    buf = x.clone()  # in-place methods work on this buffer: their cost does not depend on its values
    mask = box_mask_bmm(*sample_boxes(B, H, W, N_HOLES, SIZE, generator=g, device=dev), H, W, torch.float32)
    keep = 1 - mask
    sp = dict(p=1., n=N_HOLES, size=SIZE, generator=g)
    ours = {
        'sprinkle noise (frosted)': (lambda t: sprinkle(t, fill='noise', **sp).x, False, 'noise, 16 holes/img'),
        'sprinkle noise, inplace': (lambda t: sprinkle(t, fill='noise', inplace=True, **sp).x, True,
                                    'noise, 16 holes/img'),
        'sprinkle zero': (lambda t: sprinkle(t, fill='zero', **sp).x, False, 'zero, 16 holes/img'),
        'sprinkle zero, inplace': (lambda t: sprinkle(t, fill='zero', inplace=True, **sp).x, True,
                                   'zero, 16 holes/img'),
    }
    rows = {**ours, **peers(dev, x),
            'floor: x.mul_(mask), mask precomputed': (lambda t: t.mul_(keep), True, '(memory traffic only)')}
    imgs = [x[i].permute(1, 2, 0).cpu().numpy().copy() for i in range(B)]
    fns = {}
    for k, (f, inplace, _) in rows.items():
        arg = imgs if inplace is None else buf if inplace else x
        fns[k] = (lambda f=f, arg=arg: f(arg))
    cov = {k: coverage_of(f, inp, dev) for k, (f, inp, _) in rows.items() if not k.startswith('floor')}
    times = run_rounds(fns, dev, repeats)
    ref = times['sprinkle noise (frosted)'][0]
    print(f"\n## {dev.type}: batch {B}x{C}x{H}x{W} float32, {repeats} rounds\n")
    print(f"| {'method':42s} | {'fill, boxes':22s} | median ms | min ms | x frosted | coverage |")
    print(f"|{'-'*44}|{'-'*24}|----------:|-------:|----------:|---------:|")
    for k, (f, inp, desc) in rows.items():
        med, mn = times[k]
        c = f"{cov[k]:.1%}" if k in cov else ''
        print(f"| {k:42s} | {desc:22s} | {med:9.2f} | {mn:6.2f} | {med/ref:9.2f} | {c:>8s} |")
    timm = times['timm RandomErasing pixel, max_count=4'][0]
    floor, zero, zero_ip = (times[k][0] for k in ('floor: x.mul_(mask), mask precomputed', 'sprinkle zero',
                                                  'sprinkle zero, inplace'))
    timm16 = times['timm RandomErasing pixel, count=16'][0]
    print(f"\nfrosted vs timm pixel mode: {ref:.2f} vs {timm:.2f} ms = {ref/timm:.2f}x timm's time with its 1-4 boxes, "
          f"{ref/timm16:.2f}x with 16 boxes as ours ({timm16:.2f} ms)")
    print(f"zero fill vs the floor: {zero:.2f} ms = {zero/floor:.2f}x the floor; "
          f"in place {zero_ip:.2f} ms = {zero_ip/floor:.2f}x")
    return times

def bench_compiled(dev, repeats):
    "Experiment, not part of the library: the zero fill and the random numbers as `torch.compile`d kernels"
    from fastai_sprinkles.boxes import box_sets
    from fastai_sprinkles.fills import fill_values
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(B, C, H, W, device=dev, generator=g)
    keep = 1 - box_mask_bmm(*sample_boxes(B, H, W, N_HOLES, SIZE, generator=g, device=dev), H, W, torch.float32)
    fill = fill_values('zero', C, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], dev)
    @torch.compile(dynamic=False)
    def fused(x, rows, cols, fill):  # mask, fill and coverage in one pass over the batch
        m = (rows[:, None, :, None] & cols[:, None, None, :]) != 0
        x.copy_(torch.where(m, fill, x))
        return m.sum((1, 2, 3))
    zero = lambda: fused(x, *box_sets(sample_boxes(B, H, W, N_HOLES, SIZE, device=dev).boxes, None, H, W), fill)
    n = int(0.143*B*C*H*W)  # about as many numbers as the frosted holes need
    randn_c = torch.compile(lambda: torch.randn(n, device=dev), dynamic=False)
    t0 = time.time(); zero(); t1 = time.time(); randn_c(); t2 = time.time()
    times = run_rounds({'zero': zero, 'zero eager': lambda: sprinkle(x, 1., N_HOLES, SIZE, inplace=True),
                        'floor': lambda: x.mul_(keep), 'randn': lambda: torch.randn(n, device=dev), 'randn_c': randn_c},
                       dev, repeats)
    print(f"\n## {dev.type}: experiment, torch.compile (not in the library), median ms\n")
    print("| what | median ms | min ms |\n|---|---:|---:|")
    for k, name in (('zero', f'zero fill, in place, one compiled kernel (first call compiled in {t1-t0:.1f} s)'),
                    ('zero eager', 'zero fill, in place, the library (eager)'), ('floor', 'floor: x.mul_(mask)'),
                    ('randn', f'torch.randn({n:,}) eager'),
                    ('randn_c', f'torch.randn({n:,}) compiled ({t2-t1:.1f} s)')):
        print(f"| {name} | {times[k][0]:.2f} | {times[k][1]:.2f} |")

def bench_pieces(dev, repeats):
    "The steps of the in-place frosted and zero sprinkles, timed apart in the same rounds as timm and the floor"
    from fastai_sprinkles.checks import check_sprinkle_args
    from fastai_sprinkles.boxes import hole_offsets
    from fastai_sprinkles.fills import fill_values
    from timm.data.random_erasing import RandomErasing as TimmRE
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(B, C, H, W, device=dev, generator=g)
    bx = sample_boxes(B, H, W, N_HOLES, SIZE, generator=g, device=dev)
    w = box_mask(*bx, H, W, torch.float32)
    keep = 1 - w
    at, _ = hole_offsets(*bx, H, W, C)
    z = torch.randn(C*len(at), device=dev)
    fill = fill_values('zero', C, device=dev).expand_as(x)
    timm_re = TimmRE(probability=1, mode='pixel', max_count=4, device=dev.type)
    steps = {
        'checks (check_sprinkle_args)': lambda: check_sprinkle_args(1., N_HOLES, SIZE, 'noise', 1., None, None, x),
        'sample_boxes': lambda: sample_boxes(B, H, W, N_HOLES, SIZE, device=dev),
        'frosted: hole_offsets (runs, strips, counts)': lambda: hole_offsets(*bx, H, W, C),
        f'frosted: torch.randn for the holes ({len(z):,} numbers)': lambda: torch.randn(len(z), device=dev),
        'frosted: write, index_copy_ per channel':
            lambda: [x.view(-1)[c*H*W:].index_copy_(0, at, zc) for c, zc in enumerate(z.view(C, -1))],
        'zero: box_mask, float (runs + index_select)': lambda: box_mask(*bx, H, W, torch.float32),
        'zero: coverage (sum of the mask)': lambda: w.flatten(1).sum(1),
        'zero: fill_values': lambda: fill_values('zero', C, device=dev),
        'zero: blend, lerp_': lambda: x.lerp_(fill, w),
        'whole frosted sprinkle, in place': lambda: sprinkle(x, 1., N_HOLES, SIZE, 'noise', inplace=True),
        'whole zero sprinkle, in place': lambda: sprinkle(x, 1., N_HOLES, SIZE, 'zero', inplace=True),
        'timm RandomErasing pixel, max_count=4': lambda: timm_re(x),
        'floor: x.mul_(mask)': lambda: x.mul_(keep),
    }
    times = run_rounds(steps, dev, repeats)
    print(f"\n## {dev.type}: the steps, timed apart (same rounds), median ms\n")
    print("| step | median ms | min ms |\n|---|---:|---:|")
    for k, (med, mn) in times.items(): print(f"| {k} | {med:.2f} | {mn:.2f} |")

def bench_masks(dev, repeats):
    "The three ways of building the hole mask, by boxes per image"
    g = torch.Generator(device=dev).manual_seed(0)
    print(f"\n## {dev.type}: hole mask (B={B}, {H}x{W}), median ms\n")
    print("| boxes/img | bmm (box_mask_bmm, here) | difference array (_mask_cumsum) | runs (box_mask) |")
    print("|---:|---:|---:|---:|")
    for k in (1, 4, 16, 32, 48, 64, 128, 256):
        bx = sample_boxes(B, H, W, k, SIZE, generator=g, device=dev)
        assert torch.equal(box_mask_bmm(*bx, H, W), _mask_cumsum(*bx, H, W))
        fns = {'bmm': lambda: box_mask_bmm(*bx, H, W, torch.float32),
               'cumsum': lambda: _mask_cumsum(*bx, H, W, torch.float32)}
        if k <= BOX_BITS:
            assert torch.equal(box_mask(*bx, H, W), _mask_cumsum(*bx, H, W))
            fns['runs'] = lambda: box_mask(*bx, H, W, torch.float32)
        t = run_rounds(fns, dev, repeats)
        runs = f"{t['runs'][0]:.2f}" if 'runs' in t else '(over 62 boxes)'
        print(f"| {k} | {t['bmm'][0]:.2f} | {t['cumsum'][0]:.2f} | {runs} |")

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--repeats', type=int, default=50)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--no-train', action='store_true')
    ap.add_argument('--compiled', action='store_true',
                    help='also time the torch.compile experiment (needs a C++ compiler)')
    ap.add_argument('--pieces', action='store_true', help='also time the steps of the in-place sprinkles apart')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import timm, kornia, albumentations, torchvision, fastai
    print(f"# bench_sprinkles, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    cpu = cpu_name()
    print(f"{cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"torch {torch.__version__}, fastai {fastai.__version__}, torchvision {torchvision.__version__}, "
          f"timm {timm.__version__}, kornia {kornia.__version__}, albumentations {albumentations.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    c0, w0 = cpu_seconds(), time.time()
    devs = [torch.device('cpu')] + ([torch.device('cuda')] if torch.cuda.is_available() else [])
    for dev in devs:
        if dev.type == 'cuda': print(f"\nGPU: {torch.cuda.get_device_name()}")
        bench_device(dev, args.repeats)
        bench_masks(dev, max(10, args.repeats//2))
        if args.pieces: bench_pieces(dev, args.repeats)
        if args.compiled: bench_compiled(dev, args.repeats)
        if not args.no_train: bench_train_step(dev, 3 if dev.type == 'cpu' else 20, B, C, H, W)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if (msg := other_load(c0, w0, time.time())): print(msg)
