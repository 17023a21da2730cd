"""Round-trip notebooks and percent-format scripts, for authoring notebooks in a text editor.

    python tools/nbpy.py to-nb  src.py  nbs/01_data.ipynb   # percent script -> notebook (no outputs)
    python tools/nbpy.py to-py  nbs/01_data.ipynb  /tmp/01_data.py

Cells start with `# %%` (code) or `# %% [markdown]` (markdown; lines start with `# `).
`# %% tags=["parameters"]` keeps papermill's tag. The notebooks in nbs/ stay the source.
"""
import json, re, sys
from pathlib import Path
import nbformat

_hdr = re.compile(r'^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$')

def py_to_nb(text):
    cells, cur, kind, tags = [], [], None, None
    def flush():
        if kind is None: return
        src = '\n'.join(cur).strip('\n')
        if kind == 'md':
            src = '\n'.join(l[2:] if l.startswith('# ') else ('' if l == '#' else l) for l in src.split('\n'))
            c = nbformat.v4.new_markdown_cell(src)
        else: c = nbformat.v4.new_code_cell(src)
        if tags: c.metadata['tags'] = tags
        cells.append(c)
    for line in text.split('\n'):
        m = _hdr.match(line)
        if m:
            flush(); cur = []
            kind = 'md' if m['md'] else 'code'
            tags = json.loads(m['tags']) if m['tags'] else None
        elif kind is not None: cur.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    return nb

def nb_to_py(nb):
    out = []
    for c in nb.cells:
        tags = c.metadata.get('tags')
        t = f' tags={json.dumps(tags)}' if tags else ''
        if c.cell_type == 'markdown':
            out.append(f'# %% [markdown]{t}')
            out += [('# ' + l) if l else '#' for l in c.source.split('\n')]
        else:
            out.append(f'# %%{t}')
            out += c.source.split('\n')
        out.append('')
    return '\n'.join(out)

if __name__ == '__main__':
    cmd, src, dst = sys.argv[1:4]
    if cmd == 'to-nb':
        nb = py_to_nb(Path(src).read_text())
        nbformat.write(nb, dst)
    elif cmd == 'to-py':
        Path(dst).write_text(nb_to_py(nbformat.read(src, as_version=4)))
    else: sys.exit(f'unknown command {cmd!r}: expected to-nb or to-py')
