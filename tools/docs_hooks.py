"""MkDocs hooks for the documentation site (see mkdocs.yml): formulas become MathML while building, and search ranks
API entries above prose, a class above its methods"""
import html, json, os, re
from latex2mathml.converter import convert

# pymdownx.arithmatex (generic mode) marks $...$ as <span class="arithmatex">\(...\)</span> and $$...$$ as
# <div class="arithmatex">\[...\]</div>, untouched by the rest of Markdown; browsers render MathML themselves.
INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)
# API entry headings carry their kind (tools/build_docs.py writes `{#id data-kind=class}`)
ENTRY = re.compile(r'<h[1-6]\b([^>]*\bdata-kind="(\w+)"[^>]*)>(.*?)</h[1-6]>', re.S)
# Search (lunr, as Material runs it) matches what is typed as a prefix (`CutMix` finds `CutMix*`) and weighs each
# matching term by its rarity, so `CutMixed`, a rarer word than `CutMix`, would come first. Each API entry gets a
# keyword of its own (hidden from the results by the stylesheet), matched with the weight of the `tags` field: all
# entries whose name starts with what was typed weigh the same, and the boost decides: a class before a function or
# a method, and a shorter name (the exact one) before the longer names it begins.
WEIGHT = {'class': 8, 'function': 4, 'instance': 4, 'method': 2}
entries = {}

def mathml(tex, display):
    return convert(html.unescape(tex).strip(), display=display)


def on_pre_build(config): entries.clear()


def on_page_content(content, page, config, files):
    for attrs, kind, inner in ENTRY.findall(content):
        if hid := re.search(r'\bid="([^"]+)"', attrs):
            name = html.unescape(re.sub(r'<a class="headerlink".*?</a>|<[^>]+>', '', inner, flags=re.S)).strip()
            entries[f'{page.url}#{hid.group(1)}'] = (name, kind)
    content = BLOCK.sub(lambda m: f'<div class="math-block">{mathml(m.group(1), "block")}</div>', content)
    return INLINE.sub(lambda m: mathml(m.group(1), 'inline'), content)


def on_post_build(config):
    "Runs after the search plugin has written its index: each API entry gets its own keyword and its boost"
    path = os.path.join(config.site_dir, 'search', 'search_index.json')
    if not os.path.exists(path): return
    with open(path, encoding='utf-8') as f: index = json.load(f)
    for doc in index['docs']:
        if e := entries.get(doc['location']):
            name, kind = e
            # no other entry, and no text, has it
            doc['tags'] = [f'{name}\u2042{doc["location"].replace("#", ".").replace("-", "_")}']
            doc['boost'] = WEIGHT.get(kind, 1) / len(name)
    with open(path, 'w', encoding='utf-8') as f: json.dump(index, f, separators=(',', ':'), ensure_ascii=False)
