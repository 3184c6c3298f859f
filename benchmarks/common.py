"What every benchmark script reports about the machine: its CPU, and how busy other processes kept it."
import os, platform

def cpu_seconds():
    "(CPU seconds used by all processes, by this one) so far; None where /proc/stat is missing"
    try: busy = sum(int(v) for i, v in enumerate(open('/proc/stat').readline().split()[1:]) if i not in (3, 4))
    except OSError: return None
    t = os.times()
    return busy/os.sysconf('SC_CLK_TCK'), t.user + t.system

def cpu_name() -> str:
    "The CPU's model name"
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

def other_load(c0, w0:float, now:float) -> str:
    "How many CPUs other processes used on average since `c0 = cpu_seconds()` at wall time `w0`"
    if not c0 or not (c1 := cpu_seconds()): return ''
    return (f"other processes used {((c1[0]-c0[0]) - (c1[1]-c0[1]))/(now-w0):.2f} of the {os.cpu_count()} CPUs on "
            f"average during the run (0 = a quiet machine)")

def sync(dev):
    "Wait for the GPU's queued work, so that a timing covers it"
    import torch
    if dev.type == 'cuda': torch.cuda.synchronize()

def run_rounds(fns:dict, dev, repeats:int, warmup:int=3) -> dict:
    "Median and min time (ms) of each callable, timed in interleaved rounds"
    import statistics, time
    for f in fns.values():
        for _ in range(warmup): f()
    ts = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            sync(dev); t = time.perf_counter(); f(); sync(dev)
            ts[k].append((time.perf_counter() - t)*1e3)
    return {k: (statistics.median(v), min(v)) for k, v in ts.items()}

def bench_train_step(dev, repeats:int, B:int, C:int, H:int, W:int, n_cls:int=10):
    "One SGD step of fastai's xresnet18 on a random batch, for scale"
    import torch
    from fastai.vision.models.xresnet import xresnet18
    model = xresnet18(n_out=n_cls).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(B, C, H, W, device=dev); y = torch.randint(0, n_cls, (B,), device=dev)
    def step():
        opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    t = run_rounds({'step': step}, dev, repeats, warmup=1)['step']
    print(f"\nxresnet18 training step (bs {B}, {H} px, SGD) on {dev.type}: median {t[0]:.0f} ms (min {t[1]:.0f} ms)")
    return t
