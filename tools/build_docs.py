"""Build the documentation site into `_docs/`: nbdev processes the notebooks, each becomes a Markdown page, MkDocs
(Material theme) renders the site.

Works offline: no fonts, scripts or formulas are fetched (formulas become MathML while building, search runs in the
page).
Also regenerates README.md from `nbs/index.ipynb` unless `--no-readme` is given.
Usage: `.venv/bin/python tools/build_docs.py [--out DIR] [--no-readme]`
"""
import argparse, base64, hashlib, os, re, shutil, sys, tempfile, time
from contextlib import contextmanager
from pathlib import Path
import nbformat, yaml

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent
CELL_KEYS = {'markdown': {'cell_type', 'id', 'metadata', 'source', 'attachments'},
             'raw': {'cell_type', 'id', 'metadata', 'source', 'attachments'},
             'code': {'cell_type', 'id', 'metadata', 'source', 'outputs', 'execution_count'}}
DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+):?\s*(.*)$')
PANDOC_LINK = re.compile(r'\[([^\]]+)\]\(([^)\s]+)\)\{([^}]*)\}')  # [text](url){attrs}: Quarto syntax
FENCE = re.compile(r'^(`{3,}|~{3,})')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*(\{#[^}]*\})?\s*$')
IMAGES = {'image/png': 'png', 'image/jpeg': 'jpg', 'image/svg+xml': 'svg'}


def frontmatter(nb):
    "The YAML front matter cell nbdev puts first, parsed as YAML and removed from `nb`"
    fm = {}
    if nb.cells and nb.cells[0].cell_type == 'raw' and nb.cells[0].source.startswith('---'):
        fm = yaml.safe_load(nb.cells[0].source.split('---')[1]) or {}
        nb.cells = nb.cells[1:]
    return {k: str(v).strip() if isinstance(v, str) else v for k, v in fm.items()}


def directives(src):
    "The `#| key: value` directives at the top of a cell, and the source without them"
    ds, lines = {}, src.splitlines()
    while lines and (m := DIRECTIVE.match(lines[0])):
        ds[m.group(1)] = m.group(2)
        lines = lines[1:]
    return ds, '\n'.join(lines)


def is_warning(o):
    "Whether output `o` is only warnings printed to stderr (library deprecation notices, not content)"
    return o.output_type == 'stream' and o.name == 'stderr' and 'Warning' in o.text


def normalise(nb):
    "Make a processed notebook valid nbformat: drop extra cell keys, apply `echo`/`output` directives"
    cells = []
    for c in nb.cells:
        for k in set(c) - CELL_KEYS[c.cell_type]: del c[k]
        c.metadata = {}
        if c.cell_type == 'code':
            ds, c.source = directives(c.source)
            if ds.get('echo') == 'false': c.metadata['tags'] = ['remove_input']
            if ds.get('output') == 'false': c.outputs = []
            c.outputs = [o for o in c.outputs if not is_warning(o)]
            for o in c.outputs:
                o.pop('metadata', None) if o.output_type == 'stream' else o.setdefault('metadata', {})
                if o.output_type == 'execute_result' and 'execution_count' not in o: o['execution_count'] = None
            if not c.source.strip() and not c.outputs: continue
        cells.append(c)
    nb.cells = cells
    nbformat.validate(nb)
    return nb


# ---------------------------------------------------------------- signatures as the code writes them

def short_type(s):
    "An annotation as text without module paths (`collections.abc.Callable` -> `Callable`) or spaces around `|`"
    parts = re.split(r"('[^']*'|\"[^\"]*\")", s)  # leave string literals (`Literal['a.b']`) alone
    parts = [p if i % 2 else re.sub(r'\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])', '', p) for i, p in enumerate(parts)]
    return re.sub(r'\s*\|\s*', '|', ''.join(parts))


@contextmanager
def faithful_signatures():
    """`show_doc` signatures that show the annotations the code has, and only those.

    fastcore's `docments` puts the type of the default where a parameter has no annotation
    (`p=None` shows as `p:NoneType=None`); here an unannotated parameter shows none."""
    import fastcore.docments as D
    from fastcore.basics import AttrDict
    old = D._get_full, D._type_str
    D._get_full = lambda p, docs, eval_str=False: AttrDict(docment=docs.get(p.name), anno=p.annotation,
                                                          default=p.default, kind=p.kind)
    D._type_str = lambda anno: short_type(old[1](anno))
    try: yield
    finally: D._get_full, D._type_str = old


def stamp():
    "A hash of what nbdev's processed notebooks depend on besides the notebooks: this script and the library"
    h = hashlib.sha256()
    for p in [Path(__file__).resolve(), *sorted((ROOT/'fastai_sprinkles').glob('*.py'))]: h.update(p.read_bytes())
    return h.hexdigest()


def processed(file_glob=''):
    "Run nbdev's notebook processing (show_doc executed with faithful signatures); return the cache folder"
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs
    cache, st = get_config(ROOT).config_path/'_proc', stamp()
    mark = cache/'.sprinkles-stamp'
    force = not mark.exists() or mark.read_text() != st  # the library changed: show_doc outputs are stale
    with faithful_signatures(): cache = proc_nbs(path=str(ROOT/'nbs'), n_workers=0, force=force, file_glob=file_glob)
    if not file_glob: mark.write_text(st)
    elif force and mark.exists(): mark.unlink()
    return cache


# ---------------------------------------------------------------- notebooks as Markdown pages

def pandoc_id(text):
    "The id pandoc (and so nbdev's Quarto site) gives a heading: lowercase, `_-.` kept, spaces to `-`"
    t = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', text)          # links: their text
    t = re.sub(r'\\(.)', r'\1', t)                              # escapes
    t = re.sub(r'[`*]|(?<!\w)_|_(?!\w)', '', t)                 # code and emphasis marks
    t = ''.join(ch for ch in t if ch.isalnum() or ch in '_-.' or ch.isspace())
    t = re.sub(r'\s+', '-', t.strip()).lower()
    return re.sub(r'^[^a-z]+', '', t) or 'section'


def split_fences(md):
    "Split Markdown into (is_code, text) chunks, fenced code blocks apart"
    out, buf, fence = [], [], None
    for line in md.split('\n'):
        m = FENCE.match(line.lstrip())
        if fence is None and m:
            if buf: out.append((False, '\n'.join(buf)))
            buf, fence = [line], m.group(1)
        elif fence is not None and line.strip().startswith(fence[0]*len(fence)) and not line.strip().strip(fence[0]):
            buf.append(line); out.append((True, '\n'.join(buf))); buf, fence = [], None
        else: buf.append(line)
    if buf: out.append((fence is not None, '\n'.join(buf)))
    return out


class Page:
    "One notebook as a Markdown page: its front matter, Markdown text, images and heading ids"
    def __init__(self, path, nb, fm):
        self.path, self.nb, self.fm = path, nb, fm
        self.file = fm.get('output-file', re.sub(r'^\d+[a-zA-Z0-9]*_', '', path.stem.lower()) + '.html')
        self.stem = Path(self.file).stem
        self.title = fm.get('title', self.stem)
        self.ids, self.images = [], {}
        # API entries (show_doc headings) own the anchors nbdev links to: a section of the same name gives way
        self.api_ids = {pandoc_id(m.group(2)) for c in nb.cells if c.cell_type == 'code' for o in c.outputs
                        for l in o.get('data', {}).get('text/markdown', '').split('\n') if (m := HEADING.match(l))}

    def heading(self, line, code_names=False):
        "A heading with an explicit id: pandoc's, as nbdev's links expect; code names keep their underscores"
        m = HEADING.match(line)
        if not m: return line
        hashes, text, explicit = m.groups()
        hid = explicit[2:-1] if explicit else pandoc_id(text)
        base, k = hid, 0
        while hid in self.ids or (not code_names and hid in self.api_ids): k += 1; hid = f'{base}-{k}'
        self.ids.append(hid)
        if code_names: text = text.replace('_', r'\_')
        return f'{hashes} {text} {{#{hid}}}'

    def prose(self, md, code_names=False):
        "Markdown from a cell or a Markdown output: headings with ids, Quarto link attributes as classes"
        chunks = []
        for is_code, txt in split_fences(md):
            if is_code and code_names:
                txt = re.sub(r'^(`{3,})python\s*$', r'\1 { .python .doc-signature }', txt, count=1, flags=re.M)
            if not is_code:
                txt = PANDOC_LINK.sub(lambda m: f'[{m.group(1)}]({m.group(2)})' +
                                      ('{ .doc-source }' if m.group(1) == 'source' else ''), txt)
                txt = '\n'.join(self.heading(l, code_names) if l.startswith('#') else l for l in txt.split('\n'))
            chunks.append(txt)
        return '\n'.join(chunks)

    def image(self, data, ext, n):
        name = f'{self.stem}_files/fig-{n}.{ext}'
        self.images[name] = data.encode() if ext == 'svg' else base64.b64decode(data)
        return f'![figure {n}]({name})'

    def markdown(self):
        "The page as Markdown text for MkDocs"
        desc = self.fm.get('description')
        meta = {'title': self.title, **({'description': desc} if desc else {})}
        parts = ['---\n' + yaml.safe_dump(meta, allow_unicode=True, width=1000) + '---',
                 f'# {self.title} {{#{self.stem}-title}}']
        if desc: parts.append(f'<p class="page-lead" markdown="span">{desc}</p>')
        nfig = 0
        for c in self.nb.cells:
            if c.cell_type == 'markdown': parts.append(self.prose(c.source)); continue
            if c.cell_type != 'code': continue
            if 'remove_input' not in c.metadata.get('tags', []) and c.source.strip():
                parts.append(fenced(c.source, 'python'))
            for o in c.outputs:
                if o.output_type == 'stream':
                    cls = ' .nb-output' + (' .nb-stderr' if o.name == 'stderr' else '')
                    parts.append(fenced(o.text.rstrip('\n'), 'text', cls))
                    continue
                d = o.get('data', {})
                if img := next((k for k in IMAGES if k in d), None):
                    nfig += 1; parts.append(self.image(d[img], IMAGES[img], nfig))
                elif 'text/html' in d:
                    parts.append(f'<div class="nb-output nb-html" markdown="0">\n{d["text/html"].strip()}\n</div>')
                elif 'text/markdown' in d: parts.append(self.prose(d['text/markdown'], code_names=True))
                elif 'text/plain' in d: parts.append(fenced(d['text/plain'].rstrip('\n'), 'text', ' .nb-output'))
        return '\n\n'.join(parts) + '\n'


def fenced(code, lang, classes=''):
    "A fenced code block long enough not to be closed by backticks inside `code`"
    n = max([3] + [len(m) + 1 for m in re.findall(r'`{3,}', code)])
    head = f'{"`"*n} {{ .{lang}{classes} }}' if classes else f'{"`"*n}{lang}'
    return f'{head}\n{code}\n{"`"*n}'


def link_rewriter(pages, doc_url):
    """Links as MkDocs checks them: nbdev's absolute links to this site become relative links to the pages' sources
    (`anneal.md#annealer`); an anchor for a symbol with no entry of its own (a method) goes to its class's entry."""
    ids = {p.file: set(p.ids) for p in pages}
    def target(url):
        if doc_url and url.startswith(doc_url): url = url[len(doc_url):]
        m = re.match(r'^([\w-]+)\.html(?:#(.*))?$', url)
        if not m or m.group(1) + '.html' not in ids: return url
        f, frag = m.group(1) + '.html', m.group(2)
        while frag and frag not in ids[f] and '.' in frag: frag = frag.rsplit('.', 1)[0]
        return m.group(1) + '.md' + (f'#{frag}' if frag else '')
    def rewrite(md):
        return '\n'.join(txt if is_code else re.sub(r'\]\(([^)\s]+)\)', lambda m: f']({target(m.group(1))})', txt)
                         for is_code, txt in split_fences(md))
    return rewrite


def read_nb(p):
    "A notebook as nbdev's processing leaves it, not validated yet (its extra keys are dropped by `normalise`)"
    from nbformat.v4.nbjson import reads
    return reads(Path(p).read_text())


def load_pages(cache):
    "The processed notebooks, index first, then in the notebooks' order"
    nbs = sorted(cache.glob('*.ipynb'), key=lambda p: (p.name != 'index.ipynb', p.name))
    pages = []
    for p in nbs:
        nb = read_nb(p)  # nbdev's extra keys: `normalise` drops them, then validates
        fm = frontmatter(nb)
        pages.append(Page(p, normalise(nb), fm))
    return pages


def doc_url_of(cfg):
    return cfg.doc_url.rstrip('/') + '/' if cfg.doc_url else ''


def write_sources(pages, src, doc_url):
    "Write every page's Markdown, its figures and the site's stylesheet into `src`"
    texts = {p.file: p.markdown() for p in pages}
    rewrite = link_rewriter(pages, doc_url)
    for p in pages:
        (src/(p.stem + '.md')).write_text(rewrite(texts[p.file]))
        for name, data in p.images.items():
            (src/name).parent.mkdir(parents=True, exist_ok=True)
            (src/name).write_bytes(data)
    shutil.copytree(TOOLS/'docs_assets', src/'assets', dirs_exist_ok=True)


def mkdocs_build(pages, src, out):
    "Render the Markdown sources with MkDocs, as configured in mkdocs.yml, pages in the notebooks' order"
    os.environ.setdefault('NO_MKDOCS_2_WARNING', '1')
    import logging
    from mkdocs.config import load_config
    from mkdocs.commands.build import build as mk_build
    cfg = load_config(str(ROOT/'mkdocs.yml'), docs_dir=str(src), site_dir=str(out), strict=True,
                      nav=[{p.title: p.stem + '.md'} for p in pages])
    logging.getLogger('mkdocs').setLevel(logging.WARNING)
    mk_build(cfg)


def build(out=None, readme=True):
    "Process every notebook, render the site into `out` (default `_docs/`) and write README.md; return the HTML pages"
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    out = Path(out or ROOT/'_docs').resolve()
    doc_url = doc_url_of(cfg)
    t0 = time.perf_counter()
    pages = load_pages(processed())
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='sprinkles-docs-') as src:
        write_sources(pages, Path(src), doc_url)
        if out.exists(): shutil.rmtree(out)
        mkdocs_build(pages, Path(src), out)
    print(f'notebooks processed by nbdev in {t1 - t0:.1f} s, site rendered in {time.perf_counter() - t1:.1f} s',
          file=sys.stderr)
    if readme:
        p = next(p for p in pages if p.path.name == cfg.readme_nb)
        (ROOT/'README.md').write_text(readme_text(p.nb, p.fm, doc_url))
    return [out/p.file for p in pages]


# ---------------------------------------------------------------- README.md

def readme_text(nb, fm, doc_url):
    "README.md text from the processed index notebook"
    parts = [f"# {fm.get('title', '')}", ''] + ([f"> {fm['description']}", ''] if fm.get('description') else [])
    parts.append('<!-- Generated from nbs/index.ipynb by tools/build_docs.py: edit the notebook, not this file. -->\n')
    for c in nb.cells:
        if c.cell_type == 'markdown':
            if 'THIS FILE WAS AUTOGENERATED' in c.source: continue
            src = c.source
            if doc_url: src = re.sub(r'\]\((?!https?://|#)([\w-]+\.html)', lambda m: f']({doc_url}{m.group(1)}', src)
            parts += [src, '']
        elif c.cell_type == 'code':
            if c.source.strip() and 'remove_input' not in c.metadata.get('tags', []):
                parts += ['```python', c.source, '```', '']
            for o in c.outputs:
                # prose a cell wrote (from the results, say) is prose in the README too
                if md := o.get('data', {}).get('text/markdown'):
                    parts += [md.rstrip('\n'), '']; continue
                txt = o.get('text') if o.output_type == 'stream' else o.get('data', {}).get('text/plain')
                if txt: parts += ['```', txt.rstrip('\n'), '```', '']
    return '\n'.join(parts).rstrip('\n') + '\n'


def readme_from_index():
    "README.md text as the current index notebook would produce it, without touching any file"
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    cache = processed(file_glob=cfg.readme_nb)
    nb = read_nb(cache/cfg.readme_nb)
    fm = frontmatter(nb)
    return readme_text(normalise(nb), fm, doc_url_of(cfg))


def parser():
    ap = argparse.ArgumentParser(prog='tools/build_docs.py', description=__doc__.split('\n\n')[0],
                                 epilog='Pages are listed as they are written; the site opens from _docs/index.html.')
    ap.add_argument('--out', default=None, metavar='DIR', help='output folder (default: _docs/)')
    ap.add_argument('--no-readme', action='store_true', help='do not rewrite README.md')
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    t0 = time.perf_counter()
    for f in build(a.out, readme=not a.no_readme): print(f)
    print(f'built in {time.perf_counter() - t0:.1f} s', file=sys.stderr)


if __name__ == '__main__': main()
