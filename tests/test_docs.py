"""The docs command builds the site, and every page works in a real headless Chromium.

The site is built into `_docs/` exactly as `tools/build_docs.py --no-readme` (and the deploy workflow) builds it,
served on 127.0.0.1 as any static host serves it, and opened page by page at 1400 px. One full-page screenshot per
page is written to `_docs/screenshots/` (SHOTS) for people to look at."""
import functools, http.server, os, re, struct, sys, threading, time
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, unquote
import nbformat, pytest
from conftest import ROOT, chromium

sys.path.insert(0, str(ROOT/'tools'))
import build_docs

FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']
# absolute paths of a machine (a relative `.venv/bin/...` in a command is not one)
MACHINE_PATH = re.compile(r'(?<![\w.~-])/(root|tmp|home|work|private/var|Users)/|/\S*\.venv/|[A-Z]:\\Users\\')
RAW_TEX = re.compile(r'\$[^$\s][^$\n]*\$|\\\(|\\\[|\\(frac|lfloor|rfloor|mathrm|partial)\b')
WARNING_TEXT = re.compile(r'Traceback \(most recent call last\)|\b\w*Warning: |warnings\.warn\(')
WIDTH = 1400  # the browser's width: a laptop's, with the sidebar and the page's contents beside the text
SHOTS = ROOT/'_docs'/'screenshots'


# ---------------------------------------------------------------- what the notebooks say the site must have

def page_name(nb_path):
    "nbdev's page for a notebook: its name without the number prefix, as HTML"
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb_path.stem.lower()) + '.html'  # as nbdev names it (07b_x: x.html)

@functools.cache
def notebooks():
    "For each notebook, in the site's order: page, title, description, formulas, figures, whether it is a module"
    res = []
    for p in sorted((ROOT/'nbs').glob('*.ipynb'), key=lambda p: (p.name != 'index.ipynb', p.name)):
        nb = nbformat.read(p, as_version=4)
        md = '\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown')
        head = re.match(r'#\s+(.+)\n+>\s*(.+)', nb.cells[0].source)
        code = [c for c in nb.cells if c.cell_type == 'code']
        res.append(dict(nb=p.name, page=page_name(p), title=head.group(1).strip(), description=head.group(2).strip(),
                        formulas=len(re.findall(r'\$\$.+?\$\$|\$[^$\n]+\$', re.sub(r'`[^`]*`', '', md), re.S)),
                        figures=sum(any(k.startswith('image/') for k in o.get('data', {}))
                                    for c in code for o in c.outputs),
                        module=any(re.match(r'#\|\s*default_exp', c.source) for c in code)))
    return res

NBS = notebooks()
PAGES = [n['page'] for n in NBS]
MODULES = [n['page'] for n in NBS if n['module']]
FIGURES = [n['page'] for n in NBS if n['figures']]
def nb_of(page): return next(n for n in NBS if n['page'] == page)


# ---------------------------------------------------------------- the site, served, in Chromium

@pytest.fixture(scope='module')
def site():
    "Build the site into _docs/ with the docs command's own function; serve it on 127.0.0.1"
    out = ROOT/'_docs'
    t0, c0 = time.perf_counter(), time.process_time()
    pages = build_docs.build(out, readme=False)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    quiet = type('Quiet', (http.server.SimpleHTTPRequestHandler,), {'log_message': lambda *a: None})
    handler = functools.partial(quiet, directory=str(out))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield dict(out=out, pages=pages, url=f'http://127.0.0.1:{srv.server_port}/', build_s=secs, build_cpu_s=cpu)
    srv.shutdown()

