"The local docs build renders every notebook, and the pages look right in a real headless Chromium"
import os, re, sys, html
import pytest
from conftest import ROOT, run, chromium

sys.path.insert(0, str(ROOT/'tools'))
import build_docs

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']

@pytest.fixture(scope='module')
def docs(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs')
    pages = build_docs.build(out, readme=False)
    return out, pages

@pytest.fixture(scope='module')
def browser():
    exe = chromium()
    if exe is None:
        if os.environ.get('CI'): pytest.fail("Chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return exe

def dom(browser, page, tmp_path):
    "The page's DOM after Chromium has loaded it and run its scripts"
    r = run([browser, *FLAGS, f'--user-data-dir={tmp_path}/profile', '--dump-dom', page.as_uri()], timeout=120)
    assert r.returncode == 0 and '<body' in r.stdout, r.stderr[-2000:]
    return r.stdout

def text(d): return html.unescape(re.sub(r'<[^>]+>', ' ', re.sub(r'<(script|style)[^>]*>.*?</\1>', ' ', d, flags=re.S)))

def test_every_notebook_has_a_page(docs):
    out, pages = docs
    names = {p.name for p in pages}
    assert {'index.html', 'data.html', 'compare.html'} <= names
    assert len(pages) == len(list((ROOT/'nbs').glob('*.ipynb')))

@pytest.mark.browser
@pytest.mark.parametrize('page,title,api', [('index.html', 'fastai_sprinkles', None),
                                             ('data.html', 'Data', 'imagenette_dls'),
                                             ('anneal.html', 'Annealing', 'Restoring')])
def test_page_in_chromium(docs, browser, tmp_path, page, title, api):
    d = dom(browser, docs[0]/page, tmp_path)
    t = text(d)
    assert re.search(rf'<h1[^>]*>\s*{re.escape(title)}', d), f"no <h1> {title}"
    assert 'Traceback' not in t, 'a traceback is rendered in the page'
    if api:  # show_doc rendered the API docs: a heading and the signature of the function
        assert re.search(rf'<h[2-4][^>]*>\s*{api}\s*<', d), f"no API heading for {api}"
        assert re.search(rf'{api}\s*\(', t), f"no signature for {api}"
        assert re.search(r'<img[^>]+src="data:image/png;base64,', d), "no figure"
    assert 'sprinkles-nav' in d and 'href="data.html"' in d
