"""Build the documentation site into `_docs/`: nbdev processes the notebooks, each becomes a Markdown page, MkDocs
(Material theme) renders the site.

Works offline: no fonts, scripts or formulas are fetched (formulas become MathML while building, search runs in the
page).
Also regenerates README.md from `nbs/index.ipynb` unless `--no-readme` is given.
Usage: `.venv/bin/python tools/build_docs.py [--out DIR] [--no-readme]`
"""
import argparse, ast, base64, functools, hashlib, html, inspect, os, re, shutil, sys, tempfile, time
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


# ---------------------------------------------------------------- API entries as docs.fast.ai shows them

@functools.cache
def events():
    "fastai's callback events, in the order a fit runs them (read from its source: no torch to import)"
    import importlib.util
    src = Path(importlib.util.find_spec('fastai.callback.core').origin).read_text()
    if m := re.search(r"^_events = L\.split\('([^']*)'\)", src, re.MULTILINE):
        return tuple(m.group(1).replace('\\\n', ' ').split())
    from fastai.callback.core import _events
    return tuple(_events)

def _is_callback(c, exact=False):
    "Whether class `c` is fastai's `Callback` (`exact`) or one of its subclasses"
    mro = [c] if exact else c.__mro__
    return any(k.__module__ == 'fastai.callback.core' and k.__name__ == 'Callback' for k in mro)

def _field_comments(cls):
    "The comments after the fields of a NamedTuple: `x: Tensor # the images`"
    try: src = inspect.getsource(cls)
    except (OSError, TypeError): return {}
    return dict(re.findall(r'^\s+(\w+)\s*:[^#\n]*#\s*(.*?)\s*$', src, re.MULTILINE))

def _own_params(f):
    "The parameters of function `f` (no `self`), each with its docment: [(Parameter, docment)]"
    from fastcore.docments import docments
    sig = inspect.signature(f)
    try: docs = docments(f)
    except (OSError, TypeError, ValueError, SyntaxError): docs = {}  # no source to read comments from
    ps = list(sig.parameters.values())
    if ps and ps[0].name == 'self' and ps[0].kind != inspect.Parameter.KEYWORD_ONLY: ps = ps[1:]
    return [(p, docs.get(p.name)) for p in ps], (sig.return_annotation, docs.get('return'))

