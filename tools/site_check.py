"""Drive headless Chromium through the built docs site (`make docs-check`; tests/test_docs.py uses `check_site`).

Serves the site on 127.0.0.1 (a free port), visits every page reachable from the home page and reports broken
internal links, missing images, JavaScript console errors and failed requests; runs a search; saves screenshots.
Chromium is Debian's (`/usr/bin/chromium`, or $RTB_CHROMIUM), driven by Playwright without `playwright install`;
host resolution is confined to localhost so the browser never reaches out.

    python tools/site_check.py [_docs] [--screenshots report/docs]
"""
from __future__ import annotations
import contextlib, functools, http.server, os, shutil, sys, threading, time, urllib.error, urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

root = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ['--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1', '--disable-background-networking',
                 '--disable-component-update', '--no-first-run', '--disable-dev-shm-usage']

def find_chromium() -> str | None:
    "Path of a Chromium binary ($RTB_CHROMIUM, chromium or chromium-browser on PATH), or None."
    if (p := os.environ.get('RTB_CHROMIUM')) and Path(p).is_file(): return p
    return next((p for n in ('chromium', 'chromium-browser') if (p := shutil.which(n))), None)

def why_no_browser() -> str | None:
    "None when the browser check can run here, else the one-line reason it cannot."
    if find_chromium() is None:
        return "chromium not found: `make test` installs Debian's chromium when run as root (else: apt-get install chromium)"
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return "playwright not installed: run `make venv` (the docs extra)"
    return None

@contextlib.contextmanager
def serve(site: Path):
    "Serve `site` on 127.0.0.1 at a free port in a thread; yields the base URL."
    from rtb_dcn.servers import free_port
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):   # a browser that drops a connection is not news
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)): super().handle_error(request, client_address)
    httpd = Server(('127.0.0.1', free_port()), functools.partial(Handler, directory=str(site)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
    try: yield f'http://127.0.0.1:{httpd.server_address[1]}/'
    finally: httpd.shutdown(); httpd.server_close()

def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method='HEAD'), timeout=10) as r: return r.status
    except urllib.error.HTTPError as e: return e.code

def check_site(site: Path, screenshots: Path | None = None, query: str = 'FeatureSpec', report_page: str = 'reports/offline_eval.html', n_tabs: int = 2) -> dict:
    """Visit every page of the built site in headless Chromium; returns {'pages', 'problems', 'search', 'screenshots'}.
    `problems` lists each broken link, missing image, console error and failed request with the page it was on."""
    from playwright.sync_api import sync_playwright
    site = Path(site)
    out = dict(pages=[], problems=[], search=[], screenshots=[])
    with serve(site) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            def tab():
                pg = browser.new_page(viewport={'width': 1280, 'height': 860}); pg.where = ''
                note = lambda msg: out['problems'].append(f'{pg.where}: {msg}')
                pg.on('console', lambda m: m.type == 'error' and note(f'console error: {m.text}'))
                pg.on('pageerror', lambda e: note(f'JavaScript error: {e}'))
                # ERR_ABORTED: a request still in flight when the tab moves on (the search worker's index): not a fault
                pg.on('requestfailed', lambda r: 'ERR_ABORTED' not in (r.failure or '') and note(f'request failed: {r.url} ({r.failure})'))
                pg.on('response', lambda r: r.status >= 400 and note(f'HTTP {r.status} for {r.url}'))
                return pg
            tabs = [tab() for _ in range(n_tabs)]   # pages load side by side, two at a time
            todo, seen, checked = [base + 'index.html'], set(), {}
            while todo:
                batch = []
                while todo and len(batch) < len(tabs):
                    if (url := todo.pop(0)) not in seen: seen.add(url); batch.append(url)
                for pg, url in zip(tabs, batch):
                    pg.where = url[len(base):]; pg.t0 = time.perf_counter(); pg.goto(url, wait_until='commit')
                for pg, url in zip(tabs, batch):
                    pg.wait_for_load_state('load')
                    out['pages'].append(pg.where); out.setdefault('seconds', {})[pg.where] = time.perf_counter() - pg.t0
                    for src in pg.eval_on_selector_all('img', 'els => els.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src)'):
                        out['problems'].append(f"{pg.where}: missing image {src}")
                    for href in pg.eval_on_selector_all('a[href]', 'els => els.map(a => a.href)'):
                        target = urljoin(url, href).split('#')[0]
                        if not target.startswith(base): continue
                        if target.endswith('/'): target += 'index.html'
                        if target.endswith('.html') and target not in seen and target not in todo: todo.append(target)
                        if target not in checked: checked[target] = _status(target)
                        if checked[target] >= 400: out['problems'].append(f"{pg.where}: broken link {href} (HTTP {checked[target]})")
            page = tabs[0]
            page.where = 'index.html (search)'
            # search, the way a reader does it: open the search box, type, read the results
            page.goto(base + 'index.html', wait_until='load')
            try:
                page.locator('input.md-search__input').click(timeout=10000)
                page.keyboard.type(query, delay=20)
                page.wait_for_selector('.md-search-result__item', timeout=15000)
                out['search'] = [urlsplit(urljoin(base, h)).path.lstrip('/') for h in
                                 page.eval_on_selector_all('.md-search-result__item > a', 'els => els.map(a => a.href)')]
            except Exception as e:
                out['problems'].append(f"search for {query!r}: {type(e).__name__}: {str(e).splitlines()[0]}")
            if screenshots is not None:
                screenshots = Path(screenshots); screenshots.mkdir(parents=True, exist_ok=True)
                page.set_viewport_size({'width': 1280, 'height': 1440})   # the home page down to the architecture diagram
                page.goto(base + 'index.html', wait_until='load')
                page.screenshot(path=str(p := screenshots / 'home.png')); out['screenshots'].append(p)
                page.set_viewport_size({'width': 1280, 'height': 860})
                page.goto(base + report_page, wait_until='load')
                # the first figure, with the heading above it in view
                page.evaluate("(() => { const i = document.querySelector('.md-content img'); if (i) { i.scrollIntoView(); window.scrollBy(0, -160); } })()")
                page.wait_for_timeout(300)
                page.screenshot(path=str(p := screenshots / f'report_{Path(report_page).stem}.png')); out['screenshots'].append(p)
        finally: browser.close()
    return out

if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('site', nargs='?', default=str(root / '_docs'))
    ap.add_argument('--screenshots', default=None, help='folder for home.png and report_offline_eval.png')
    a = ap.parse_args()
    if (why := why_no_browser()): sys.exit(f'site-check: {why}')
    r = check_site(Path(a.site), a.screenshots)
    for p in r['problems']: print('site-check:', p)
    slow = sorted(r.get('seconds', {}).items(), key=lambda kv: -kv[1])[:5]
    print('site-check: slowest pages:', ', '.join(f'{k} {v:.1f}s' for k, v in slow))
    print(f"site-check: {len(r['pages'])} pages, {len(r['problems'])} problems; search 'FeatureSpec' -> {r['search'][:5]}; "
          f"screenshots: {', '.join(map(str, r['screenshots'])) or 'none'}")
    sys.exit(1 if r['problems'] else 0)
