"""Training peak memory vs data size: `rtb_dcn.train.train` on the first 500k and on all 5M rows of
data/bench/criteo_5000000_s7.txt, each in a fresh subprocess, peak RSS from getrusage(RUSAGE_SELF).ru_maxrss.

    .venv/bin/python bench/bench_train_memory.py [--rows 500000,5000000] [--experiment DCN_test] [--batch-size 4096]

Training streams the file (FeatureSpec.fit and tf.data read chunk by chunk), so the peak should hardly grow with
the rows; what does grow is the vocabulary (more distinct ids seen >= min_count times), i.e. the embedding
tables. One epoch with a reduced model (the `DCN_test` experiment: embedding_dim 4, one hidden layer of 16,
batch 4096) bounds the time; the data path (reader, split, encoder, tf.data) is the full one.
Writes report/benchmarks/train_memory.json; prints a one-line summary.
"""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, CONFIG, RUNS, ROOT, ensure_data, command, machine, write_json, log

GOAL_RATIO = 1.2

def child(nrows, experiment, batch_size):
    "Run one training and print its numbers as one JSON line on stdout."
    from rtb_dcn.train import load_experiment, train
    cfg = load_experiment(CONFIG, experiment, epochs=1, batch_size=batch_size)
    t = time.time()
    m = train(cfg, DATA, RUNS / f'memory_{nrows}', nrows=nrows)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(dict(nrows=nrows, peak_rss_mb=ru.ru_maxrss / 1024, seconds=time.time() - t, train_rows=m['train_rows'],
                          rows_per_s=m['rows_per_s'], params=m['params'], test_logloss=m['logloss'], test_auc=m['auc'],
                          config=cfg.flat(), config_hash=cfg.hash())), flush=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', default='500000,5000000', help='comma-separated row counts (the first is the baseline)')
    ap.add_argument('--experiment', default='DCN_test', help='experiment of configs/experiments/dcn_criteo.yaml')
    ap.add_argument('--batch-size', type=int, default=4096)
    ap.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None: return child(a.child, a.experiment, a.batch_size)
    t0 = time.time()
    ensure_data()
    rows = []
    for n in map(int, a.rows.split(',')):
        log(f"training {a.experiment} (1 epoch, batch {a.batch_size}) on {n:,} rows in a subprocess")
        p = subprocess.run([sys.executable, __file__, '--child', str(n), '--experiment', a.experiment, '--batch-size', str(a.batch_size)],
                           stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if p.returncode: raise SystemExit(f"training on {n} rows failed (exit {p.returncode})")
        r = json.loads(p.stdout.strip().splitlines()[-1]); rows.append(r)
        log(f"  {n:,} rows: peak RSS {r['peak_rss_mb']:,.0f} MB, {r['seconds']:.0f}s, {r['params']:,} params")
    ratio = rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']
    res = dict(command=command(), data=str(DATA.relative_to(ROOT)), experiment=a.experiment, epochs=1, batch_size=a.batch_size,
               machine=machine(), ratio_last_to_first=ratio, goal=f'peak RSS ratio <= {GOAL_RATIO}', goal_met=bool(ratio <= GOAL_RATIO),
               seconds=time.time() - t0, runs=rows)
    out = write_json('train_memory.json', res)
    print(f"bench_train_memory: peak RSS {rows[0]['peak_rss_mb']:,.0f} MB on {rows[0]['nrows']:,} rows vs "
          f"{rows[-1]['peak_rss_mb']:,.0f} MB on {rows[-1]['nrows']:,} rows = {ratio:.2f}x (goal <= {GOAL_RATIO}x) -> {out}")

if __name__ == '__main__':
    main()