@pytest.fixture(scope='module')
def browser():
    exe = chromium()
    if exe is None:
        if os.environ.get('CI'): pytest.fail("Chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=FLAGS, headless=True)
        yield b
        b.close()

# What a page shows, read in the browser after it has loaded and run its scripts
READ_PAGE = """() => {
  const txt = e => { if (!e) return null; const c = e.cloneNode(true);
                     c.querySelectorAll('a.headerlink').forEach(a => a.remove());
                     document.body.appendChild(c); const t = c.innerText.trim(); c.remove(); return t; };
  const content = document.querySelector('article.md-content__inner');
  const skip = e => e.closest('pre, code, math');
  const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
  let prose = [], n; while ((n = walker.nextNode())) if (!skip(n.parentElement)) prose.push(n.textContent);
  const p = [...content.querySelectorAll(':scope > p')].find(e => e.innerText.length > 200);
  return {
    title: document.title, h1: txt(content.querySelector('h1')), lead: txt(content.querySelector('p.page-lead')),
    sidebar: [...document.querySelectorAll('nav.md-nav--primary a.md-nav__link:not([href^="#"])')].map(a => ({
              href: a.getAttribute('href'), text: txt(a), active: a.classList.contains('md-nav__link--active')})),
    toc: [...document.querySelectorAll('nav.md-nav--secondary a.md-nav__link')].map(a => a.getAttribute('href')),
    h2: content.querySelectorAll('h2').length,
    prev: document.querySelector('a.md-footer__link--prev')?.getAttribute('href') ?? null,
    next: document.querySelector('a.md-footer__link--next')?.getAttribute('href') ?? null,
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    text: content.innerText, prose: prose.join(' '),
    maths: content.querySelectorAll('math').length,
    api: [...content.querySelectorAll('h3[id], h4[id]')]
           .filter(h => h.previousElementSibling?.querySelector?.('a.doc-source'))
           .map(h => ({id: h.id, name: txt(h), sig: txt(h.nextElementSibling)})),
    imgs: [...content.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), w: i.naturalWidth,
           h: i.naturalHeight, shown: i.getBoundingClientRect().width})),
    chars_per_line: p ? (() => { const cx = document.createElement('canvas').getContext('2d');
                      const cs = getComputedStyle(p);
                      cx.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
                      const charW = cx.measureText(p.innerText).width / p.innerText.length;
                      return p.getBoundingClientRect().width / charW; })() : null,
    highlighted: content.querySelectorAll('div.highlight pre code span.k, div.highlight pre code span.kn').length,
    entries: [...content.querySelectorAll('.doc-entry')].map(d => { const h = d.querySelector('h3[id], h4[id]');
              // the parameters'
              const tbl = [...d.querySelectorAll('table')].find(t => t.rows[0]?.cells[0]?.innerText.trim() === '');
              return {id: h?.id, name: txt(h), kind: h?.dataset.kind, source: !!d.querySelector('a.doc-source'),
                      sig: txt(d.querySelector('.doc-signature')),
                      params: tbl ? [...tbl.querySelectorAll('tbody tr')].map(r => r.cells[0].innerText.trim()) : null,
                      events: [...d.querySelectorAll('[data-entry]')].map(e => ({id: e.id, name: e.dataset.entry}))};
            }),
    // what each anchor of the page names: an API entry's heading, or an event listed in its class's entry
    targets: Object.fromEntries([...content.querySelectorAll('.doc-entry h3[id], .doc-entry h4[id], [data-entry]')].map(
              e => [e.id, e.dataset.entry ?? txt(e)])),
    // links made for a symbol: their text is one piece of code; `fastai` when the text before them says "fastai's"
    symlinks: [...content.querySelectorAll('a[href]')]
              .filter(a => a.childNodes.length === 1 && a.firstChild.nodeName === 'CODE').map(a => {
              const before = (a.previousSibling?.textContent ?? '').slice(-10);
              return {href: a.getAttribute('href'), name: a.innerText.trim(), fastai: /fastai's\\s*$/.test(before)}; }),
    ...checkWidth(content),
  };
}"""

# Wide content: the content column is `.md-content` (the text between the sidebars). Anything wider must be inside a
# box that scrolls sideways, fits the column, and says so: `scroll-cue.js` gives such a box the class `scrolls-x` and
# puts a visible `.scroll-cue` just above it.
CHECK_WIDTH = """function checkWidth(content) {
  const col = document.querySelector('.md-content').getBoundingClientRect();
  const BLOCK = 'div.highlight, .md-typeset__scrollwrap, .nb-html, .math-block';
  const scrolls = e => { const o = getComputedStyle(e).overflowX;
                         return (o === 'auto' || o === 'scroll') && e.scrollWidth > e.clientWidth + 1; };
  const fits = r => r.left >= col.left - 1 && r.right <= col.right + 1;
  const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                    + (typeof e.className === 'string' && e.className.trim()
                       ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
  const cued = e => { const b = e.closest(BLOCK) || e, c = b.previousElementSibling;
                      return e.classList.contains('scrolls-x') && !!c && c.classList.contains('scroll-cue')
                             && c.offsetHeight > 0 && c.innerText.trim().length > 0; };
  const wide = [];
  for (const e of content.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (!r.width || fits(r)) continue;
    let a = e.parentElement;
    while (a && a !== content && !scrolls(a)) a = a.parentElement;
    if (!a || a === content || !fits(a.getBoundingClientRect()) || !cued(a))
      wide.push(`${name(e)} spans ${Math.round(r.left)}-${Math.round(r.right)} px, `
                + `the column ${Math.round(col.left)}-${Math.round(col.right)}: ${(e.innerText || '').slice(0, 60)}`);
  }
  const uncued = [...content.querySelectorAll('*')].filter(e => scrolls(e) && !cued(e)).map(name);
  return {wide, uncued, cues: content.querySelectorAll('.scroll-cue').length};
}"""

@pytest.fixture(scope='module')
def rendered(site, browser):
    "Every page opened in Chromium: what it shows, every request it made, every script error; a screenshot each"
    shots = site['out']/'screenshots'  # SHOTS
    shots.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={'width': WIDTH, 'height': 900})
    ctx.set_default_timeout(120_000)  # a full-page screenshot of a long page, on a busy machine
    res = {}
    for page in PAGES:
        pg = ctx.new_page()
        reqs, failed, errors = [], [], []
        pg.on('request', lambda r: reqs.append(r.url))
        pg.on('requestfailed', lambda r: failed.append(r.url))
        pg.on('pageerror', lambda e: errors.append(str(e)))
        pg.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        resp = pg.goto(site['url'] + page, wait_until='load')
        pg.wait_for_load_state('networkidle')
        pg.add_script_tag(content=CHECK_WIDTH)
        info = pg.evaluate(READ_PAGE)
        info.update(status=resp.status, requests=reqs, failed=failed, errors=errors)
        pg.screenshot(path=str(shots/(Path(page).stem + '.png')), full_page=True)
        res[page] = info
        pg.close()
    ctx.close()
    return res


