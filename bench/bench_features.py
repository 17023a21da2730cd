"""Benchmark of the feature encoder (rtb_dcn.features.FeatureSpec) on a Criteo-shaped frame.

    .venv/bin/python bench/bench_features.py [--rows 1000000] [--records 20000] [--out report/benchmarks/features.json]

Measures: fit time, batch `encode` rows/s, single-record `encode_record` latency (median, p99) on records of
raw values (str/None categoricals, float/None dense), as the bidder receives them. Writes JSON, prints one line.
"""
import argparse, os, platform, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd
from rtb_dcn.config import repo_root
from rtb_dcn.features import FeatureSpec
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, dump_json

DENSE = [f'I{i}' for i in range(1, 14)]
CAT = [f'C{i}' for i in range(1, 27)]
# Rough Criteo cardinalities (a few huge fields, most small), scaled down for a 1M-row frame.
CARD = [1400, 550, 200_000, 100_000, 300, 20, 12_000, 600, 3, 50_000, 5_000, 150_000, 3_000, 27,
        10_000, 120_000, 10, 4_000, 2_000, 4, 140_000, 17, 15, 60_000, 100, 40_000]
MISS = [0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.03, 0.0, 0.03, 0.0, 0.0,
        0.0, 0.03, 0.0, 0.0, 0.44, 0.44, 0.03, 0.76, 0.0, 0.03, 0.44, 0.44]

def criteo_frame(n: int, seed: int = 0) -> pd.DataFrame:
    "A Criteo-shaped canonical frame: label, I1..I13 (float32 counts, NaN missing), C1..C26 (8-hex str/None), skewed."
    rng = np.random.default_rng(seed)
    cols = {'label': (rng.random(n) < 0.25).astype(np.int8)}
    for j, c in enumerate(DENSE):
        x = np.floor(rng.lognormal(1.0 + 0.3 * j, 1.5, n)).astype(np.float32)
        if c == 'I2': x -= (rng.random(n) < 0.1)          # some -1 as in Criteo
        x[rng.random(n) < (0.45 if j in (0, 9, 11) else 0.05)] = np.nan
        cols[c] = x
    for c, card, miss in zip(CAT, CARD, MISS):
        vocab = np.array([f'{v:08x}' for v in rng.integers(0, 2**32, card)], dtype=object)
        v = vocab[np.minimum((card * rng.random(n) ** 3).astype(np.int64), card - 1)]   # skewed: head values frequent
        v[rng.random(n) < miss] = None
        cols[c] = v
    return pd.DataFrame(cols)

def load_frame(n: int, source: str) -> tuple[pd.DataFrame, str]:
    "1M Criteo rows: from rtb_dcn.synth + rtb_dcn.data when available (source 'auto'/'synth'), else `criteo_frame`."
    if source != 'numpy':
        try:
            from rtb_dcn.synth import write_synth
            from rtb_dcn.data import read_dataset
        except ImportError:
            if source == 'synth': raise
        else:
            with tempfile.TemporaryDirectory() as d:
                write_synth(Path(d) / 'synth.txt', 'criteo', rows=n, seed=0, progress=False)
                return read_dataset(Path(d) / 'synth.txt', 'criteo'), 'rtb_dcn.synth (read_dataset)'
    return criteo_frame(n), 'numpy (criteo_frame)'

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=1_000_000, help='rows of the batch frame')
    ap.add_argument('--records', type=int, default=20_000, help='records timed one at a time')
    ap.add_argument('--source', choices=['auto', 'synth', 'numpy'], default='auto', help='where the rows come from')
    ap.add_argument('--out', default=str(repo_root() / 'report' / 'benchmarks' / 'features.json'))
    a = ap.parse_args()
    t = time.perf_counter(); df, source = load_frame(a.rows, a.source); t_gen = time.perf_counter() - t
    t = time.perf_counter()
    spec = FeatureSpec.fit(df, categorical=CAT, dense=DENSE, min_count=10, kind={'C3': 'hash', 'C12': 'hash'}, fmt='criteo')
    t_fit = time.perf_counter() - t
    spec.encode(df.iloc[:1000])                                   # warm-up
    t = time.perf_counter(); cat, dense = spec.encode(df); t_enc = time.perf_counter() - t
    assert cat.shape == (a.rows, 26) and dense.shape == (a.rows, 13) and np.isfinite(dense).all()
    # records as a request carries them: str/None categoricals, float/None dense
    sub = df.iloc[:a.records][CAT + DENSE].astype(object)
    recs = sub.where(sub.notna(), None).to_dict('records')
    for r in recs[:500]: spec.encode_record(r)                   # warm-up
    lat = np.empty(len(recs))
    for i, r in enumerate(recs):
        t0 = time.perf_counter_ns(); spec.encode_record(r); lat[i] = time.perf_counter_ns() - t0
    lat /= 1e3
    ok = all((spec.encode_record(r)[0][0] == cat[i]).all() for i, r in enumerate(recs[:200]))
    res = {'command': command(), 'source': source, 'rows': a.rows, 'records': len(recs), 'n_cat': 26, 'n_dense': 13,
           'vocab_sizes': {f.name: f.cardinality for f in spec.cat_fields},
           'gen_s': round(t_gen, 3), 'fit_s': round(t_fit, 3), 'encode_s': round(t_enc, 3),
           'encode_rows_per_s': round(a.rows / t_enc), 'record_us_median': round(float(np.median(lat)), 2),
           'record_us_p99': round(float(np.percentile(lat, 99)), 2), 'record_us_mean': round(float(lat.mean()), 2),
           'record_equals_batch_first_200': ok,
           'machine': {'python': platform.python_version(), 'cpus': os.cpu_count(), 'platform': platform.platform(),
                       'numpy': np.__version__, 'pandas': pd.__version__}}
    out = dump_json(Path(a.out), res)
    print(f"features: fit {a.rows:,} rows {t_fit:.2f}s | encode {res['encode_rows_per_s']:,.0f} rows/s | "
          f"encode_record median {res['record_us_median']} µs, p99 {res['record_us_p99']} µs "
          f"({len(recs):,} Criteo records) -> {out}")
    if not ok: sys.exit('encode_record disagrees with encode')

if __name__ == '__main__': main()
