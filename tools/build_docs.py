"""Build the docs site (`make docs`): MkDocs + Material from the notebooks, the executed runbooks, the benchmark
summaries, the CLI's `--help` and the README, offline.

Pages are staged as Markdown in `_proc/docs/` (git-ignored), then `mkdocs build` writes the site to `_docs/`
(git-ignored; nbdev's doc_path):

- `nbs/*.ipynb` (stored without outputs): prose and code, and after each `#| export` cell the API reference of
  the public names it defines, in nbdev's `show_doc` form (signature with its `# comment` parameter docs,
  docstring), read from the cell's code; the examples' outputs too once `--execute-nbs` (`make docs NB_OUTPUTS=1`)
  has run the notebook as nbdev-test does (cached in `_proc/executed/` by notebook content).
- `nbs/reports/<runbook>.ipynb`: the executed copy in `report/<runbook>/` (written by `rtb-dcn demo`) with its
  tables and the figures its cells save there; a visible "not yet run" note over the unexecuted source when there is none
  (`--execute-missing` runs the missing ones first).
- `report/benchmarks/*`: one page per summary (Markdown as is; JSON as a table of its fields; its CSV and PNG).
- `rtb-dcn COMMAND --help`: one page per command. README.md: the home page. `docs/*.md`: hand-written pages.

A notebook that fails to render stops the build with its name; so does a broken internal link (mkdocs strict).
"""
from __future__ import annotations
import argparse, ast, base64, hashlib, html, json, os, re, shutil, sys, textwrap, time, warnings
from pathlib import Path

root = Path(__file__).resolve().parent.parent
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Navigation follows the path of the data: (section, notebook-name pattern), first match wins.
SECTIONS = [
    ('Setup', r'^00'), ('Data', r'^01'), ('Features', r'^02'), ('Models', r'^0[34]'),
    ('Training and export', r'^0[567]|tune'), ('Serving', r'^(08|1[0-4]|20)'), ('Stream and load', r'^(15|18|19)'),
    ('Evaluation', r'^1[67]|experiment'), ('Monitoring', r'monitor|drift'), ('Pipeline', r'pipeline'),
    ('Deploy', r'deploy|infra'), ('Scale-out', r'shards|spark|distributed'), ('CLI', r'^09'),
]
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.*)$')
_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
MAX_TEXT_LINES = 60

class DocsError(Exception): pass

def directives(src: str) -> tuple[dict, str]:
    "nbdev `#| ...` directives at the top of a code cell, and the code without them."
    d, lines = {}, src.splitlines()
    while lines and (m := _DIRECTIVE.match(lines[0])):
        k, _, v = m.group(1).strip().partition(' ')
        d[k.rstrip(':')] = v.strip(); lines.pop(0)
    return d, '\n'.join(lines).strip('\n')