def class_params(cls, start=0):
    """The parameters a class takes, as a reader calls it: a NamedTuple's fields; `*args, **kwargs` that `__init__`
    passes on to `super().__init__` replaced by the parameters of the parent; none of the 24 event functions that
    fastai's `Callback.__init__` takes; an exception's message (`*args`)"""
    P = inspect.Parameter
    if start == 0 and issubclass(cls, tuple) and hasattr(cls, '_fields'):
        anns, docs = getattr(cls, '__annotations__', {}), _field_comments(cls)
        return [(P(f, P.POSITIONAL_OR_KEYWORD, default=cls._field_defaults.get(f, P.empty),
                   annotation=anns.get(f, P.empty)),
                 docs.get(f)) for f in cls._fields]
    mro = cls.__mro__
    i = next((i for i in range(start, len(mro)) if '__init__' in mro[i].__dict__), None)
    if i is None or mro[i] is object or _is_callback(mro[i], exact=True): return []
    init = mro[i].__dict__['__init__']
    if not inspect.isfunction(init):  # a builtin's: an exception takes its message, other builtins as they say
        if issubclass(cls, BaseException): return [(P('args', P.VAR_POSITIONAL), None)]
    own, _ = _own_params(init)
    var = [p for p, _ in own if p.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD)]
    try: passes_on = var and re.search(r'super\(\)\.__init__\([^)]*\*', inspect.getsource(init))
    except (OSError, TypeError): passes_on = False
    if not passes_on: return own
    names = {p.name for p, _ in own}
    parent = [(p, d) for p, d in class_params(cls, i + 1) if p.name not in names]
    has_args, has_kwargs = any(p.kind == P.VAR_POSITIONAL for p in var), any(p.kind == P.VAR_KEYWORD for p in var)
    pos = [(p, d) for p, d in parent if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    kw = [(p, d) for p, d in parent if p.kind == P.KEYWORD_ONLY]
    if not has_args: pos, kw = [], [(p.replace(kind=P.KEYWORD_ONLY), d) for p, d in pos] + kw
    if not has_kwargs: kw = []
    rest = [(p, d) for p, d in parent
            if p.kind == (P.VAR_KEYWORD if has_kwargs else -1) or (has_args and p.kind == P.VAR_POSITIONAL)]
    by_kind = lambda k: [(p, d) for p, d in own if p.kind == k]
    return (by_kind(P.POSITIONAL_ONLY) + by_kind(P.POSITIONAL_OR_KEYWORD) + pos
            + [o for o in rest if o[0].kind == P.VAR_POSITIONAL]
            + by_kind(P.KEYWORD_ONLY) + kw + [o for o in rest if o[0].kind == P.VAR_KEYWORD])

def entry_params(sym):
    "The parameters of `sym` as a reader calls it, each with its docment, and the return annotation and docment"
    if inspect.isclass(sym): return class_params(sym), (inspect.Parameter.empty, None)
    return _own_params(sym)

def anno_text(a):
    "An annotation as the code writes it (a NamedTuple's `ForwardRef('Tensor')` is `Tensor`)"
    from fastcore.docments import _type_str
    return short_type(getattr(a, '__forward_arg__', None) or _type_str(a))

def param_text(p):
    "One parameter as the signature shows it: `name:type=default`"
    from fastcore.docments import _fmt_default
    pre = {p.VAR_POSITIONAL: '*', p.VAR_KEYWORD: '**'}.get(p.kind, '')
    anno = f':{anno_text(p.annotation)}' if p.annotation is not p.empty else ''
    return pre + p.name + anno + (f'={_fmt_default(p.default)}' if p.default is not p.empty else '')

def signature_text(prefix, name, params, ret=None, width=88):
    "A signature on one line, or one parameter a line when it is wider than `width`"
    P, parts, star = inspect.Parameter, [], False
    for i, (p, _) in enumerate(params):
        if p.kind == P.KEYWORD_ONLY and not star: parts.append('*')
        star = star or p.kind in (P.KEYWORD_ONLY, P.VAR_POSITIONAL)
        parts.append(param_text(p))
        if p.kind == P.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1][0].kind != P.POSITIONAL_ONLY):
            parts.append('/')
    tail = ')' + (f'->{anno_text(ret)}' if ret not in (None, P.empty) else '')
    line = f'{prefix} {name}(' + ', '.join(parts) + tail
    if len(line) <= width or not parts: return line
    return f'{prefix} {name}(\n' + ''.join(f'    {s},\n' for s in parts) + tail

def _code(s):
    "Inline code for a Markdown table cell: HTML, so that a `|` in it is neither a cell boundary nor shown escaped"
    # a long type breaks after a `|`
    return '<code>' + html.escape(s, quote=False).replace('|', '&#124;<wbr>') + '</code>'

def _cell(s):
    "Text for a Markdown table cell: on one line, its `|` kept from splitting the cell"
    parts = re.split(r'(`[^`]*`)', s.replace('\n', ' '))
    return ''.join((_code(x[1:-1]) if '|' in x else x) if i % 2 else x.replace('|', r'\|') for i, x in enumerate(parts))