def test_every_notebook_has_a_page(site):
    assert [p.name for p in site['pages']] == PAGES
    assert all(p.exists() for p in site['pages'])
    # the build runs in this process (nbdev with no workers, then MkDocs): its CPU time is the build's cost,
    # whatever else the machine is running
    print(f"\ndocs build: {site['build_s']:.1f} s wall, {site['build_cpu_s']:.1f} s CPU")
    assert site['build_cpu_s'] < 60, f"the docs build took {site['build_cpu_s']:.0f} s of CPU"

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_navigation(rendered, page):
    "Sidebar with every page in the notebooks' order and this one marked; its title; contents; previous/next"
    r, nb, i = rendered[page], nb_of(page), PAGES.index(page)
    assert r['status'] == 200
    assert r['h1'] == nb['title'] and r['title'].startswith(nb['title'])
    side = [(a['href'], a['text']) for a in r['sidebar']]
    assert side == [(p, n['title']) for p, n in zip(PAGES, NBS)], side
    assert [a['href'] for a in r['sidebar'] if a['active']] == [page]
    if r['h2']: assert len([h for h in r['toc'] if h.startswith('#')]) >= r['h2'], 'the contents miss sections'
    assert r['prev'] == (PAGES[i-1] if i else None) and r['next'] == (PAGES[i+1] if i+1 < len(PAGES) else None)

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_description_as_written(rendered, page):
    "The subtitle is the notebook's own sentence (front matter read as YAML: no `\\u03BB`, no stray `\\ `)"
    want = re.sub(r'`([^`]*)`', r'\1', nb_of(page)['description'])
    assert rendered[page]['lead'] == want

