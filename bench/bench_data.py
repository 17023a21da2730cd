"""Reader benchmark: rows/s on a 1M-row Criteo-format file, and peak RSS streaming 5M vs 500k rows.

    .venv/bin/python bench/bench_data.py [--rows-big 5000000] [--rows-small 500000] [--rows-speed 1000000]

Writes report/benchmarks/data.json and prints a one-line summary. The input is a synthetic Criteo file
(rtb_dcn.synth, Kaggle train.txt format) generated once under data/bench/. Peak memory is measured in
fresh subprocesses (ru_maxrss), each streaming the file chunk by chunk with `iter_dataset`.
"""
import argparse, os, platform, resource, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _common import dump_json

PEAK = r'''
import resource, sys, time
from rtb_dcn.data import iter_dataset
t0, n = time.perf_counter(), 0
for ch in iter_dataset(sys.argv[1], "criteo", nrows=int(sys.argv[2]), chunk_rows=int(sys.argv[3])):
    n += len(ch)
dt = time.perf_counter() - t0
print(n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
'''


def peak(path, nrows, chunk_rows):
    out = subprocess.run([sys.executable, '-c', PEAK, str(path), str(nrows), str(chunk_rows)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    return dict(rows=int(out[0]), seconds=float(out[1]), rows_per_s=int(out[0]) / float(out[1]), peak_rss_mb=int(out[2]) / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows-big', type=int, default=5_000_000)
    ap.add_argument('--rows-small', type=int, default=500_000)
    ap.add_argument('--rows-speed', type=int, default=1_000_000)
    ap.add_argument('--chunk-rows', type=int, default=200_000)
    ap.add_argument('--seed', type=int, default=7)
    ap.add_argument('--out', default=str(ROOT / 'report' / 'benchmarks' / 'data.json'))
    a = ap.parse_args()
    from rtb_dcn.synth import write_synth
    path = ROOT / 'data' / 'bench' / f'criteo_{a.rows_big}_s{a.seed}.txt'
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        s = write_synth(path, 'criteo', rows=a.rows_big, seed=a.seed)
        print(f'generated {s}', file=sys.stderr)
    speed = [peak(path, a.rows_speed, a.chunk_rows) for _ in range(3)]
    best = max(speed, key=lambda r: r['rows_per_s'])
    small, big = peak(path, a.rows_small, a.chunk_rows), peak(path, a.rows_big, a.chunk_rows)
    res = dict(
        command='.venv/bin/python bench/bench_data.py ' + ' '.join(sys.argv[1:]),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version()),
        file=dict(format='criteo (Kaggle train.txt TSV, synthetic)', rows=a.rows_big, bytes=path.stat().st_size),
        chunk_rows=a.chunk_rows,
        reader_rows_per_s=dict(rows=a.rows_speed, best_of_3=best['rows_per_s'], runs=[r['rows_per_s'] for r in speed]),
        peak_rss=dict(small=small, big=big, ratio=big['peak_rss_mb'] / small['peak_rss_mb'], goal='<= 1.2'),
        when=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    dump_json(Path(a.out), res)
    print(f"bench_data: reader {best['rows_per_s']:,.0f} rows/s on {a.rows_speed:,} Criteo rows; peak RSS "
          f"{small['peak_rss_mb']:.0f} MB ({a.rows_small:,} rows) vs {big['peak_rss_mb']:.0f} MB ({a.rows_big:,} rows): "
          f"ratio {res['peak_rss']['ratio']:.2f} -> {a.out}")


if __name__ == '__main__':
    main()