def _text_block(text: str) -> str:
    lines = _ANSI.sub('', text).rstrip('\n').splitlines()
    if len(lines) > MAX_TEXT_LINES:
        lines = lines[:MAX_TEXT_LINES // 2] + [f'... ({len(lines) - MAX_TEXT_LINES} lines cut) ...'] + lines[-MAX_TEXT_LINES // 2:]
    body = '\n'.join(lines)
    fence = '````' if '```' in body else '```'
    return f'{fence}text\n{body}\n{fence}'

def render_output(out, files: dict, stem: str) -> str | None:
    "Markdown for one cell output; images are added to `files` ({relative name: bytes})."
    kind = out.get('output_type')
    if kind == 'stream': return _text_block(''.join(out.get('text', '')))
    if kind == 'error': return _text_block('\n'.join(out.get('traceback', [])) or f"{out.get('ename')}: {out.get('evalue')}")
    data = out.get('data', {})
    for mime, ext in (('image/png', 'png'), ('image/jpeg', 'jpg')):
        if mime in data:
            name = f'{stem}_{len(files)}.{ext}'
            files[name] = base64.b64decode(''.join(data[mime]) if isinstance(data[mime], list) else data[mime])
            return f'![output]({name})'
    if 'image/svg+xml' in data:
        name = f'{stem}_{len(files)}.svg'
        files[name] = ''.join(data['image/svg+xml']).encode()
        return f'![output]({name})'
    if 'text/html' in data:
        h = ''.join(data['text/html'])
        if '<script' in h.lower(): h = None          # interactive widgets need their JS: fall back to text
        else:
            h = '\n'.join(l for l in h.splitlines() if l.strip())  # a blank line would end the raw-HTML block
            return f'<div class="nb-output" markdown="0">\n{h}\n</div>'
    if 'text/markdown' in data: return ''.join(data['text/markdown'])
    if 'text/plain' in data: return _text_block(''.join(data['text/plain']))
    return None

def _header(lines: list[str], node) -> str:
    "The `def`/`class` line(s) of `node` as written, parameter comments included, without the body."
    first = node.body[0]
    if first.lineno > node.lineno: text = '\n'.join(lines[node.lineno - 1:first.lineno - 1])
    else: text = lines[node.lineno - 1][:first.col_offset]
    text = text.rstrip()
    if isinstance(first, ast.Expr) and isinstance(getattr(first, 'value', None), ast.Constant) and first.lineno == first.end_lineno:
        text = re.sub(r'\s*(\"\"\"|\'\'\'|"|\').*$', '', text) if text.rstrip().endswith(('"', "'")) else text
    return textwrap.dedent(text).rstrip()

def _doc_md(name: str, header: str, doc: str | None, level: int = 3) -> str:
    doc = (doc or '').strip()
    first, _, rest = doc.partition('\n')
    body = f'*{first.strip()}*' + (f'\n\n{textwrap.dedent(rest).strip()}' if rest.strip() else '') if doc else ''
    return f"{'#' * level} {name}\n\n```python\n{header}\n```\n\n{body}".rstrip()

def api_reference(code: str, public: list[str] | None = None) -> str:
    """nbdev `show_doc`-style reference of the public functions and classes a cell defines, read from the code
    itself (signature as written with its `# comment` parameter docs, docstring; a class's fields and public
    methods): no module import, so TensorFlow or Locust never load in the docs build."""
    try: tree = ast.parse(code)
    except SyntaxError: return ''
    lines, parts = code.splitlines(), []
    for n in tree.body:
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or n.name.startswith('_'): continue
        if public is not None and n.name not in public: continue
        if isinstance(n, ast.ClassDef):
            fields = [textwrap.dedent('\n'.join(lines[f.lineno - 1:f.end_lineno])) for f in n.body if isinstance(f, ast.AnnAssign)]
            header = _header(lines, n) + ('\n' + textwrap.indent('\n'.join(fields), '    ') if fields else '')
            parts.append(_doc_md(n.name, header, ast.get_docstring(n)))
            for m in n.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith('_') and ast.get_docstring(m):
                    parts.append(_doc_md(f'{n.name}.{m.name}', _header(lines, m), ast.get_docstring(m), level=4))
        else: parts.append(_doc_md(n.name, _header(lines, n), ast.get_docstring(n)))
    md = '\n\n'.join(parts)
    return f'<div class="api-ref" markdown="1">\n\n{md}\n\n</div>' if md else ''

def rewrite_links(md: str, page: Path, stage: Path, nb_pages: dict[str, str], files=()) -> str:
    "Point links at site pages (`X.ipynb` -> its page); a relative link to a file outside the site becomes code text."
    def fix(m):
        bang, text, target = m.group(1), m.group(2), m.group(3)
        if re.match(r'^[a-z][a-z0-9+.-]*:|^#|^/', target): return m.group(0)
        path, _, frag = target.partition('#')
        name = Path(path).name
        if name.endswith('.ipynb') and name[:-6] in nb_pages:
            dst = stage / nb_pages[name[:-6]]
            return f"{bang}[{text}]({os.path.relpath(dst, page.parent)}{'#' + frag if frag else ''})"
        if path in files or (page.parent / path).exists(): return m.group(0)
        if (stage / path).exists(): return f"{bang}[{text}]({os.path.relpath(stage / path, page.parent)}{'#' + frag if frag else ''})"
        return f'{text} (`{target}`)' if not bang else f'`{target}`'
    return re.sub(r'(!?)\[([^\]\n]*)\]\(([^)\s]+)\)', fix, md)

def notebook_markdown(nb_path: Path, page: Path, with_outputs: bool, with_api: bool = False, note: str = '',
                      figures_dir: Path | None = None) -> tuple[str, dict]:
    """A notebook as one Markdown page (+ its output images): prose, code, outputs, API reference after export cells;
    with `figures_dir`, the PNG each cell saves there (a runbook's figures) right after that cell."""
    import nbformat
    nb = nbformat.read(nb_path, as_version=4)
    files, parts, stem = {}, [], page.stem
    injected = [c for c in nb.cells if 'injected-parameters' in c.get('metadata', {}).get('tags', [])]
    if injected and note:   # papermill's values for this run, in the note (paths relative to the repository)
        vals = [l.strip().replace(str(root) + '/', '') for l in injected[0].source.splitlines() if '=' in l and not l.startswith('#')]
        note += '\n    Parameters of this run: ' + ', '.join(f'`{v}`' for v in vals) + '.'
    for i, c in enumerate(nb.cells):
        if c in injected: continue
        src = c.source.strip('\n')
        if c.cell_type == 'markdown':
            parts.append(src)
            if i == 0 and note: parts.append(note)
            continue
        if c.cell_type != 'code': continue
        d, code = directives(src)
        if 'hide' in d or 'default_exp' in d or d.get('echo') == 'false' and not c.get('outputs'): continue
        if code and d.get('echo') != 'false': parts.append(f'```python\n{code}\n```')
        if with_outputs and 'hide_output' not in d and d.get('output') != 'false':
            for o in c.get('outputs', []):
                if (r := render_output(o, files, stem)): parts.append(r)
        if figures_dir is not None:   # a runbook saves its figures (`fig.savefig(out / 'x.png')`): show each where it is made
            for m in re.finditer(r'savefig\(\s*\w+\s*/\s*[\'"]([\w.-]+\.(?:png|svg|jpg))[\'"]', code):
                if (f := Path(figures_dir) / m.group(1)).is_file() and f'{stem}_{f.name}' not in files:
                    files[f'{stem}_{f.name}'] = f.read_bytes(); parts.append(f'![{f.stem}]({stem}_{f.name})')
        if with_api and ('export' in d or 'exports' in d) and (ref := api_reference(code)):
            parts.append(ref)
    if not parts or not parts[0].lstrip().startswith('# '): parts.insert(0, f'# {nb_path.stem}')
    return '\n\n'.join(p for p in parts if p) + '\n', files

EXEC_CACHE = root / '_proc' / 'executed'

def executed_copy(nb_path: Path, cache: Path = EXEC_CACHE) -> Path:
    "Where the executed copy of this exact notebook content is cached (it may not exist yet)."
    return cache / f"{nb_path.stem}-{hashlib.sha1(nb_path.read_bytes()).hexdigest()[:12]}.ipynb"

def _execute(nb_path: str, dst: str) -> float:
    "Run one notebook as `nbdev-test` does (flagged cells skipped, in nbs/), keeping the outputs in `dst`; seconds."
    from fastcore.nbio import write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    t0, nb_path = time.time(), Path(nb_path)
    os.environ['IN_TEST'] = '1'
    nb = NBProcessor(nb_path, rm_directives=False, process=True).nb
    shell = CaptureShell(nb_path)
    with working_directory(root / 'nbs'):   # where nbdev-test runs every notebook
        shell.run_all(nb, exc_stop=True, preproc=_skip_cell(nb, list(get_config().tst_flags)), cell_timeout=900)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    return time.time() - t0

def execute_notebooks(nb_paths: list[Path], workers: int = 2, cache: Path = EXEC_CACHE) -> dict:
    """Execute the notebooks whose current content has no cached executed copy, `workers` at a time, each in a fresh
    process; {notebook name: seconds}. A notebook that fails stops the build with its name."""
    import concurrent.futures as cf, multiprocessing as mp
    todo = [p for p in nb_paths if not executed_copy(p, cache).is_file()]
    done = {}
    if not todo: return done
    print(f"docs: executing {len(todo)} notebook(s), {workers} at a time (cached in {_rel(cache)}/)", flush=True)
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context('spawn'), max_tasks_per_child=1) as ex:
        futs = {ex.submit(_execute, str(p), str(executed_copy(p, cache))): p for p in todo}
        for f in cf.as_completed(futs):
            p = futs[f]
            try: done[p.name] = f.result()
            except Exception as e:
                for g in futs: g.cancel()
                why = ' | '.join(l.strip() for l in str(e).splitlines()[:4] if l.strip())
                raise DocsError(f"docs: notebook {_rel(p)} failed to execute: {type(e).__name__}: {why} (run `nbdev-test {p.name}` in nbs/)") from e
            print(f"docs: executed {p.name} in {done[p.name]:.0f}s", flush=True)
    return done

