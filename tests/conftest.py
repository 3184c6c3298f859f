import os, sys, shutil, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

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
