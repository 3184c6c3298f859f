import os, sys, shutil, subprocess
from pathlib import Path
import pytest
from fastai.torch_core import defaults

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# fastai's DataLoaders start `defaults.cpus` worker processes per epoch unless told otherwise. The tests' data are a few
# tensors in memory, so the workers only cost: forking a process with torch loaded, twice an epoch, made half the
# suite's CPU time, nearly all of it system time. Tests load in the main process; a test about workers passes
# `num_workers` itself, and the command-line tests (subprocesses) run as users run them.
defaults.cpus = 0

def run(args, cwd=ROOT, timeout=900, env=None, **kw):
    "Run a command, capturing text output; never raises on a non-zero exit"
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, **kw)

def chromium():
    "Path of a Chromium binary, or None"
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if p := shutil.which(name): return p

@pytest.fixture
def tmp_data(tmp_path, monkeypatch):
    "Point the data module at an empty fastai data folder and no shared archives"
    import fastai_sprinkles.data as d
    root = tmp_path/'fastai-data'
    monkeypatch.setattr(d, 'data_root', lambda: root)
    monkeypatch.setattr(d, 'shared_dirs', lambda: [])
    monkeypatch.setattr(d, 'host_answers', lambda url, timeout=3.: False)
    monkeypatch.delenv('SPRINKLES_DATA', raising=False)
    return root

def pytest_report_header(config):
    "torch's CPU kernels and threads, on which the last bits of float results depend (see tests/test_golden.py)"
    import torch
    cap = torch.backends.cpu.get_cpu_capability()
    return f"torch {torch.__version__}: CPU capability {cap}, {torch.get_num_threads()} threads"

# ---------------------------------------------------------------- CPU time of each test

def _cpu_s() -> tuple:
    "`(user, system)` CPU seconds of this process and of the subprocesses it has waited for"
    import resource
    rs = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(r.ru_utime for r in rs), sum(r.ru_stime for r in rs)

def pytest_addoption(parser):
    parser.addoption('--cpu-durations', type=int, default=0, metavar='N',
                     help='list the N tests and test files that used the most CPU time (user + system, with their '
                          'subprocesses)')

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    t = _cpu_s()
    yield
    u, s = _cpu_s()
    item.config.stash.setdefault(_CPU, {})[item.nodeid] = (u - t[0], s - t[1])

_CPU = pytest.StashKey[dict]()

def pytest_terminal_summary(terminalreporter, config):
    "CPU time, not wall time, is what a test costs on a shared machine: the costliest tests and files, and the total"
    n, times = config.getoption('--cpu-durations'), config.stash.get(_CPU, {})
    if not n or not times: return
    tr, cpu = terminalreporter, {k: u + s for k, (u, s) in times.items()}
    tr.write_sep('=', f'{min(n, len(cpu))} costliest tests in CPU time (user + system, subprocesses included)')
    for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])[:n]: tr.write_line(f'{v:8.1f}s  {k}')
    files = {}
    for k, v in cpu.items(): files[k.split('::')[0]] = files.get(k.split('::')[0], 0.) + v
    tr.write_sep('=', f'{min(n, len(files))} costliest test files in CPU time')
    for k, v in sorted(files.items(), key=lambda kv: -kv[1])[:n]: tr.write_line(f'{v:8.1f}s  {k}')
    u, s = (sum(t[i] for t in times.values()) for i in (0, 1))
    tr.write_line(f'{u + s:8.1f}s  in all ({u:.1f}s user, {s:.1f}s system), over {len(times)} tests')