def nb_title(nb_path: Path) -> str:
    import nbformat
    for c in nbformat.read(nb_path, as_version=4).cells:
        if c.cell_type == 'markdown' and (m := re.match(r'^#\s+(.+)', c.source.strip())): return m.group(1).strip()
    return nb_path.stem

def _rel(p: Path) -> str:
    try: return p.resolve().relative_to(root).as_posix()
    except ValueError: return str(p)

def write_page(stage: Path, rel: str, md: str, files: dict | None = None):
    p = stage / rel; p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(md)
    for n, b in (files or {}).items(): (p.parent / n).write_bytes(b)

def section_of(stem: str) -> str:
    return next((s for s, pat in SECTIONS if re.search(pat, stem)), 'More')

def stage_notebooks(stage: Path, nb_paths: list[Path], with_api: bool) -> list[tuple[str, str, str]]:
    "Stage one page per notebook; returns (section, title, page) in notebook order."
    out, pages = [], {p.stem: f'nbs/{p.stem}.md' for p in nb_paths}
    for nb in nb_paths:
        try:
            ex = executed_copy(nb)
            note = (f'!!! info "Outputs"\n    The outputs below come from running this notebook as `nbdev-test` does (cells flagged '
                    f'slow, redis or aws skipped) on {time.strftime("%Y-%m-%d", time.gmtime(ex.stat().st_mtime))}.'
                    if ex.is_file() else '')
            md, files = notebook_markdown(ex if ex.is_file() else nb, stage / pages[nb.stem], with_outputs=True, with_api=with_api, note=note)
            md = rewrite_links(md, stage / pages[nb.stem], stage, pages, files)
        except Exception as e:
            raise DocsError(f"docs: notebook {_rel(nb)} failed to render: {type(e).__name__}: {e}") from e
        write_page(stage, pages[nb.stem], md, files)
        out.append((section_of(nb.stem), f'{nb.stem[:3].rstrip("_")} · {nb_title(nb)}', pages[nb.stem]))
    return out