def param_table(params, ret=None):
    "The parameters as docs.fast.ai's table: Type, Default, Details (columns with nothing left out); '' with no docment"
    from fastcore.docments import _fmt_default
    E = inspect.Parameter.empty
    if not any(d for _, d in params) and not (ret and ret[1]): return ''
    rows = [[p.name.replace('_', r'\_') if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) else
             ('\\*' if p.kind == p.VAR_POSITIONAL else '\\*\\*') + p.name.replace('_', r'\_'),
             _code(anno_text(p.annotation)) if p.annotation is not E else '',
             _code(_fmt_default(p.default)) if p.default is not E else '', d or ''] for p, d in params]
    if ret and ret[1]: rows.append(['**Returns**', _code(anno_text(ret[0])) if ret[0] is not E else '', '', ret[1]])
    keep = [0] + [j for j in (1, 2, 3) if any(r[j] for r in rows)]
    head = ['', '**Type**', '**Default**', '**Details**']
    lines = ['| ' + ' | '.join(_cell(head[j]) if j else ' ' for j in keep) + ' |', '|' + '---|' * len(keep)]
    lines += ['| ' + ' | '.join(_cell(r[j]) for j in keep) + ' |' for r in rows]
    return '\n'.join(lines)

def entry_markdown(r):
    """An API entry for the site: the source link, the name, the signature without the comments, the docstring, and a
    parameter table from the docments; '' where `r.sym` is not a function or a class (fastcore renders those)"""
    from fastcore.docments import docstring
    from nbdev.doclinks import NbdevLookup
    sym = r.sym
    if not (inspect.isclass(sym) or inspect.isfunction(sym) or inspect.ismethod(sym)): return ''
    params, ret = entry_params(sym)
    prefix = 'class' if inspect.isclass(sym) else 'async def' if inspect.iscoroutinefunction(sym) else 'def'
    md = '---\n\n'
    if src := NbdevLookup().code(r.fn): md += f'[source]({src}){{target="_blank"}}\n\n'
    name = r.nm.split('.')[-1] if '.' in r.nm and prefix != 'class' else r.nm
    md += f"{'#' * r.title_level} {r.nm}\n\n```python\n{signature_text(prefix, name, params, ret[0])}\n```"
    if doc := (docstring(sym) or '').strip():
        first, _, more = doc.partition('\n')
        md += f'\n\n*{first.strip()}*' + (f'\n\n{inspect.cleandoc(more)}' if more.strip() else '')
    if tbl := param_table(params, ret): md += '\n\n' + tbl
    return md


@contextmanager
def site_entries():
    "`show_doc` renders entries as the site shows them (`entry_markdown`), falling back to nbdev's own rendering"
    from nbdev.showdoc import BasicMarkdownRenderer as R
    old = R._repr_markdown_
    def render(self):
        try: md = entry_markdown(self)
        except (OSError, TypeError, ValueError, AttributeError) as e:
            print(f'show_doc({self.nm}): nbdev renders it ({type(e).__name__}: {e})', file=sys.stderr); md = ''
        return md or old(self)
    R._repr_markdown_ = render
    try: yield
    finally: R._repr_markdown_ = old


# ---------------------------------------------------------------- links to symbols

LINK_OR_CODE = re.compile(r"(!?\[[^\]\n]*\]\([^)\s]*\))|(fastai's\s+)?`([^`\s]+?)(\(\))?`")

@functools.cache
def fastai_syms():
    "fastai's public symbols by short name (`CutMix`, `Learner.fit`) -> their docs.fast.ai page"
    from nbdev.doclinks import _build_lookup_table
    _, syms = _build_lookup_table(strip_libs=('fastai',), incl_libs=('fastai',))
    return {k: (v[0] if isinstance(v, tuple) else v) for k, v in syms.items()
            if '.' not in k or not any(s.startswith('_') for s in k.split('.'))}

def fastai_doc(sym):
    "The docs.fast.ai page of one of fastai's public symbols, or None"
    if any(s.startswith('_') for s in sym.split('.')): return None
    u = fastai_syms().get(sym)
    return u if u and u.startswith('https://docs.fast.ai/') else None

def link_line(self, line):
    """nbdev's symbol links in one line of Markdown, with three differences: a link written by hand is left alone
    (its code text is not linked again), "fastai's `X`" links to fastai's `X`, and a name this library does not have
    links to fastai's symbol of that name, if there is one"""
    def sub(m):
        if m.group(1): return m.group(1)
        fastai, sym, call = m.group(2) or '', m.group(3), m.group(4) or ''
        url = fastai_doc(sym) if fastai else (self.doc(sym) or fastai_doc(sym))
        return f'{fastai}[`{sym}{call}`]({url})' if url else m.group(0)
    return LINK_OR_CODE.sub(sub, line)

