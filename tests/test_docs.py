"""The docs site: the diagram is drawn from the current .mmd, `make docs`'s build handles a missing runbook and a
broken notebook, and the built site holds up in headless Chromium (links, images, console, search)."""
import json, shutil, sys
from pathlib import Path
import pytest

root = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(root / 'tools'))
import build_docs, render_diagram, site_check  # noqa: E402

def test_diagram_up_to_date():
    "CI fails when architecture_diagram.svg/.png were not re-rendered after the .mmd changed (`make diagram`)."
    assert render_diagram.check() is None, render_diagram.check()
    svg = (root / 'architecture_diagram.svg').read_text()
    assert 'landed' in svg and 'planned' in svg   # the legend: what is there and what is to come

def test_diagram_check_notices_a_changed_source(tmp_path):
    src, svg, png = (tmp_path / f'd.{e}' for e in ('mmd', 'svg', 'png'))
    src.write_text('flowchart LR\n  A["reader"]:::landed --> B["model"]\n  classDef landed fill:#d4f7d4\n')
    render_diagram.render(src, svg, png, scale=1)
    assert render_diagram.recorded_hashes(svg, png) == {'svg': render_diagram.source_hash(src), 'png': render_diagram.source_hash(src)}
    src.write_text(src.read_text() + '  B --> C["bid"]\n')
    assert render_diagram.recorded_hashes(svg, png)['svg'] != render_diagram.source_hash(src)

def test_runbook_without_executed_copy_says_not_yet_run(tmp_path):
    pages = build_docs.stage_runbooks(tmp_path / 'stage', tmp_path / 'empty_report', {})
    assert ('Data summary runbook', 'reports/data_summary.md') in pages
    md = (tmp_path / 'stage' / 'reports' / 'data_summary.md').read_text()
    assert '!!! warning "Not yet run"' in md and 'rtb-dcn demo --only data_summary' in md

def test_notebook_that_fails_to_render_is_named(tmp_path):
    bad = tmp_path / '99_broken.ipynb'
    bad.write_text('{"cells": [')    # truncated JSON
    with pytest.raises(build_docs.DocsError, match='99_broken.ipynb failed to render'):
        build_docs.stage_notebooks(tmp_path / 'stage', [bad], with_api=True)

def test_api_reference_from_an_export_cell():
    code = ('def bid(pctr: float,   # predicted click probability\n        value: float = 1.0):  # value of a click\n'
            '    "Linear bid: pctr times value."\n    return pctr * value\n\ndef _helper(): pass\n\n'
            'class Arm:\n    "One A/B arm."\n    name: str   # the arm\'s label\n    def weight(self) -> float:\n        "Its share of traffic."\n')
    md = build_docs.api_reference(code)
    assert '### bid' in md and '# predicted click probability' in md and '*Linear bid: pctr times value.*' in md
    assert '_helper' not in md and '### Arm' in md and "name: str   # the arm's label" in md and '#### Arm.weight' in md

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The whole site, built from this checkout (notebooks, report/ as it is, benchmarks, CLI) into a temporary folder."
    tmp = tmp_path_factory.mktemp('docs')
    return build_docs.build(site_dir=tmp / 'site', stage=tmp / 'stage')

def test_site_has_every_part(site):
    for page in ('index.html', 'architecture.html', 'nbs/02_features.html', 'cli/train.html', 'reports/offline_eval.html', 'publishing.html'):
        assert (site / page).is_file(), page
    features = (site / 'nbs' / '02_features.html').read_text()
    assert 'api-ref' in features and 'FeatureSpec' in features          # the API reference of what 02 exports
    assert '--help' in (site / 'cli' / 'train.html').read_text()
    assert 'architecture_diagram.svg' in (site / 'index.html').read_text()  # the home page shows the picture
    index = json.loads((site / 'search' / 'search_index.json').read_text())
    assert any(d['location'].startswith('nbs/02_features.html') for d in index['docs'])

def test_site_in_headless_chromium(site, tmp_path):
    "Every page in a real browser: no broken internal link, no missing image, no console error; search finds FeatureSpec."
    if (why := site_check.why_no_browser()): pytest.skip(why)
    r = site_check.check_site(site, screenshots=tmp_path / 'shots')
    assert r['problems'] == [], '\n'.join(r['problems'][:20])
    n_html = sum(1 for p in site.rglob('*.html') if p.name != '404.html')
    assert len(r['pages']) == n_html, sorted({p.relative_to(site).as_posix() for p in site.rglob('*.html')} - set(r['pages']))
    assert r['search'] and r['search'][0].startswith('nbs/02_features.html'), r['search'][:5]
    assert all(p.stat().st_size > 20_000 for p in r['screenshots']) and len(r['screenshots']) == 2

def test_publish_to_s3_on_moto(moto_url, tmp_path):
    "`make docs-publish DOCS_TARGET=s3://...`: every file under the prefix with its content type; stale keys deleted."
    import boto3, publish_docs
    site = tmp_path / 'site'; (site / 'nbs').mkdir(parents=True)
    (site / 'index.html').write_text('<html>home</html>'); (site / 'nbs' / '02_features.html').write_text('<html>f</html>')
    (site / 'diagram.svg').write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    s3 = boto3.client('s3', endpoint_url=moto_url, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
    s3.create_bucket(Bucket='rtb-docs')
    s3.put_object(Bucket='rtb-docs', Key='site/old.html', Body=b'stale')
    assert publish_docs.publish_s3(site, 's3://rtb-docs/site', client=s3) == 3
    keys = {o['Key'] for o in s3.list_objects_v2(Bucket='rtb-docs')['Contents']}
    assert keys == {'site/index.html', 'site/nbs/02_features.html', 'site/diagram.svg'}
    assert s3.head_object(Bucket='rtb-docs', Key='site/index.html')['ContentType'] == 'text/html'
    assert s3.head_object(Bucket='rtb-docs', Key='site/diagram.svg')['ContentType'] == 'image/svg+xml'

def test_executed_notebook_keeps_outputs_and_skips_flagged_cells(tmp_path):
    "`make docs NB_OUTPUTS=1`: a notebook runs as nbdev-test runs it (flagged cells skipped) and its outputs reach the page."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# Tiny'),
                                         nbformat.v4.new_code_cell('print(6 * 7)'),
                                         nbformat.v4.new_code_cell('#| redis\nprint("needs redis")')])
    src = tmp_path / 'tiny.ipynb'; nbformat.write(nb, src)
    cache = tmp_path / 'executed'
    assert set(build_docs.execute_notebooks([src], workers=1, cache=cache)) == {'tiny.ipynb'}
    md, _ = build_docs.notebook_markdown(build_docs.executed_copy(src, cache), tmp_path / 'tiny.md', with_outputs=True)
    assert '```text\n42\n```' in md and 'needs redis' in md and md.count('```text') == 1
    assert build_docs.execute_notebooks([src], workers=1, cache=cache) == {}   # cached by content: not run again
