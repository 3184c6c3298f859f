"""Execute notebooks in place, so that their committed outputs are what the docs show.

Warnings that libraries print to stderr while the notebook runs (a deprecation at import, a progress-bar notice)
say nothing about the lesson and name paths of the machine that ran it: they are left out of the saved outputs.
Anything else on stderr is kept, and tests/test_outputs.py then fails on it, so it gets fixed rather than hidden.
Usage: `.venv/bin/python tools/run_nbs.py nbs/00_data.ipynb [...]`, then `nbdev-clean`.
"""
import argparse, re, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

WARNING = re.compile(r'^\S.*\b\w*Warning: ')  # the first line of a warning as Python prints it


def strip_warnings(text:str) -> str:
    "`text` without the warnings in it: each warning's first line and the indented source line(s) after it"
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if WARNING.match(line): skipping = True; continue
        if skipping and line.startswith((' ', '\t')): continue
        skipping = False
        out.append(line)
    return ''.join(out)


def clean_outputs(nb) -> int:
    "Drop warnings from the stderr streams of `nb`, and streams left empty; return how many streams were changed"
    n = 0
    for c in nb.cells:
        outs = []
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream' and o.get('name') == 'stderr':
                text = strip_warnings(o['text'])
                n += text != o['text']
                if not text.strip(): continue
                o['text'] = text
            outs.append(o)
        if c.cell_type == 'code': c.outputs = outs
    return n


def run(path:Path, timeout:int=1800):
    "Execute notebook `path` in its own folder and save it with cleaned outputs"
    nb = nbformat.read(path, as_version=4)
    t = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name='python3',
                   resources={'metadata': {'path': str(path.parent)}}).execute()
    n = clean_outputs(nb)
    nbformat.write(nb, path)
    print(f"{path.name}: executed in {time.perf_counter() - t:.0f} s, warnings removed from {n} stderr output(s)",
          flush=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--timeout', type=int, default=1800, help='seconds per cell')
    a = ap.parse_args()
    for p in a.notebooks: run(p.resolve(), a.timeout)