@contextmanager
def site_links():
    from nbdev.doclinks import NbdevLookup
    old = NbdevLookup.link_line
    NbdevLookup.link_line = link_line
    try: yield
    finally: NbdevLookup.link_line = old


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
    with faithful_signatures(), site_entries(), site_links():
        cache = proc_nbs(path=str(ROOT/'nbs'), n_workers=0, force=force, file_glob=file_glob)
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


ENTRY_SIG = re.compile(r'^```python\n((?:async )?def |class |\w+ instance)', re.MULTILINE)

class Entry:
    "An API entry of a page (a `show_doc` output): its symbol's name, kind (class, function, instance) and anchor"
    def __init__(self, name, kind, md): self.name, self.kind, self.md, self.id, self.events = name, kind, md, None, []
    @property
    def role(self): return 'method' if self.kind == 'function' and '.' in self.name else self.kind

def as_entry(md):
    "The `Entry` a Markdown output is, if it is one: a heading, then the signature"
    head = next((m for l in md.split('\n') if (m := HEADING.match(l))), None)
    sig = ENTRY_SIG.search(md)
    if not head or not sig: return None
    kind = {'class ': 'class', 'def ': 'function', 'async def ': 'function'}.get(sig.group(1), 'instance')
    return Entry(head.group(2).replace(r'\_', '_'), kind, md)

@functools.cache
def modidx():
    "The library's symbol index (`_modidx.py`), read without importing the library"
    from nbdev.config import get_config
    tree = ast.parse((get_config(ROOT).lib_path/'_modidx.py').read_text())
    d = next(n.value for n in tree.body
             if isinstance(n, ast.Assign) and any(getattr(t, 'id', '') == 'd' for t in n.targets))
    return ast.literal_eval(d)['syms']

@functools.cache
def method_docs(py):
    "The docstrings of the methods in module file `py`, by (class, method): in class bodies and `@patch`ed"
    res = {}
    for node in ast.parse(Path(py).read_text()).body:
        if isinstance(node, ast.ClassDef):
            res.update({(node.name, f.name): ast.get_docstring(f) or '' for f in node.body
                        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))})
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.args and \
                any(re.match(r'patch\b', ast.unparse(d)) for d in node.decorator_list) and \
                (a := node.args.args[0].annotation):
            for cls in re.findall(r'\w+', ast.unparse(a)): res[(cls, node.name)] = ast.get_docstring(node) or ''
    return res

def class_events(page_file, cls):
    "The callback events class `cls` (documented on `page_file`) handles itself, each with its docstring"
    for mod, syms in modidx().items():
        if (v := syms.get(f'{mod}.{cls}')) and v[0].split('#')[0] == page_file:
            docs = method_docs(ROOT/v[1])
            return [(ev, docs[(cls, ev)]) for ev in events() if (cls, ev) in docs]
    return []