def resolve(page, href, out):
    "The file and fragment a relative link on `page` points to"
    u = urlsplit(href)
    path = (out/Path(page).parent/unquote(u.path)).resolve() if u.path else out/page
    return path, unquote(u.fragment)

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_links_and_anchors_resolve(site, rendered, page):
    "Every link in the page: a file of the site and, with #anchor, an element of that page; outside links: real pages"
    out, host = site['out'].resolve(), urlsplit(build_docs.doc_url_of(build_docs_cfg())).netloc
    broken, unresolved = [], []
    for href in rendered[page]['links']:
        if href.startswith(site['url']): href = href[len(site['url']):]  # made absolute by a script
        u = urlsplit(href)
        if u.scheme:
            assert u.scheme == 'https' and u.netloc and u.netloc != host and '127.0.0.1' not in u.netloc, \
                f'{href}: a link out of the site to somewhere that is not a public page (or to the site by its address)'
            continue
        f, frag = resolve(page, href, out)
        if not f.is_file() or out not in f.parents: broken.append(href); continue
        if frag:
            ids = rendered[f.name]['ids'] if f.name in rendered else []
            if frag not in ids: unresolved.append(href)
    assert not broken, f'links to missing files: {broken}'
    assert not unresolved, f'anchors with no element: {unresolved}'

@functools.cache
def build_docs_cfg():
    from nbdev.config import get_config
    return get_config(ROOT)

@pytest.mark.browser
def test_link_totals(site, rendered):
    "Across the site: nbdev's symbol links are there, and all of them land (counted for the notes)"
    out = site['out'].resolve()
    internal = [(p, h) for p, r in rendered.items() for h in r['links'] if not urlsplit(h).scheme]
    anchors = [(p, h) for p, h in internal if urlsplit(h).fragment]
    cross = [(p, h) for p, h in anchors if urlsplit(h).path and resolve(p, h, out)[0].name != p]
    bad = [(p, h) for p, h in anchors if (f := resolve(p, h, out))[1] not in rendered.get(f[0].name, {}).get('ids', [])]
    print(f'\n{len(rendered)} pages, {len(internal)} internal links, {len(anchors)} with an anchor '
          f'({len(cross)} to another page), {len(bad)} unresolved')
    assert len(cross) >= 20, 'nbdev links symbols to their entries on other pages: far fewer than expected'
    assert not bad

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_math_rendered(rendered, page):
    "Formulas are MathML elements, none left as TeX source"
    r = rendered[page]
    assert r['maths'] >= nb_of(page)['formulas']
    assert not RAW_TEX.search(r['prose']), RAW_TEX.search(r['prose']).group(0)

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_no_machine_path(rendered, page):
    m = MACHINE_PATH.search(rendered[page]['text'])
    assert not m, f"machine path shown: ...{rendered[page]['text'][max(0, m.start()-80):m.end()+60]}..."

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_no_traceback_or_warning(rendered, page):
    m = WARNING_TEXT.search(rendered[page]['text'])
    assert not m, f"shown: ...{rendered[page]['text'][max(0, m.start()-120):m.end()+80]}..."

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_offline_and_no_script_errors(site, rendered, page):
    "Nothing is fetched from outside the site (no CDN, no fonts), nothing fails to load, no script error"
    r = rendered[page]
    outside = [u for u in r['requests'] if not u.startswith(site['url']) and not u.startswith('data:')]
    assert not outside and not r['failed'] and not r['errors'], (outside, r['failed'], r['errors'])

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_readable_and_highlighted(rendered, page):
    r = rendered[page]
    if r['chars_per_line'] is not None: assert r["chars_per_line"] <= 90, f"{r['chars_per_line']:.0f} characters a line"
    if page in MODULES: assert r['highlighted'] > 0, 'code is not highlighted'

def sig_params(sig):
    "The parameter names of a signature as the page shows it: `class X(a:int=1, *, b=(1, 2))` -> ['a', 'b']"
    body = sig[sig.index('(') + 1:sig.rindex(')')]
    parts, depth, cur, quote = [], 0, '', None
    for ch in body:
        if quote: quote = None if ch == quote else quote
        elif ch in '\'"': quote = ch
        elif ch in '([{': depth += 1
        elif ch in ')]}': depth -= 1
        elif ch == ',' and depth == 0: parts.append(cur); cur = ''; continue
        cur += ch
    parts.append(cur)
    return [m.group(0) for s in parts if (m := re.match(r'\**\w+', s.strip()))]