def stage_runbooks(stage: Path, report_dir: Path, nb_pages: dict) -> list[tuple[str, str]]:
    "One page per runbook: its executed copy from the last demo, or its source under a 'not yet run' note."
    out = []
    for src in sorted((root / 'nbs' / 'reports').glob('*.ipynb')):
        name, page = src.stem, f'reports/{src.stem}.md'
        executed = report_dir / name / f'{name}.ipynb'
        try:
            if executed.is_file():
                when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(executed.stat().st_mtime))
                note = (f'!!! info "Executed report"\n    Executed by `rtb-dcn demo` on {when}; '
                        f'figures and tables below are its outputs (`report/{name}/`).')
                md, files = notebook_markdown(executed, stage / page, with_outputs=True, note=note, figures_dir=executed.parent)
            else:
                note = (f'!!! warning "Not yet run"\n    This runbook has no executed copy in `report/{name}/`: the code is shown '
                        f'without results. Run `rtb-dcn demo --only {name}` (or `make docs EXECUTE=1`), then `make docs`.')
                figs = report_dir / name
                if any(figs.glob('*.png')):
                    note += (f'\n    The figures shown are the files an earlier run left in `report/{name}/` '
                             f'(from {time.strftime("%Y-%m-%d", time.gmtime(max(p.stat().st_mtime for p in figs.glob("*.png"))))}).')
                md, files = notebook_markdown(src, stage / page, with_outputs=False, note=note, figures_dir=figs)
            md = rewrite_links(md, stage / page, stage, nb_pages, files)
        except Exception as e:
            raise DocsError(f"docs: runbook {name} failed to render: {type(e).__name__}: {e}") from e
        write_page(stage, page, md, files)
        out.append((nb_title(src), page))
    return out

def _json_table(d: dict) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, (dict, list)): continue
        v = html.escape(str(v)).replace('|', '\\|')
        rows.append(f'| `{k}` | {v[:300]} |')
    return '| field | value |\n| --- | --- |\n' + '\n'.join(rows) if rows else ''