class Page:
    """One notebook as a Markdown page: its front matter, Markdown text, images and heading ids.

    API entries (`show_doc` outputs) own the anchors nbdev links to: a class keeps the anchor it shares with a
    function of the same name but another case (`CutMix`, `cutmix`), the function's gets its kind (`#cutmix-function`).
    The callback events of a class documented on the page are listed in its entry, not as entries of their own."""
    def __init__(self, path, nb, fm):
        self.path, self.nb, self.fm = path, nb, fm
        self.file = fm.get('output-file', re.sub(r'^\d+[a-zA-Z0-9]*_', '', path.stem.lower()) + '.html')
        self.stem = Path(self.file).stem
        self.title = fm.get('title', self.stem)
        self.ids, self.images = [], {}
        self.entries = {}  # (cell, output) -> Entry
        for i, c in enumerate(nb.cells):
            for j, o in enumerate(c.get('outputs', []) if c.cell_type == 'code' else []):
                if (md := o.get('data', {}).get('text/markdown')) and (e := as_entry(md)): self.entries[(i, j)] = e
        classes = {e.name: e for e in self.entries.values() if e.kind == 'class'}
        for e in classes.values():
            e.events = class_events(self.file, e.name)
            for ev, _ in e.events: self.ids.append(pandoc_id(f'{e.name}.{ev}'))
        self.folded = {k for k, e in self.entries.items() if '.' in e.name and e.name.rsplit('.', 1)[0] in classes
                       and e.name.rsplit('.', 1)[1] in events()}
        shown = [e for k, e in self.entries.items() if k not in self.folded]
        groups = {}
        for e in shown: groups.setdefault(pandoc_id(e.name), []).append(e)
        for base, es in groups.items():
            first = next((e for e in es if e.kind == 'class'), es[0])
            for e in [first] + [e for e in es if e is not first]:
                hid = base if e is first else f'{base}-{e.kind}'
                k, cand = 0, hid
                while cand in self.ids: k += 1; cand = f'{hid}-{k}'
                e.id = cand; self.ids.append(cand)
        # where links by name land: each entry, and each event listed in its class's entry
        self.entry_ids = {}
        for e in shown: self.entry_ids.setdefault(e.name, e.id)
        for e in classes.values():
            for ev, _ in e.events: self.entry_ids.setdefault(f'{e.name}.{ev}', pandoc_id(f'{e.name}.{ev}'))
        self.api_ids = set(self.ids)

    def heading(self, line, entry=None):
        "A heading with an explicit id: pandoc's, as nbdev's links expect; an API entry's own, its kind, `_` kept"
        m = HEADING.match(line)
        if not m: return line
        hashes, text, explicit = m.groups()
        if entry:
            text = text.replace(chr(92) + '_', '_').replace('_', chr(92) + '_')
            return f"{hashes} {text} {{#{entry.id} data-kind={entry.role}}}"
        hid = explicit[2:-1] if explicit else pandoc_id(text)
        base, k = hid, 0
        while hid in self.ids: k += 1; hid = f'{base}-{k}'
        self.ids.append(hid)
        return f'{hashes} {text} {{#{hid}}}'

    def prose(self, md, entry=None):
        "Markdown from a cell or a Markdown output: headings with ids, Quarto link attributes as classes"
        chunks, done = [], False
        for is_code, txt in split_fences(md):
            if is_code and entry:
                txt = re.sub(r'^(`{3,})python\s*$', r'\1 { .python .doc-signature }', txt, count=1, flags=re.MULTILINE)
            if not is_code:
                txt = PANDOC_LINK.sub(lambda m: f'[{m.group(1)}]({m.group(2)})'
                                      + ('{ .doc-source }' if m.group(1) == 'source' else ''), txt)
                lines = []
                for l in txt.split('\n'):
                    if l.startswith('#'):
                        l = self.heading(l, None if done else entry); done = done or bool(entry)
                    lines.append(l)
                txt = '\n'.join(lines)
            chunks.append(txt)
        return '\n'.join(chunks)

    def entry(self, e):
        "An API entry in a block of its own; a class's callback events in a table at its end"
        md = self.prose(e.md, e)
        if e.events:
            from nbdev.doclinks import NbdevLookup
            nl = NbdevLookup()
            rows = [f'| <span id="{pandoc_id(f"{e.name}.{ev}")}" data-entry="{e.name}.{ev}"></span>`{ev}` '
                    f'| {_cell(link_line(nl, doc))} |'
                    for ev, doc in e.events]
            md += '\n\n' + '\n'.join(['| Callback event | What it does |', '|---|---|'] + rows)
        return f'<div class="doc-entry" markdown="1">\n\n{md}\n\n</div>'

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
        for i, c in enumerate(self.nb.cells):
            if c.cell_type == 'markdown': parts.append(self.prose(c.source)); continue
            if c.cell_type != 'code': continue
            if 'remove_input' not in c.metadata.get('tags', []) and c.source.strip():
                parts.append(fenced(c.source, 'python'))
            for j, o in enumerate(c.outputs):
                if o.output_type == 'stream':
                    txt = o.text.rstrip('\n')
                    parts.append(fenced(txt, 'text',
                                        ' .nb-output' + wraps(txt) + (' .nb-stderr' if o.name == 'stderr' else '')))
                    continue
                d = o.get('data', {})
                if (i, j) in self.folded: continue
                if img := next((k for k in IMAGES if k in d), None):
                    nfig += 1; parts.append(self.image(d[img], IMAGES[img], nfig))
                elif 'text/html' in d:
                    parts.append('<div class="nb-output nb-html" markdown="0">\n'
                                 f'{tidy_html(d["text/html"]).strip()}\n</div>')
                elif (i, j) in self.entries: parts.append(self.entry(self.entries[(i, j)]))
                elif 'text/markdown' in d: parts.append(self.prose(d['text/markdown']))
                elif 'text/plain' in d:
                    parts.append(fenced(txt := d['text/plain'].rstrip('\n'), 'text', ' .nb-output' + wraps(txt)))
        return '\n\n'.join(parts) + '\n'


