"""Render README.md from nbs/index.ipynb (markdown cells as they are, code cells as ```python blocks).

nbdev's own `nbdev-readme` needs Quarto, which is not installable from a package registry, so this
small renderer does the same job; `--check` exits 1 when README.md is out of date (CI runs it).
"""
import sys
from pathlib import Path
import nbformat

root = Path(__file__).resolve().parent.parent

def render(nb_path=root / 'nbs' / 'index.ipynb') -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for c in nb.cells:
        src = c.source.strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if c.cell_type == 'markdown' else f'```python\n{src}\n```')
    parts.append('<!-- generated from nbs/index.ipynb by tools/render_readme.py: edit the notebook, not this file -->')
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, dst = render(), root / 'README.md'
    if '--check' in sys.argv:
        if not dst.exists() or dst.read_text() != text:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `make sync` and commit')
    else: dst.write_text(text)