def stage_benchmarks(stage: Path, bench_dir: Path) -> list[tuple[str, str]]:
    "One page per benchmark summary in report/benchmarks/ (by stem: .md, .json, .csv, .png)."
    import pandas as pd
    out = []
    stems = sorted({p.stem for p in bench_dir.glob('*') if p.suffix in ('.md', '.json')}) if bench_dir.is_dir() else []
    for stem in stems:
        parts, files = [], {}
        if (p := bench_dir / f'{stem}.md').is_file(): parts.append(p.read_text())
        else: parts.append(f'# Benchmark: {stem}')
        if (p := bench_dir / f'{stem}.png').is_file():
            files[p.name] = p.read_bytes(); parts.append(f'![{stem}]({p.name})')
        if (p := bench_dir / f'{stem}.json').is_file():
            d = json.loads(p.read_text())
            if isinstance(d, dict):
                for k in ('conclusion', 'summary', 'goal'):
                    if isinstance(d.get(k), str): parts.append(f'!!! note "{k}"\n    {d[k]}')
                parts.append(_json_table(d))
            parts.append(f'??? abstract "{p.name} (all fields)"\n\n    ```json\n' +
                         '\n'.join('    ' + l for l in json.dumps(d, indent=1)[:20000].splitlines()) + '\n    ```')
        if (p := bench_dir / f'{stem}.csv').is_file():
            df = pd.read_csv(p)
            parts.append(f'**{p.name}** ({len(df)} rows)\n\n<div class="nb-output" markdown="0">\n'
                         + df.head(40).to_html(index=False, float_format=lambda x: f'{x:.4g}', border=0) + '\n</div>')
        write_page(stage, f'benchmarks/{stem}.md', '\n\n'.join(p for p in parts if p) + '\n', files)
        title = next((l[2:].strip() for l in parts[0].splitlines() if l.startswith('# ')), stem)
        out.append((stem if title.startswith('Benchmark: ') else title, f'benchmarks/{stem}.md'))
    return out

def stage_cli(stage: Path) -> list[tuple[str, str]]:
    "One page per `rtb-dcn` command, from its `--help` (the same parser the CLI builds)."
    import importlib
    from fastcore.script import anno_parser
    from rtb_dcn.cli import COMMANDS, _usage
    out = [('rtb-dcn', 'cli/index.md')]
    rows = '\n'.join(f'| [`{k}`]({k}.md) | {html.escape(v[2])} |' for k, v in COMMANDS.items())
    write_page(stage, 'cli/index.md', f'# The `rtb-dcn` command\n\n```text\n{_usage()}\n```\n\n| command | what it does |\n| --- | --- |\n{rows}\n')
    for name, (mod, fn, desc) in COMMANDS.items():
        try:
            f = getattr(importlib.import_module(mod), fn)
            f = getattr(f, '__wrapped__', f)
            text = anno_parser(f, prog=f'rtb-dcn {name}').format_help()
        except Exception as e:
            raise DocsError(f"docs: `rtb-dcn {name} --help` failed: {type(e).__name__}: {e}") from e
        write_page(stage, f'cli/{name}.md', f'# rtb-dcn {name}\n\n{html.escape(desc)}\n\n```text\n$ rtb-dcn {name} --help\n{text.rstrip()}\n```\n')
        out.append((name, f'cli/{name}.md'))
    return out

def stage_home(stage: Path, nb_pages: dict):
    "README.md as the home page, and the architecture diagram beside it."
    for ext in ('svg', 'png'):
        if (p := root / f'architecture_diagram.{ext}').is_file(): shutil.copy(p, stage / p.name)
    md = (root / 'README.md').read_text()
    md = re.sub(r'<!-- generated from .*?-->\s*$', '', md, flags=re.S)
    write_page(stage, 'index.md', rewrite_links(md, stage / 'index.md', stage, nb_pages))