# ---------------------------------------------------------------- tables from DataFrames

NUMBER = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$')

def round_column(cells):
    """The numbers of a column, rounded to what they mean: float noise (`-1.110223e-16`) is 0, each number has at most
    4 significant digits and the column one number of decimals (`2.750000e-02` is `0.0275`); columns with numbers
    below 0.001 (p-values) keep 3 significant digits each, in scientific notation where pandas used it"""
    vals = [float(s) if NUMBER.match(s.strip()) else None for s in cells]
    nums = [v for v in vals if v is not None]
    if not nums: return cells
    scale = max(abs(v) for v in nums)
    vals = [None if v is None else 0. if abs(v) < 1e-12 * max(scale, 1.) else v for v in vals]
    if any(v and abs(v) < 1e-3 for v in vals):
        return [s if v is None else '0' if v == 0 else f'{v:.3g}' for s, v in zip(cells, vals)]
    d = min(4, max(len(f'{v:.4g}'.partition('.')[2]) if 'e' not in f'{v:.4g}' else 0 for v in vals if v is not None))
    def fmt(v): s = f'{v:.{d}f}'; return s[1:] if s.startswith('-') and float(s) == 0 else s
    return [s if v is None else fmt(v) for s, v in zip(cells, vals)]

def tidy_html(html):
    """A DataFrame's HTML as the site shows it: no pandas style block, no 0..n-1 index column (a named index keeps
    its column, its name in the header), numbers rounded per column (`round_column`), short cells kept on one line
    and break points after `_` in the headers, so that columns of text wrap; any other HTML as it is"""
    if 'class="dataframe"' not in html: return html
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(html, 'html.parser')
    for s in soup.find_all('style'): s.decompose()
    for tbl in soup.find_all('table', class_='dataframe'):
        del tbl['border']
        tbl['class'] = ['dataframe']
        head, body = tbl.find('thead'), tbl.find('tbody')
        rows = body.find_all('tr', recursive=False) if body else []
        idx = [r.find('th', recursive=False) for r in rows]
        if rows and all(idx):
            hrows = head.find_all('tr', recursive=False) if head else []
            if [h.get_text() for h in idx] == [str(k) for k in range(len(rows))]:
                for h in idx: h.decompose()
                for r in hrows:
                    if (f := r.find(['th', 'td'])) is not None: f.decompose()
            elif len(hrows) == 2 and not ''.join(c.get_text() for c in hrows[1].find_all(['th', 'td'])[1:]).strip():
                name = hrows[1].find(['th', 'td']).get_text()
                hrows[0].find(['th', 'td']).string = name
                hrows[1].decompose()
        for r in head.find_all('tr') if head else []: r.attrs.pop('style', None)
        grid = [r.find_all('td', recursive=False) for r in rows]
        for j in range(max((len(g) for g in grid), default=0)):
            col = [g[j] for g in grid if len(g) > j]
            for td, s in zip(col, round_column([td.get_text() for td in col])):
                if td.get_text() != s: td.string = s
                # a number, an interval, a short label: on one line; longer text wraps
                if len(s) <= 24: td['class'] = ['nw']
        for th in head.find_all('th') if head else []:
            txt = th.get_text()
            if '_' in txt:
                th.clear()
                for k, part in enumerate(txt.split('_')):
                    if k: th.append('_'); th.append(soup.new_tag('wbr'))
                    th.append(part)
    return str(soup)


