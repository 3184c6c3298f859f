// Wide content says so: every box of a page that scrolls sideways (a wide table, a long line of code or output)
// gets a visible cue above it, and the class `scrolls-x` (which tests/test_docs.py checks for). Runs when the page
// has loaded and again when the window is resized, since what is too wide depends on the width of the column.
(function () {
  const BLOCK = 'div.highlight, .md-typeset__scrollwrap, .nb-html, .math-block';
  function mark() {
    const article = document.querySelector('article.md-content__inner');
    if (!article) return;
    article.querySelectorAll('.scroll-cue').forEach(c => c.remove());
    article.querySelectorAll('.scrolls-x').forEach(e => e.classList.remove('scrolls-x'));
    const cued = new Set();
    for (const e of article.querySelectorAll('*')) {
      const ox = getComputedStyle(e).overflowX;
      if ((ox !== 'auto' && ox !== 'scroll') || e.scrollWidth <= e.clientWidth + 1) continue;
      e.classList.add('scrolls-x');
      const block = e.closest(BLOCK) || e;
      if (cued.has(block)) continue;
      cued.add(block);
      const cue = document.createElement('div');
      cue.className = 'scroll-cue';
      cue.textContent = 'wider than the page: scroll sideways \u2192';
      block.parentNode.insertBefore(cue, block);
    }
  }
  let timer = null;
  window.addEventListener('load', mark);
  window.addEventListener('resize', () => { clearTimeout(timer); timer = setTimeout(mark, 150); });
  if (document.readyState === 'complete') mark();
})();