@functools.cache
def library_names():
    "The short names of the library's symbols (`CutMix`, `CutMix.p`, `cutmix`), from its `_modidx.py`"
    return {k.removeprefix(mod + '.') for mod, syms in build_docs.modidx().items() for k in syms}

@pytest.mark.browser
@pytest.mark.parametrize('page', MODULES)
def test_api_docs(rendered, page):
    """A module's page shows its API as docs.fast.ai does: each entry with a source link, its own anchor, the signature
    as the code has it (no comments in it), a parameter table of the same parameters, and a class's callback events
    listed in its entry rather than as entries"""
    entries = rendered[page]['entries']
    assert entries, 'no API entries'
    ids = [e['id'] for e in entries]
    assert len(set(ids)) == len(ids), ids
    for e in entries:
        assert e['source'] and e['kind'] in ('class', 'function', 'method', 'instance'), e
        assert re.match(r'(async )?def |class |\w+ instance', e['sig'] or ''), e
        assert 'NoneType' not in e['sig'], f"an annotation the code does not have: {e['sig']}"
        assert not re.search(r'#\s', e['sig']), f"comments in the signature (they belong in the table): {e['sig']}"
        if e['kind'] == 'class':  # an exception takes its message, `*args`
            bad = r'\*\*kwargs|after_create=|before_fit=' + ('' if e['name'].endswith('Error') else r'|\*args')
            assert not re.search(bad, e['sig']), f"not the signature a reader calls: {e['sig']}"
        if e['params'] is not None:
            assert [p for p in e['params'] if p != 'Returns'] == sig_params(e['sig']), (e['params'], e['sig'])
        # nbdev's anchor is the name in lower case; where two names differ only by case, the class keeps it
        base = build_docs.pandoc_id(e['name'])
        if not [o for o in entries if o is not e and build_docs.pandoc_id(o['name']) == base]: assert e['id'] == base, e
        elif e['kind'] == 'class': assert e['id'] == base, e
        else: assert e['id'].startswith(base + '-'), e
    classes = {e['name']: e for e in entries if e['kind'] == 'class'}
    events = build_docs.events()
    assert not [e['name'] for e in entries if '.' in e['name'] and e['name'].rsplit('.', 1)[0] in classes
                and e['name'].rsplit('.', 1)[1] in events], 'callback events shown as entries of their own'
    for name, e in classes.items():
        assert [ev['name'] for ev in e['events']] == [f'{name}.{ev}' for ev, _ in build_docs.class_events(page, name)]

def entry(rendered, name):
    return next(e for r in rendered.values() for e in r['entries'] if e['name'] == name)

@pytest.mark.browser
def test_real_signatures(rendered):
    "NamedTuples show fields, a subclass what it passes on to its parent, a callback none of fastai's event arguments"
    assert entry(rendered, 'CutMixed')['sig'] == 'class CutMixed(x:Tensor, lam:Tensor, perm:Tensor, boxes:Boxes)'
    assert entry(rendered, 'MixedLabels')['sig'] == \
        'class MixedLabels(lam:Tensor, perm:Tensor, loss_func:Callable, yb:tuple, dense:tuple=())'
    assert entry(rendered, 'BatchAugment')['sig'] == 'class BatchAugment()'
    keep, prog = entry(rendered, 'KeepSprinkles'), entry(rendered, 'ProgressiveSprinkles')
    assert sig_params(keep['sig']) == sig_params(prog['sig']) + ['tau', 'grid'], keep['sig']
    assert keep['params'] == sig_params(keep['sig'])
    assert 'scheds' in entry(rendered, 'Annealer')['params']
    assert [ev['name'] for ev in entry(rendered, 'Annealer')['events']][:2] == \
        ['Annealer.before_fit', 'Annealer.before_train']

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_symbol_links_land_by_name(site, rendered, page):
    """Every link made for a symbol (its text is the symbol's name, as code) lands on the entry headed by that name
    (an attribute or a method with no entry of its own: on its class's); the library's names link into the site,
    others to docs.fast.ai, and "fastai's `X`" to fastai's `X`"""
    out, bad = site['out'].resolve(), []
    for l in rendered[page]['symlinks']:
        name, u = l['name'].removesuffix('()'), urlsplit(l['href'])
        if l['fastai'] or (u.scheme and name not in library_names()):
            if not l['href'].startswith('https://docs.fast.ai/'): bad.append((name, l['href'], 'not docs.fast.ai'))
            continue
        if u.scheme: bad.append((name, l['href'], "the library's own symbol, linked out of the site")); continue
        f, frag = resolve(page, l['href'], out)
        if not frag: continue  # a link to a page
        target = rendered.get(f.name, {}).get('targets', {}).get(frag)
        if target is None or not (target == name or name.startswith(target + '.')):
            bad.append((name, l['href'], target))
    assert not bad, bad

