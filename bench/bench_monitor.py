"""Monitor benchmark: `rtb-dcn monitor baseline` and `monitor check` rows/s on 1M Criteo-format rows, and the peak
memory of a baseline streamed over 5M vs 500k rows (goal: <= 1.2x).

    nice -n 10 .venv/bin/python bench/bench_monitor.py [--rows-speed 1000000] [--rows-big 5000000] [--rows-small 500000]

Writes report/benchmarks/monitor.json and prints a one-line summary. The input is the benchmarks' synthetic Criteo
file (bench/_common.py: data/bench/criteo_5000000_s7.txt, 13 numeric + 26 categorical features, made once). Each
measurement is a fresh `rtb-dcn monitor` process (the product's command, chunk by chunk, malformed lines counted as
data-type violations); its peak RSS is ru_maxrss of the child. The check runs against a baseline of the file's first
500k rows. The monitor adds no per-request cost to the router: it reads the logs the router already writes.
"""
import argparse, json, resource, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, DATA, ensure_data, command, calibration, dump_json, log, rel

EXE = str(Path(sys.executable).parent / 'rtb-dcn')


def run(*args) -> dict:
    "One `rtb-dcn monitor ...` child: wall seconds, exit status, last output line."
    t0 = time.perf_counter()
    p = subprocess.run([EXE, 'monitor', *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    secs = time.perf_counter() - t0
    if p.returncode not in (0, 3): raise SystemExit(f"rtb-dcn monitor {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr[-500:]}")
    return dict(seconds=round(secs, 2), exit_status=p.returncode, summary=p.stdout.strip().splitlines()[-1])


def peak(tmp: Path, nrows: int, chunk_rows: int) -> dict:
    "Peak RSS of a baseline over `nrows` rows, in a child that measures itself (ru_maxrss of its own process)."
    code = ("import resource, sys; from rtb_dcn.cli import run_command; rc = run_command(sys.argv[1:]); "
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, '-c', code, 'monitor', 'baseline', '--data', str(DATA), '--format', 'criteo',
                        '--out', str(tmp / f'base_{nrows}'), '--nrows', str(nrows), '--chunk-rows', str(chunk_rows)],
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode: raise SystemExit(f"baseline over {nrows} rows failed: {p.stderr[-500:]}")
    rss = int(next(l for l in p.stdout.splitlines() if l.startswith('RSS')).split()[1]) / 1024
    secs = time.perf_counter() - t0
    return dict(rows=nrows, seconds=round(secs, 2), rows_per_s=round(nrows / secs), peak_rss_mb=round(rss, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows-speed', type=int, default=1_000_000)
    ap.add_argument('--rows-big', type=int, default=5_000_000)
    ap.add_argument('--rows-small', type=int, default=500_000)
    ap.add_argument('--chunk-rows', type=int, default=200_000)
    ap.add_argument('--out', default=None, help='JSON output (default report/benchmarks/monitor.json)')
    a = ap.parse_args()
    ensure_data()
    tmp = Path(tempfile.mkdtemp(prefix='bench_monitor_'))
    log(f'bench_monitor: {rel(DATA)}; speed on {a.rows_speed:,} rows, memory {a.rows_small:,} vs {a.rows_big:,} rows')
    base = run('baseline', '--data', DATA, '--format', 'criteo', '--out', tmp / 'speed', '--nrows', a.rows_speed, '--chunk-rows', a.chunk_rows)
    base['rows_per_s'] = round(a.rows_speed / base['seconds'])
    log('baseline', base)
    run('baseline', '--data', DATA, '--format', 'criteo', '--out', tmp / 'ref', '--nrows', a.rows_small, '--chunk-rows', a.chunk_rows)
    check = run('check', '--baseline', tmp / 'ref', '--data', DATA, '--format', 'criteo', '--out', tmp / 'check', '--nrows', a.rows_speed,
                '--window-rows', 100_000, '--chunk-rows', a.chunk_rows)
    check['rows_per_s'] = round(a.rows_speed / check['seconds'])
    log('check', check)
    small, big = peak(tmp, a.rows_small, a.chunk_rows), peak(tmp, a.rows_big, a.chunk_rows)
    log('peak', small, big)
    res = dict(command=command(), machine_speed=calibration(),
               file=dict(path=rel(DATA), format='criteo (synthetic, Kaggle train.txt TSV)', features='13 numeric + 26 categorical'),
               chunk_rows=a.chunk_rows,
               baseline=dict(rows=a.rows_speed, **base),
               check=dict(rows=a.rows_speed, baseline_rows=a.rows_small, window_rows=100_000, **check),
               peak_rss=dict(small=small, big=big, ratio=round(big['peak_rss_mb'] / small['peak_rss_mb'], 3), goal='<= 1.2'),
               note='wall seconds of the whole command (start-up, reading in skip mode, profiling, writing); 2 shared cores',
               when=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
    out = dump_json(Path(a.out) if a.out else ROOT / 'report' / 'benchmarks' / 'monitor.json', res)
    print(f"bench_monitor: baseline {base['rows_per_s']:,} rows/s, check {check['rows_per_s']:,} rows/s on {a.rows_speed:,} Criteo rows; "
          f"peak RSS {small['peak_rss_mb']:.0f} MB ({a.rows_small:,} rows) vs {big['peak_rss_mb']:.0f} MB ({a.rows_big:,} rows): "
          f"ratio {res['peak_rss']['ratio']:.2f} -> {rel(out)}")


if __name__ == '__main__':
    main()