def build(site_dir: Path = None, stage: Path = None, report_dir: Path = None, notebooks: list[str] | None = None,
          with_api: bool = True, strict: bool = True, execute_missing: bool = False, execute_nbs: bool = False) -> Path:
    "Stage every page and run `mkdocs build`; returns the site folder."
    from mkdocs.config import load_config
    from mkdocs.commands.build import build as mkdocs_build
    t0 = time.time()
    site_dir, stage = Path(site_dir or root / '_docs'), Path(stage or root / '_proc' / 'docs')
    report_dir = Path(report_dir or root / 'report')
    if execute_missing:
        from rtb_dcn.cli import run_runbooks
        missing = [p.stem for p in sorted((root / 'nbs' / 'reports').glob('*.ipynb'))
                   if not (report_dir / p.stem / f'{p.stem}.ipynb').is_file()]
        if missing: run_runbooks(missing, report_dir=str(report_dir))
    if stage.exists(): shutil.rmtree(stage)
    stage.mkdir(parents=True)
    shutil.copytree(root / 'docs', stage, dirs_exist_ok=True)
    nb_paths = sorted(p for p in (root / 'nbs').glob('*.ipynb') if not p.name.startswith('_') and p.name != 'index.ipynb')
    if notebooks is not None: nb_paths = [p for p in nb_paths if p.stem in notebooks]
    if execute_nbs: execute_notebooks(nb_paths)
    nb_pages = {p.stem: f'nbs/{p.stem}.md' for p in nb_paths}
    stage_home(stage, nb_pages)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        nbs = stage_notebooks(stage, nb_paths, with_api)
        cli = stage_cli(stage)
    runbooks = stage_runbooks(stage, report_dir, nb_pages)
    bench = stage_benchmarks(stage, report_dir / 'benchmarks')
    nav = [{'Home': 'index.md'}, {'Architecture': 'architecture.md'}]
    order = [s for s, _ in SECTIONS if s != 'CLI'] + ['More', 'CLI']
    for sec in order:
        items = [{t: p} for s, t, p in nbs if s == sec]
        if sec == 'CLI': items += [{t: p} for t, p in cli]
        if items: nav.append({sec: items})
    nav.append({'Reports': [{t: p} for t, p in runbooks]})
    if bench: nav.append({'Benchmarks': [{t: p} for t, p in bench]})
    nav.append({'Publishing the site': 'publishing.md'})
    t1 = time.time()
    # the config actually built: mkdocs.yml + the staged folder + the navigation, beside the stage; Zensical reads it
    # too (`zensical build -f _proc/mkdocs.gen.yml`: see docs/publishing.md)
    import yaml
    conf = yaml.safe_load((root / 'mkdocs.yml').read_text())
    conf.update(docs_dir=stage.name, site_dir=os.path.relpath(site_dir, stage.parent), nav=nav)
    gen = stage.parent / 'mkdocs.gen.yml'
    gen.write_text('# generated by tools/build_docs.py from mkdocs.yml: do not edit\n' + yaml.safe_dump(conf, sort_keys=False, allow_unicode=True))
    cfg = load_config(str(gen), strict=strict)
    import logging
    log, h = logging.getLogger('mkdocs'), logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter('mkdocs %(levelname)s: %(message)s')); h.setLevel(logging.WARNING)
    log.addHandler(h)
    try: mkdocs_build(cfg)
    except Exception as e:
        raise DocsError(f"docs: mkdocs build failed: {type(e).__name__}: {e}") from e
    finally: log.removeHandler(h)
    n = sum(1 for _ in site_dir.rglob('*.html'))
    print(f"docs: {len(nbs)} notebooks, {len(runbooks)} runbooks, {len(bench)} benchmark pages, {len(cli) - 1} commands; "
          f"{n} HTML pages in {site_dir} (staged {t1 - t0:.0f}s, mkdocs {time.time() - t1:.0f}s)")
    return site_dir

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--site-dir', default=None, help='where the site goes (default: _docs/)')
    ap.add_argument('--report-dir', default=None, help='executed runbooks and benchmarks (default: report/)')
    ap.add_argument('--execute-missing', action='store_true', help='run runbooks with no executed copy first (minutes)')
    ap.add_argument('--execute-nbs', action='store_true', help="run the notebooks whose executed copy is not cached yet "
                    "(_proc/executed/, keyed by content) so their pages show the examples' outputs (minutes)")
    ap.add_argument('--no-api', action='store_true', help='skip the API reference')
    a = ap.parse_args()
    try: build(a.site_dir, report_dir=a.report_dir, with_api=not a.no_api, execute_missing=a.execute_missing, execute_nbs=a.execute_nbs)
    except DocsError as e: sys.exit(str(e))