@pytest.mark.browser
def test_cutmix_links(site, rendered):
    "The issue's case: `CutMix` lands on the class, `cutmix` on the function, fastai's `CutMix` on docs.fast.ai"
    out = site['out'].resolve()
    links = [(p, l) for p, r in rendered.items() for l in r['symlinks']]
    ours = [(p, l) for p, l in links if l['name'] in ('CutMix', 'CutMix()') and not l['fastai']]
    theirs = [l for p, l in links if l['name'] in ('CutMix', 'CutMix()') and l['fastai']]
    fn = [(p, l) for p, l in links if l['name'] in ('cutmix', 'cutmix()')]
    assert len(ours) >= 10 and theirs and fn, (len(ours), len(theirs), len(fn))
    cls, func = entry(rendered, 'CutMix'), entry(rendered, 'cutmix')
    assert cls['kind'] == 'class' and func['kind'] == 'function' and cls['id'] != func['id']
    for want, ls in ((cls, ours), (func, fn)):
        for p, l in ls: assert resolve(p, l['href'], out) == (out/'cutmix.html', want['id']), (p, l, want['id'])
    assert {l['href'] for l in theirs} == {'https://docs.fast.ai/callback.mixup.html#cutmix'}
    for name in ('Learner', 'MixUp'):  # fastai's classes, named in the prose
        hrefs = {l['href'] for p, l in links if l['name'] == name}
        assert hrefs and all(h.startswith('https://docs.fast.ai/') for h in hrefs), (name, hrefs)

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_no_raw_markdown(rendered, page):
    "No Markdown shown as text: a link inside a link (`[[`) or a link's `](` left over"
    prose = rendered[page]['prose']
    m = re.search(r'\]\(|\[\[', prose)
    assert not m, f"raw Markdown: ...{prose[max(0, m.start()-80):m.end()+80]}..."

@pytest.mark.browser
@pytest.mark.parametrize('page', PAGES)
def test_fits_the_column(rendered, page):
    "Nothing wider than the content column, except inside a box that scrolls sideways and says so"
    r = rendered[page]
    assert not r['wide'], r['wide'][:5]
    assert not r['uncued'], f"boxes that scroll sideways without saying so: {r['uncued'][:5]}"

@pytest.mark.browser
@pytest.mark.parametrize('page', FIGURES)
def test_figures(rendered, page):
    "Every figure of the notebook is shown, loaded, at a size that can be read"
    imgs = rendered[page]['imgs']
    assert len(imgs) == nb_of(page)['figures']
    for i in imgs:
        assert i['w'] > 0, f"{i['src']} did not load"
        assert i['shown'] >= min(i['w'], 600) * 0.95, f"{i['src']} shrunk to {i['shown']:.0f} px"

@pytest.mark.browser
def test_screenshots(site, rendered):
    "A full-page screenshot of every page at the test's width, in SHOTS: index, cutmix, imagenette, bad_input..."
    for page in PAGES:
        png = (SHOTS/(Path(page).stem + '.png')).read_bytes()
        w, h = struct.unpack('>II', png[16:24])
        assert png[:8] == b'\x89PNG\r\n\x1a\n' and w == WIDTH and h >= 900
    assert {'index', 'sprinkles', 'cutmix', 'imagenette', 'bad_input'} <= {p.stem for p in SHOTS.glob('*.png')}

