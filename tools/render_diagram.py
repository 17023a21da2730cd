"""Render architecture_diagram.mmd to architecture_diagram.svg and .png (`make diagram`), offline.

mermaidx runs the real Mermaid library in an embedded JS engine: no browser, no network. Each picture records
the SHA-256 of the .mmd it was drawn from (an XML comment in the SVG, a tEXt chunk in the PNG); `--check` exits 1
when either is missing or was drawn from another version of the .mmd (the tests run it, so CI fails on a stale
picture).
"""
import hashlib, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
SRC, SVG, PNG = (root / f'architecture_diagram.{e}' for e in ('mmd', 'svg', 'png'))
KEY = 'rtb_dcn-source-sha256'

def source_hash(src: Path = SRC) -> str: return hashlib.sha256(src.read_bytes()).hexdigest()

def recorded_hashes(svg: Path = SVG, png: Path = PNG) -> dict:
    "{'svg': hash or None, 'png': hash or None}: the .mmd version each picture was drawn from."
    from PIL import Image
    out = {'svg': None, 'png': None}
    if svg.is_file() and (m := re.search(rf'{KEY}: ([0-9a-f]{{64}})', svg.read_text(errors='replace')[:500])): out['svg'] = m.group(1)
    if png.is_file():
        with Image.open(png) as im: out['png'] = im.info.get(KEY)
    return out

def render(src: Path = SRC, svg: Path = SVG, png: Path = PNG, scale: float = 1.25):
    import io, mermaidx
    from PIL import Image, PngImagePlugin
    h = source_hash(src)
    d = mermaidx.render(src.read_text())
    svg.write_text(f'<!-- generated from {src.name} by tools/render_diagram.py; {KEY}: {h} -->\n' + d.svg())
    buf = io.BytesIO(); d.save(str(png), scale=scale)
    info = PngImagePlugin.PngInfo(); info.add_text(KEY, h)
    with Image.open(png) as im: im.load(); im.save(buf, format='PNG', pnginfo=info, optimize=True)
    png.write_bytes(buf.getvalue())

def check() -> str | None:
    "None when both pictures were drawn from the current .mmd, else a one-line reason."
    h, rec = source_hash(), recorded_hashes()
    stale = [k for k, v in rec.items() if v != h]
    if stale: return f"architecture_diagram.{'/'.join(stale)} out of date with architecture_diagram.mmd: run `make diagram` and commit"
    return None

if __name__ == '__main__':
    if '--check' in sys.argv:
        if (why := check()): sys.exit(why)
        print('diagram: architecture_diagram.svg/.png drawn from the current .mmd')
    else:
        import time; t = time.time(); render()
        print(f'diagram: architecture_diagram.svg and .png rendered from architecture_diagram.mmd in {time.time() - t:.1f}s')
