"""Scale-out measurements: the encoded-shard cache of `rtb-dcn train FILE`, Spark vs local encode rows/s, training rows/s
with 1 vs 2 workers, and the full-Criteo / Criteo-1TB recipe derived from them.

    nice -n 10 .venv/bin/python bench/bench_scale.py [--only train_from_file,encode,workers] [--rows 200000]
    FULL=1 ...   also encodes 20M synthetic rows (about 5 GB of text; long)

Sections (each writes its own JSON, `scale` collects the rest into report/benchmarks/scale.{json,md}):
- train_from_file: `rtb-dcn train DATA --nrows N --epochs 3` with `--no-cache` (every epoch re-reads and re-encodes
  the log: the code path before the cache) and without it (epochs 2+ stream from <run>/encoded/), the same command
  otherwise; end-to-end rows/s = train rows x epochs / the command's wall seconds; peak RSS of each; the two runs'
  test logloss (the same model: equal). -> report/benchmarks/train_from_file.json
"""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, CONFIG, RUNS, ROOT, ensure_data, command, machine, write_json, log, rel

VENV_BIN = Path(sys.executable).parent


def timed(cmd: list, env: dict | None = None) -> dict:
    "Run `cmd`; wall seconds, the child's peak RSS (MB, os.wait4), last stdout line."
    import tempfile
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        t = time.perf_counter()
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True, cwd=ROOT,
                             env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **(env or {})})
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0); err.seek(0); o, e = out.read(), err.read()
    if p.returncode: raise SystemExit(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {e[-2000:]}")
    return dict(wall_s=round(wall, 2), peak_rss_mb=round(ru.ru_maxrss / 1024, 1), last_line=o.strip().splitlines()[-1])


def train_from_file(rows: int, epochs: int = 3, experiment: str = 'DCN_default') -> dict:
    data = ensure_data()
    res = {}
    for name, extra in (('before_no_cache', ['--no-cache']), ('after_cache', [])):
        run = RUNS / f'scale_train_from_file_{name}'
        if (run / 'encoded').exists():
            import shutil; shutil.rmtree(run / 'encoded')   # a cold cache: the first epoch still reads and encodes the log
        cmd = [VENV_BIN / 'rtb-dcn', 'train', data, '--nrows', rows, '--experiment', experiment, '--epochs', epochs,
               '--run', run, *extra]
        log(f"train_from_file: {name}: {' '.join(map(str, cmd[1:]))}")
        t = timed(cmd)
        m = json.loads((run / 'metrics.json').read_text())
        res[name] = dict(command='rtb-dcn ' + ' '.join(map(str, cmd[1:])), **t, epochs=m['epochs'], train_rows=m['train_rows'],
                         end_to_end_rows_per_s=round(m['train_rows'] * m['epochs'] / t['wall_s'], 1),
                         fit_rows_per_s=round(m['rows_per_s'], 1), fit_seconds=round(m['fit_seconds'], 2),
                         spec_seconds=round(m['spec_seconds'], 2), test_logloss=m['logloss'], test_auc=m['auc'])
        log(f"  {res[name]['end_to_end_rows_per_s']:.0f} rows/s end to end ({t['wall_s']:.0f}s), fit {m['rows_per_s']:.0f} rows/s")
    b, a = res['before_no_cache'], res['after_cache']
    out = dict(what='rtb-dcn train FILE end to end: every epoch re-reads and re-encodes the log (--no-cache, the code path '
                    'before the cache) vs epochs 2+ streamed from the encoded cache under <run>/encoded/',
               data=rel(data), nrows=rows, experiment=experiment, epochs_max=epochs, **res,
               speedup_end_to_end=round(a['end_to_end_rows_per_s'] / b['end_to_end_rows_per_s'], 3),
               speedup_fit=round(a['fit_rows_per_s'] / b['fit_rows_per_s'], 3),
               same_model=a['test_logloss'] == b['test_logloss'] and a['epochs'] == b['epochs'],
               command=command(), machine=machine())
    write_json('train_from_file.json', out)
    log(f"train_from_file: {b['end_to_end_rows_per_s']:.0f} -> {a['end_to_end_rows_per_s']:.0f} rows/s end to end "
        f"(x{out['speedup_end_to_end']}), same model: {out['same_model']}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', default='train_from_file', help='comma-separated sections: train_from_file')
    ap.add_argument('--rows', type=int, default=200_000, help='train_from_file: rows of the benchmark file (--nrows)')
    ap.add_argument('--epochs', type=int, default=3, help='train_from_file: --epochs')
    a = ap.parse_args()
    only = a.only.split(',')
    if 'train_from_file' in only: train_from_file(a.rows, a.epochs)


if __name__ == '__main__':
    main()