def wraps(txt):
    "' .nb-wrap' for printed text that reads as lines of words (it wraps at the column), '' for text in columns"
    return '' if '\t' in txt or re.search(r'\S {2,}\S', txt) else ' .nb-wrap'


def fenced(code, lang, classes=''):
    "A fenced code block long enough not to be closed by backticks inside `code`"
    n = max([3] + [len(m) + 1 for m in re.findall(r'`{3,}', code)])
    head = f'{"`"*n} {{ .{lang}{classes} }}' if classes else f'{"`"*n}{lang}'
    return f'{head}\n{code}\n{"`"*n}'


MD_LINK = re.compile(r'(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)')  # the text may run over lines

def link_rewriter(pages, doc_url):
    """Links as MkDocs checks them: nbdev's absolute links to this site become relative links to the pages' sources
    (`anneal.md#annealer`). A link to a symbol lands on the entry of the symbol its text names (`CutMix` on the class,
    `cutmix` on the function, though nbdev gives both `cutmix.html#cutmix`); a method or attribute with no entry of
    its own lands on its class's entry."""
    ids = {p.file: set(p.ids) for p in pages}
    by_name = {p.file: p.entry_ids for p in pages}
    def target(url, text):
        if doc_url and url.startswith(doc_url): url = url[len(doc_url):]
        m = re.match(r'^([\w-]+)\.html(?:#(.*))?$', url)
        if not m or m.group(1) + '.html' not in ids: return url
        f, frag = m.group(1) + '.html', m.group(2)
        name = re.sub(r'\(\)$', '', text.strip().strip('`'))
        if frag:
            names = by_name[f]
            while name and name not in names and '.' in name: name = name.rsplit('.', 1)[0]
            if name in names and (frag == pandoc_id(name) or frag.startswith(pandoc_id(name) + '.')): frag = names[name]
        while frag and frag not in ids[f] and '.' in frag: frag = frag.rsplit('.', 1)[0]
        return m.group(1) + '.md' + (f'#{frag}' if frag else '')
    def rewrite(md):
        link = lambda m: f'{m.group(1)}[{m.group(2)}]({target(m.group(3), m.group(2))})'
        return '\n'.join(txt if is_code else MD_LINK.sub(link, txt) for is_code, txt in split_fences(md))
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

    from mkdocs.commands.build import build as mk_build
    from mkdocs.config import load_config
    cfg = load_config(str(ROOT/'mkdocs.yml'), docs_dir=str(src), site_dir=str(out), strict=True,
                      nav=[{p.title: p.stem + '.md'} for p in pages])
    log = logging.getLogger('mkdocs')
    log.setLevel(logging.WARNING)
    if not log.handlers: log.addHandler(logging.StreamHandler())  # what strict mode stops on is said
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
    def to_site(md):  # the site's pages are on the web for a README reader
        return re.sub(r'\]\((?!https?://|#)([\w-]+\.html)', lambda m: f']({doc_url}{m.group(1)}', md) if doc_url else md
    for c in nb.cells:
        if c.cell_type == 'markdown':
            if 'THIS FILE WAS AUTOGENERATED' in c.source: continue
            parts += [to_site(c.source), '']
        elif c.cell_type == 'code':
            if c.source.strip() and 'remove_input' not in c.metadata.get('tags', []):
                parts += ['```python', c.source, '```', '']
            for o in c.outputs:
                # prose a cell wrote (from the results, say) is prose in the README too
                if md := o.get('data', {}).get('text/markdown'):
                    parts += [to_site(md.rstrip('\n')), '']; continue
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
