"""Auction replay speed: the vectorised engine (rtb_dcn.auction.replay_counts) vs per-row Python loops
(rtb_dcn.auction.replay_loop) over the same 300k auctions, per strategy and parameter; identical results asserted.

    .venv/bin/python bench/bench_auction.py [--budget-prop 1] [--repeat 5]

Two loop baselines, both in the same run:
- `loop`: the straightforward per-row loop (rtb-test.py's shape): each row asks the strategy for its bid
  (`strategy.bid(pctr)`, the router's per-request path) and applies the auction rule;
- `lean_loop`: the bids priced once with numpy, then only the auction rule in a per-row Python loop.
Vectorised timings include pricing the bids (strategy.bids). The log is campaign 1458's train + test files
concatenated (300,000 rows); budget = total cost / --budget-prop (1: every row is replayed).
Writes report/benchmarks/auction.json and prints a one-line summary.
"""
import argparse, platform, sys, time
from pathlib import Path
import numpy as np, pandas as pd
from rtb_dcn.config import load_settings, repo_root
from rtb_dcn.bidding import MarketStats, make_strategy
from rtb_dcn.auction import replay_counts, replay_loop, replay_log, check_replay_log
from _common import dump_json

CASES = [('const', 80), ('rand', 150), ('lin', 75), ('lin', 300), ('ortb1', 300), ('ortb2', 300), ('truth', None)]

def best_of(f, repeat):
    ts, out = [], None
    for _ in range(repeat):
        t = time.perf_counter(); out = f(); ts.append(time.perf_counter() - t)
    return min(ts), out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--budget-prop', type=float, default=1.0, help='budget = total cost / this (1: the whole log is replayed)')
    ap.add_argument('--repeat', type=int, default=5, help='best of this many runs (vectorised); the loop runs twice')
    ap.add_argument('--out', default=str(repo_root() / 'report' / 'benchmarks' / 'auction.json'))
    a = ap.parse_args()
    d = load_settings().samples() / 'ipinyou' / 'rtbarbitrage-1458'
    tr, te = replay_log(d / '1458.train.txt'), replay_log(d / '1458.test.txt')
    log = pd.concat([tr, te], ignore_index=True)
    y, z, p = check_replay_log(log)
    stats = MarketStats.fit(tr.pctr, tr.market_price, tr.click)
    budget = z.sum() / a.budget_prop
    rows = []
    for name, param in CASES:
        s = make_strategy(name, param, stats, seed=0)
        tv, v = best_of(lambda: replay_counts(s.bids(p), z, y, [budget]), a.repeat)
        tl, l = best_of(lambda: replay_loop(make_strategy(name, param, stats, seed=0), z, y, budget, pctr=p), 1)
        tq, q = best_of(lambda: replay_loop(s.bids(p), z, y, budget), 2)
        v = {k: float(x[0]) for k, x in v.items()}
        assert v == {k: float(x) for k, x in l.items()} == {k: float(x) for k, x in q.items()}, (name, param, v, l, q)
        n = int(v['bids'])
        rows.append(dict(strategy=name, param=s.param, rows=n, imps=int(v['imps']), clicks=int(v['clicks']),
                         vectorised_s=tv, loop_s=tl, lean_loop_s=tq, vectorised_rows_per_s=n / tv, loop_rows_per_s=n / tl,
                         lean_loop_rows_per_s=n / tq, speedup=tl / tv, speedup_vs_lean_loop=tq / tv))
        print(f"  {name:<6} {s.param:>8.4g}: {n:,} rows, vectorised {n / tv:,.0f} rows/s, loop {n / tl:,.0f} rows/s ({tl / tv:.0f}x), "
              f"lean loop {n / tq:,.0f} rows/s ({tq / tv:.1f}x)", file=sys.stderr)
    sp = [r['speedup'] for r in rows]; sq = [r['speedup_vs_lean_loop'] for r in rows]
    res = dict(command=' '.join(['python', *sys.argv]), log='1458.train.txt + 1458.test.txt', log_rows=len(z), budget_prop=a.budget_prop,
               python=platform.python_version(), numpy=np.__version__, machine=platform.machine(), processor=platform.processor(),
               identical_results=True, min_speedup=min(sp), median_speedup=float(np.median(sp)),
               min_speedup_vs_lean_loop=min(sq), median_speedup_vs_lean_loop=float(np.median(sq)), goal_speedup=20, cases=rows)
    out = dump_json(Path(a.out), res)
    print(f"bench_auction: {len(rows)} strategy/parameter cases on {len(z):,} auctions: vectorised "
          f"{np.median([r['vectorised_rows_per_s'] for r in rows]):,.0f} rows/s vs loop {np.median([r['loop_rows_per_s'] for r in rows]):,.0f} rows/s "
          f"(median), speedup {min(sp):.0f}x-{max(sp):.0f}x (goal >= 20x; {min(sq):.1f}x-{max(sq):.1f}x vs the lean loop over precomputed bids), "
          f"results identical -> {out}")

if __name__ == '__main__':
    main()
