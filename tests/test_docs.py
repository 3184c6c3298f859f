"""The docs command builds the site, and every page works in a real headless Chromium.

The site is built into `_docs/` exactly as `tools/build_docs.py --no-readme` (and the deploy workflow) builds it,
served on 127.0.0.1 as any static host serves it, and opened page by page. One full-page screenshot per page is
written to `_docs/screenshots/` for people to look at."""
import functools, http.server, os, re, struct, sys, threading, time
from pathlib import Path
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
  };
}"""

@pytest.fixture(scope='module')
def rendered(site, browser):
    "Every page opened in Chromium: what it shows, every request it made, every script error; a screenshot each"
    shots = site['out']/'screenshots'
    shots.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
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

@pytest.mark.browser
@pytest.mark.parametrize('page', MODULES)
def test_api_docs(rendered, page):
    "A module's page shows its API: entries with a source link, an anchor nbdev links to, and the signature"
    api = rendered[page]['api']
    assert api, 'no API entries'
    names = [e['name'].lower() for e in api]
    for e in api:
        if names.count(e['name'].lower()) == 1: assert e['id'] == e['name'].lower(), e
        else: assert re.fullmatch(re.escape(e['name'].lower()) + r'(-\d+)?', e['id']), e  # `CutMix`, `cutmix`: 1 anchor
    for n in set(names):  # nbdev's lowercase anchor lands on exactly one of the entries that share it
        assert [e['id'] for e in api].count(n) == 1, n
        assert re.match(r'(async )?def |class |\w+ instance', e['sig'] or ''), e
        assert 'NoneType' not in e['sig'], f"an annotation the code does not have: {e['sig']}"

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
    for page in PAGES:
        png = (site['out']/'screenshots'/(Path(page).stem + '.png')).read_bytes()
        w, h = struct.unpack('>II', png[16:24])
        assert png[:8] == b'\x89PNG\r\n\x1a\n' and w == 1280 and h >= 900

@pytest.mark.browser
def test_search_works_offline(site, browser):
    "Typing a symbol in the search box lists its entry, from the site's own index"
    pg = browser.new_page(viewport={'width': 1280, 'height': 900})
    pg.goto(site['url'] + 'index.html')
    pg.click('input.md-search__input')
    pg.keyboard.type('Annealer')
    pg.wait_for_selector('li.md-search-result__item', timeout=20000)
    hrefs = pg.eval_on_selector_all('li.md-search-result__item a', 'els => els.map(e => e.getAttribute("href"))')
    pg.close()
    assert any(re.search(r'anneal\.html(\?[^#]*)?#annealer$', h) for h in hrefs), hrefs


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