@pytest.mark.browser
def test_search_finds_each_class_first(site, browser, rendered):
    "Typing a class's name in the search box lists its entry first, before its methods and the prose, offline"
    classes = [(page, e['name'], e['id']) for page, r in rendered.items() for e in r['entries'] if e['kind'] == 'class']
    assert len(classes) >= 15
    pg = browser.new_page(viewport={'width': WIDTH, 'height': 900})
    pg.goto(site['url'] + 'index.html')
    pg.click('input.md-search__input')
    wrong = []
    for k, (page, name, hid) in enumerate(classes):
        pg.fill('input.md-search__input', name)
        pg.keyboard.press('End')  # search runs on a key, not on `fill`'s input event
        # the first waits for the index to load
        # results for this query, not the last one's ("CutMixed" before "CutMix" would pass a prefix test)
        pg.wait_for_function('q => [...document.querySelectorAll("li.md-search-result__item a")]'
                             '.some(a => new URL(a.href).searchParams.get("h") === q)',
                             arg=name.lower(), timeout=120_000 if k == 0 else 20_000)
        hrefs = pg.eval_on_selector_all('li.md-search-result__item a',
                                        'els => els.map(e => e.getAttribute("href"))')
        first = next(urlsplit(h) for h in hrefs if urlsplit(h).fragment)
        if (Path(first.path).name, first.fragment) != (page, hid):
            wrong.append((name, f'{first.path}#{first.fragment}'))
    pg.close()
    assert not wrong, wrong


# ---------------------------------------------------------------- the renderer, without a browser

def test_signatures_show_the_code_annotations():
    "show_doc as the build runs it: annotations as written (module paths dropped), none invented from defaults"
    from collections.abc import Callable
    from nbdev.showdoc import show_doc
    def f(p: float|Callable|None = None, q=0.5, r=None, *, t: 'list[int]' = ()): "A function"
    with build_docs.faithful_signatures(): md = show_doc(f)._repr_markdown_()
    assert 'p:float|Callable|None=None' in md and 'q=0.5' in md and 'r=None' in md, md
    assert 'NoneType' not in md and 'q:float' not in md
    assert ':NoneType=None' in show_doc(f)._repr_markdown_(), "fastcore's own rendering changed: revisit the patch"

def test_frontmatter_is_yaml():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_raw_cell(
        '---\ndescription: "Paste a box, with its own \\u03BB\\\n  \\ for every sample, 3\\xD72"\n'
        'title: CutMix\n---\n')])
    assert build_docs.frontmatter(nb) == {'description': 'Paste a box, with its own λ for every sample, 3×2',
                                          'title': 'CutMix'}
    assert nb.cells == []

def test_heading_ids_as_nbdev_links_them():
    assert build_docs.pandoc_id('Annealer.before_fit') == 'annealer.before_fit'
    assert build_docs.pandoc_id('Left alone: `lr_find`, `get_preds`, the validation set') == \
        'left-alone-lr_find-get_preds-the-validation-set'
    assert build_docs.pandoc_id('1. Why *this*?') == 'why-this'


# The API entries, links, anchors and tables, on small examples
class _Base:
    "A parent"
    def __init__(self, a:int=1, # the a
                 b:str|None=None): pass

class _Sub(_Base):
    "A child that passes the rest on"
    def __init__(self, *args, c:float=0.5, # the c
                 **kwargs): super().__init__(*args, **kwargs)

class _Pair(NamedTuple):
    "Two things"
    x: int  # the first
    y: float = 2.

def _entry(sym):
    from nbdev.showdoc import show_doc
    with build_docs.faithful_signatures(), build_docs.site_entries(): return show_doc(sym)._repr_markdown_()

