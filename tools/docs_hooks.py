"MkDocs hooks for the documentation site (see mkdocs.yml): formulas become MathML while building"
import html, re
from latex2mathml.converter import convert

# pymdownx.arithmatex (generic mode) marks $...$ as <span class="arithmatex">\(...\)</span> and $$...$$ as
# <div class="arithmatex">\[...\]</div>, untouched by the rest of Markdown; browsers render MathML themselves.
INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def mathml(tex, display):
    return convert(html.unescape(tex).strip(), display=display)


def on_page_content(content, page, config, files):
    content = BLOCK.sub(lambda m: f'<div class="math-block">{mathml(m.group(1), "block")}</div>', content)
    return INLINE.sub(lambda m: mathml(m.group(1), 'inline'), content)
