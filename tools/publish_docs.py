"""Publish the built site (`make docs-publish`): `_docs/` to GitHub Pages (ghp-import) or to an S3 bucket.

    python tools/publish_docs.py                       # gh-pages branch of origin, pushed
    python tools/publish_docs.py s3://BUCKET/PREFIX    # each file with its content type; stale keys deleted
"""
import mimetypes, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def publish_s3(site: Path, target: str, client=None) -> int:
    "Upload every file of `site` under s3://bucket/prefix, delete keys no longer in the site; returns files uploaded."
    import boto3
    bucket, _, prefix = target[len('s3://'):].partition('/')
    prefix = prefix.strip('/') + '/' if prefix.strip('/') else ''
    s3 = client or boto3.client('s3')
    keys = set()
    for p in sorted(site.rglob('*')):
        if not p.is_file(): continue
        key = prefix + p.relative_to(site).as_posix(); keys.add(key)
        ctype = mimetypes.guess_type(p.name)[0] or 'application/octet-stream'
        s3.upload_file(str(p), bucket, key, ExtraArgs={'ContentType': ctype})
    stale = [o['Key'] for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix)
             for o in page.get('Contents', []) if o['Key'] not in keys]
    for i in range(0, len(stale), 1000):
        s3.delete_objects(Bucket=bucket, Delete={'Objects': [{'Key': k} for k in stale[i:i + 1000]]})
    return len(keys)

def main(argv):
    site = root / '_docs'
    if not (site / 'index.html').is_file(): sys.exit(f"docs-publish: no built site in {site}: run `make docs` first")
    target = argv[0] if argv else 'gh-pages'
    if target.startswith('s3://'):
        n = publish_s3(site, target)
        print(f"docs-publish: {n} files uploaded to {target}")
    elif target == 'gh-pages':
        subprocess.run([sys.executable, '-m', 'ghp_import', '--no-jekyll', '--push', '--force',
                        '--message', 'docs site (make docs-publish)', str(site)], check=True, cwd=root)
        print("docs-publish: _docs/ pushed to the gh-pages branch of origin")
    else: sys.exit(f"docs-publish: target {target!r} not understood; expected gh-pages or s3://BUCKET/PREFIX")

if __name__ == '__main__': main(sys.argv[1:])