def test_entries_as_docs_fast_ai():
    "Signatures without comments, docments as a Type/Default/Details table, real signatures for NamedTuples, subclasses"
    from fastai.callback.core import Callback
    md = _entry(_Base)
    assert '```python\nclass _Base(a:int=1, b:str|None=None)\n```' in md and '*A parent*' in md, md
    assert '| a | <code>int</code> | <code>1</code> | the a |' in md, md
    # a `|` in a type does not split the cell
    assert '| b | <code>str&#124;<wbr>None</code> | <code>None</code> |  |' in md, md
    md = _entry(_Sub)
    assert 'class _Sub(a:int=1, b:str|None=None, *, c:float=0.5)' in md and '| c |' in md and '*args' not in md, md
    md = _entry(_Pair)
    assert 'class _Pair(x:int, y:float=2.0)' in md and '| x | <code>int</code> |  | the first |' in md, md
    assert 'class _Cb()' in _entry(type('_Cb', (Callback,), {'__doc__': 'A callback'}))
    def f(p:float|None=None, # the p
          q=0.5)->int: "A function"
    md = _entry(f)
    assert 'def f(p:float|None=None, q=0.5)->int' in md and '#' not in md.split('```python')[1].split('```')[0], md

def test_links_by_symbol():
    "A hand link is not linked again; \"fastai's `X`\" and names the library does not have go to docs.fast.ai"
    from nbdev.doclinks import NbdevLookup
    nl = NbdevLookup()
    line = "fastai's `CutMix`, our `CutMix`, [`fixed_sprinkles`](sprinkles.html#fixed_sprinkles), `Learner`, `_private`"
    out = build_docs.link_line(nl, line)
    assert out.startswith("fastai's [`CutMix`](https://docs.fast.ai/callback.mixup.html#cutmix), "
                          "our [`CutMix`](https://"), out
    assert '[`fixed_sprinkles`](sprinkles.html#fixed_sprinkles)' in out and '[[' not in out, out
    assert '[`Learner`](https://docs.fast.ai/learner.html#learner)' in out and out.endswith('`_private`'), out

def _page(entries):
    "A Page made of `show_doc` outputs for (name, signature) pairs"
    cells = [nbformat.v4.new_code_cell('show_doc(x)', outputs=[nbformat.v4.new_output(
        'display_data', data={'text/markdown': f'---\n\n### {n}\n\n```python\n{sig}\n```\n\n*doc*'})])
             for n, sig in entries]
    return build_docs.Page(Path('04_x.ipynb'), nbformat.v4.new_notebook(cells=cells), {})

def test_anchors_by_symbol():
    "A class and a function whose names differ only by case: distinct anchors, the class keeping nbdev's; links by name"
    p = _page([('cutmix', 'def cutmix(x)'), ('CutMix', 'class CutMix(alpha=1.)'), ('Other', 'class Other()')])
    assert p.entry_ids == {'cutmix': 'cutmix-function', 'CutMix': 'cutmix', 'Other': 'other'}
    md = build_docs.link_rewriter([p], 'https://site/')(
        '[`CutMix`](https://site/x.html#cutmix) [`cutmix`](https://site/x.html#cutmix) [`CutMix.alpha`](https://site/x.html#cutmix.alpha)')
    assert md == '[`CutMix`](x.md#cutmix) [`cutmix`](x.md#cutmix-function) [`CutMix.alpha`](x.md#cutmix)', md
    assert '{#cutmix-function data-kind=function}' in p.markdown() and '{#cutmix data-kind=class}' in p.markdown()

def test_dataframes_tidied():
    "A DataFrame's HTML: no 0..n-1 index column, no float noise, numbers rounded per column"
    import pandas as pd
    df = pd.DataFrame(dict(config=['a', 'b'], diff=[2.75e-2, -1.110223e-16], p=[0.001609, 1.], n=[3, 4]))
    out = build_docs.tidy_html(df._repr_html_())
    assert '<style' not in out and '<th>0</th>' not in out and 'e-16' not in out and 'e-02' not in out, out
    cells = re.findall(r'<td[^>]*>([^<]*)</td>', out)  # short cells may carry a no-wrap class
    assert '0.0275' in cells and '0.0000' in cells and '3' in cells, out
    named = build_docs.tidy_html(df.set_index('config')._repr_html_())
    assert '<th>config</th>' in named and '<th>a</th>' in named, named  # a named index stays, its name in the header
