"""The DCN-driven bidder's clicks as a share of the oracle bidder's at equal budget, as the training data grows, next to
the specified-model bound (a logistic regression over exactly the planted terms, fitted on the same rows) -- on the
synthetic iPinYou generator, whose true pCTR is known.

    .venv/bin/python bench/bench_oracle_share.py --sizes 1000000,3000000,6000000 --config bench/dcn_ipinyou_oracle_share.yaml \
        --experiments DCN_default,DCN_reg --variant-sizes 1000000 --reuse

(defaults: --sizes 1000000,3000000,6000000 --config configs/experiments/dcn_ipinyou.yaml --experiments DCN_default).

For each size N: the synthetic iPinYou log `rtb_dcn.synth.write_synth(data/bench/ipinyou_N_s42.txt, 'ipinyou', rows=N,
seed=42)` (3 days from 2013-10-19, rows in time order; data/synth/ipinyou_N_s42.txt is used when it exists, as for 1M,
the log of report/offline_eval/dcn_vs_oracle.csv). Three bidders' pCTR on every row:
- oracle: the generator's true pCTR (the `.pctr` side file);
- bound: the specified-model bound, an L2 logistic regression (sklearn liblinear, C tuned on the validation rows) over
  exactly the terms IpinyouSynth.logit plants -- one-hot useragent, region, city, adexchange, domain, slot size
  (width x height), slotvisibility, slotformat, hour, weekday, usertag (the tag set); the floor term
  t = (log1p(slotprice) - 2) / 1.6 numeric; the crosses domain x size, hour x useragent, region x adexchange x
  visibility as one-hot interaction columns and floor x visibility as t times one-hot visibility;
- DCN: `rtb_dcn.train.train` with experiment DCN_default of configs/experiments/dcn_ipinyou.yaml (the run of
  report/offline_eval/dcn_vs_oracle.csv; bench/dcn_ipinyou_oracle_share.yaml repeats it and adds DCN_reg, a more
  regularised variant), exported with rtb_dcn.export.export_run and scored through model.onnx by rtb_dcn.auction.score_onnx;
  each experiment is a bidder named after it (the variants only at --variant-sizes).
Both learners fit the same rows: the time-ordered split of the experiment (60% train / 6.67% valid / 33.33% test, as
rtb_dcn.data.iter_split makes it); AUC / logloss are on its test rows. The auctions follow
nbs/reports/offline_eval.ipynb: train = rows before the 2/3 time quantile, test = the rest; strategies lin, ortb1,
truth, tuned on train (rtb_dcn.auction.auction_table), budget = test cost / proportion. Share = bidder's clicks /
oracle's clicks for the same strategy and proportion.
Writes report/benchmarks/oracle_share.json, oracle_share.csv, oracle_share.png; one-line summary at the end.
Runs go to data/bench/runs/oracle_share/<experiment>_<N>/ (with --reuse a finished run and its result are reused).
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, command, machine, log, rel, dump_json
from _bound import fit_bound

OUT = ROOT / 'report' / 'benchmarks'
CONFIG = ROOT / 'configs' / 'experiments' / 'dcn_ipinyou.yaml'
RUNS = ROOT / 'data' / 'bench' / 'runs' / 'oracle_share'
SEED = 42
STRATS = ['lin', 'ortb1', 'truth']
PROPS = [2, 4, 8, 16, 32, 64, 128, 256]          # the synthetic budget proportions of the offline_eval notebook
GOAL = 0.95
# the fields of IpinyouSynth.logit, as columns of the canonical iPinYou frame
FIELDS = ['useragent', 'region', 'city', 'adexchange', 'domain', 'slotwidth', 'slotheight', 'slotvisibility',
          'slotformat', 'hour', 'weekday', 'usertag']

def data_file(n: int) -> Path:
    "The synthetic log of n rows (data/synth/ when the offline_eval notebook already wrote it, else data/bench/)."
    for p in (ROOT / 'data' / 'synth' / f'ipinyou_{n}_s{SEED}.txt', ROOT / 'data' / 'bench' / f'ipinyou_{n}_s{SEED}.txt'):
        if p.exists() and Path(f'{p}.pctr').exists(): return p
    from rtb_dcn.synth import write_synth
    p.parent.mkdir(parents=True, exist_ok=True)
    log(f"  writing {rel(p)}")
    log(f"  {write_synth(p, 'ipinyou', rows=n, seed=SEED)}")
    return p

def train_dcn(cfg, data: Path, run: Path, reuse: bool) -> dict:
    "metrics.json of the DCN run (trained and exported now, or reused when its config hash and data match)."
    from rtb_dcn.train import train
    from rtb_dcn.export import export_run
    mf = run / 'metrics.json'
    if reuse and mf.exists() and (run / 'model.onnx').exists():
        m = json.loads(mf.read_text())
        if m.get('config_hash') == cfg.hash() and m.get('data') == str(data):
            log(f"  DCN: reusing {rel(run)}"); return m
    log(f"  DCN: training {cfg.model.kind}/{cfg.model.structure}/{cfg.model.cross} -> {rel(run)}")
    m = train(cfg, data, run)
    log(f"  DCN: test logloss {m['logloss']:.5f} auc {m['auc']:.4f}, {m['epochs']} epochs (best {m['best_epoch']}), {m['fit_seconds']:.0f}s")
    r = export_run(run, data=data)
    log(f"  DCN: exported, ONNX parity max |dp| {r['max_abs_diff_worst']:.2g}")
    return m

def collect(data: Path, cfg, run: Path) -> pd.DataFrame:
    "One compact frame over the whole log: split part, label, market price, timestamp, true pCTR, DCN pCTR (ONNX), field codes."
    from rtb_dcn.data import iter_split
    from rtb_dcn.auction import score_onnx
    from tqdm.auto import tqdm
    frames, cats = [], {c: [] for c in FIELDS}
    with tqdm(desc='  score', unit='row', unit_scale=True, file=sys.stderr) as bar:
        for k, part in enumerate(('train', 'valid', 'test')):
            for c in iter_split(data, cfg.format, part, fractions=cfg.fractions, seed=cfg.seed):
                frames.append(pd.DataFrame({'part': np.int8(k), 'row': c.index.to_numpy(), 'click': c['label'].to_numpy(np.int8),
                                            'market_price': c['market_price'].to_numpy(), 'timestamp': c['timestamp'].to_numpy(),
                                            'true_pctr': c['true_pctr'].to_numpy(), 'dcn_pctr': score_onnx(c, run),
                                            'floor': c['floor_price'].to_numpy()}))
                for f in FIELDS: cats[f].append(pd.Categorical(c[f].to_numpy()))
                bar.update(len(c))
    df = pd.concat(frames, ignore_index=True)
    from pandas.api.types import union_categoricals
    for f in FIELDS: df[f] = union_categoricals(cats[f]).codes.astype(np.int64) + 1   # 0 = missing
    df = df.sort_values('row', kind='stable').reset_index(drop=True)                     # log order
    if np.isnan(df.true_pctr).any(): raise SystemExit(f"{data}: no true pCTR side file")
    return df

def design(df: pd.DataFrame):
    "The sparse design matrix of the planted terms (all rows; unseen-in-train values get columns that stay at 0) and its groups."
    import scipy.sparse as sp
    n, blocks, groups = len(df), [], []
    def code(cols):
        c = np.zeros(n, np.int64)
        for x in cols: c = c * (int(df[x].max()) + 1) + df[x].to_numpy()
        return pd.factorize(c)
    def onehot(name, cols, values=None):
        c, u = code(cols)
        blocks.append(sp.csr_matrix((np.ones(n) if values is None else values, (np.arange(n), c)), shape=(n, len(u))))
        groups.append(f'{name}:{len(u)}')
    df = df.assign(size=code(['slotwidth', 'slotheight'])[0])
    for f in ['useragent', 'region', 'city', 'adexchange', 'domain', 'size', 'slotvisibility', 'slotformat', 'hour', 'weekday', 'usertag']:
        onehot(f, [f])
    t_floor = (np.log1p(df.floor.to_numpy()) - 2.0) / 1.6
    blocks.append(sp.csr_matrix(t_floor[:, None])); groups.append('floor:1')
    onehot('domain x size', ['domain', 'size']); onehot('hour x useragent', ['hour', 'useragent'])
    onehot('region x adexchange x visibility', ['region', 'adexchange', 'slotvisibility'])
    onehot('floor x visibility', ['slotvisibility'], values=t_floor)
    return sp.hstack(blocks, format='csr'), groups

def run_size(n: int, cfg, exp: str, Cs, reuse: bool, n_jobs: int) -> dict:
    from rtb_dcn.train import ctr_metrics
    from rtb_dcn.auction import auction_table
    t0 = time.time()
    data = data_file(n)
    run = RUNS / f'{exp}_{n}'
    res_file = run / 'oracle_share_result.json'
    if reuse and res_file.exists():
        r = json.loads(res_file.read_text())
        if r.get('config_hash') == cfg.hash() and r.get('bound_C_grid') == list(Cs):
            log(f"  reusing {rel(res_file)}"); return r
    m_dcn = train_dcn(cfg, data, run, reuse)
    df = collect(data, cfg, run)
    parts = df.part.to_numpy()
    y = df.click.to_numpy()
    log(f"  {len(df):,} rows: train {np.sum(parts == 0):,} / valid {np.sum(parts == 1):,} / test {np.sum(parts == 2):,}")
    X, groups = design(df)
    log(f"  bound: {X.shape[1]:,} columns ({', '.join(groups)})")
    tb = time.time()
    lr, tried = fit_bound(X[parts == 0], y[parts == 0], X[parts == 1], y[parts == 1], Cs=Cs, log=log, what='bound', n_jobs=n_jobs)
    df['bound_pctr'] = lr.predict_proba(X)[:, 1]
    t_bound = time.time() - tb
    del X
    te = parts == 2
    pctr_cols = {'oracle': 'true_pctr', 'bound': 'bound_pctr', 'DCN': 'dcn_pctr'}
    metrics = {b: ctr_metrics(y[te], df[c].to_numpy()[te]) for b, c in pctr_cols.items()}
    for b, m in metrics.items(): log(f"  {b}: test auc {m['auc']:.4f} logloss {m['logloss']:.5f} calibration {m['calibration']:.3f}")
    # auctions exactly as nbs/reports/offline_eval.ipynb: train = before the 2/3 time quantile, test = the rest
    cut = df.timestamp.quantile(2 / 3)
    a_tr, a_te = (df.timestamp < cut).to_numpy(), (df.timestamp >= cut).to_numpy()
    tabs = []
    for b, c in pctr_cols.items():
        log(f"  auctions: {b}")
        d = pd.DataFrame({'click': df.click, 'market_price': df.market_price, 'pctr': df[c], 'timestamp': df.timestamp})
        tr, tst = d[a_tr].reset_index(drop=True), d[a_te].reset_index(drop=True)
        tr.attrs['name'], tst.attrs['name'] = f'synth-{n}-train', f'synth-{n}-test'
        tabs.append(auction_table(tr, tst, STRATS, PROPS, seed=SEED).assign(bidder=b))
    tab = pd.concat(tabs, ignore_index=True)
    key = ['strategy', 'budget_prop']
    ref = {b: tab[tab.bidder == b].set_index(key).clicks for b in ('oracle', 'bound')}
    idx = pd.MultiIndex.from_frame(tab[key])
    tab['share_of_oracle_clicks'] = tab.clicks.to_numpy() / ref['oracle'].reindex(idx).to_numpy()
    tab['share_of_bound_clicks'] = tab.clicks.to_numpy() / ref['bound'].reindex(idx).to_numpy()
    tab.insert(0, 'log_rows', n)
    r = dict(rows=n, data=rel(data), run=rel(run), config_hash=cfg.hash(), bound_C_grid=list(Cs),
             split=dict(train=int(np.sum(parts == 0)), valid=int(np.sum(parts == 1)), test=int(np.sum(parts == 2))),
             train_clicks=int(y[parts == 0].sum()), valid_clicks=int(y[parts == 1].sum()), test_clicks=int(y[te].sum()),
             auction_split=dict(train=int(a_tr.sum()), test=int(a_te.sum()), test_clicks=int(y[a_te].sum()),
                                test_rows_not_in_model_test=int(np.sum(a_te & ~te))),
             metrics=metrics, dcn_train=dict(epochs=m_dcn['epochs'], best_epoch=m_dcn['best_epoch'], params=m_dcn['params'],
                                             fit_seconds=m_dcn['fit_seconds'], keras_test_auc=m_dcn['auc']),
             bound=dict(columns=len(lr.coef_[0]), groups=groups, C=float(lr.C), C_tried=tried, fit_seconds=t_bound),
             auctions=tab.to_dict('records'), seconds=time.time() - t0)
    dump_json(res_file, r)
    return r

def plot(tab: pd.DataFrame, dcns: list[str], path: Path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sizes = sorted(tab.log_rows.unique())
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(sizes)))
    styles = [('bound', '--', 's')] + [(d, ls, 'o') for d, ls in zip(dcns, ('-', '-.', ':'))]
    fig, axes = plt.subplots(1, len(STRATS), figsize=(5.5 * len(STRATS), 4.6), sharey=True)
    for ax, s in zip(axes, STRATS):
        for n, col in zip(sizes, colors):
            for b, ls, mk in styles:
                g = tab[(tab.strategy == s) & (tab.log_rows == n) & (tab.bidder == b)]
                if len(g): ax.plot(g.budget_prop, g.share_of_oracle_clicks, ls, marker=mk, ms=3, color=col, label=f'{b}, {n / 1e6:g}M rows')
        ax.axhline(GOAL, color='red', lw=0.8, ls=':', label=f'goal {GOAL:.0%}')
        ax.set(xscale='log', xlabel='budget proportion (budget = test cost / proportion)', title=s, ylim=(0, max(1.05, float(tab.share_of_oracle_clicks.max()) + 0.05)))
        ax.set_xticks(PROPS, [str(p) for p in PROPS])
    axes[0].set_ylabel("clicks / oracle bidder's clicks (same strategy, same budget)")
    axes[-1].legend(fontsize=7, loc='lower right')
    fig.suptitle('synthetic iPinYou: share of the oracle bidder\'s test clicks; specified-model bound dashed, DCN runs solid', fontsize=10)
    fig.tight_layout(); fig.savefig(path, dpi=90)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='1000000,3000000,6000000', help='comma-separated row counts of the synthetic logs')
    ap.add_argument('--config', default=str(CONFIG), help='experiment YAML of the DCN')
    ap.add_argument('--experiments', default='DCN_default', help='comma-separated DCN experiments in --config (each one is a bidder)')
    ap.add_argument('--variant-sizes', default=None, help='sizes for the experiments after the first (default: --sizes)')
    ap.add_argument('--bound-C', default='0.03,0.1,0.3,1', help='inverse L2 strengths tried for the specified-model bound')
    ap.add_argument('--jobs', type=int, default=2, help='parallel bound fits')
    ap.add_argument('--reuse', action='store_true', help='reuse finished runs / per-size results with the same config hash')
    a = ap.parse_args()
    t0 = time.time()
    from rtb_dcn.train import load_experiment
    exps = [e for e in a.experiments.split(',') if e]
    cfgs = {e: load_experiment(a.config, e) for e in exps}
    sizes = [int(float(s)) for s in a.sizes.split(',') if s]
    vsizes = sizes if a.variant_sizes is None else [int(float(s)) for s in a.variant_sizes.split(',') if s]
    Cs = [float(c) for c in a.bound_C.split(',')]
    jobs = [(n, e) for n in sizes for e in exps if e == exps[0] or n in vsizes]
    results = {}
    for i, (n, e) in enumerate(jobs):
        log(f"[{i + 1}/{len(jobs)}] {n:,} rows, {e}")
        results[n, e] = run_size(n, cfgs[e], e, Cs, a.reuse, a.jobs)
    rows = []
    for (n, e), res in results.items():   # oracle and bound from the first experiment's run of each size (identical in every run)
        for r in res['auctions']:
            if r['bidder'] == 'DCN': rows.append({**r, 'bidder': e})
            elif e == exps[0]: rows.append(r)
    tab = pd.DataFrame(rows)
    cols = ['log_rows', 'bidder', 'strategy', 'budget_prop', 'param', 'clicks', 'share_of_oracle_clicks', 'share_of_bound_clicks',
            'imps', 'bids', 'spend', 'ecpc', 'win_rate', 'exhausted']
    OUT.mkdir(parents=True, exist_ok=True)
    out = tab[cols].copy()
    for (n, e), res in results.items():   # the bidder's pCTR quality on the model test rows, repeated on each of its rows
        for b, m in res['metrics'].items():
            sel = (out.log_rows == n) & (out.bidder == (e if b == 'DCN' else b))
            if b != 'DCN' and e != exps[0]: continue
            out.loc[sel, 'test_auc'], out.loc[sel, 'test_logloss'], out.loc[sel, 'test_calibration'] = m['auc'], m['logloss'], m['calibration']
            out.loc[sel, 'train_clicks'] = res['train_clicks']
    out.to_csv(OUT / 'oracle_share.csv', index=False, float_format='%.6g')
    plot(out, exps, OUT / 'oracle_share.png')
    summary = []
    for (n, e), res in results.items():
        d = out[out.log_rows == n]
        dc, bd = d[d.bidder == e], d[d.bidder == 'bound']
        rng = lambda x: dict(min=float(x.min()), median=float(x.median()), max=float(x.max()))
        summary.append(dict(rows=n, experiment=e, train_rows=res['split']['train'], train_clicks=res['train_clicks'],
                            auc={b: m['auc'] for b, m in res['metrics'].items()},
                            logloss={b: m['logloss'] for b, m in res['metrics'].items()},
                            dcn_share_of_oracle=rng(dc.share_of_oracle_clicks), bound_share_of_oracle=rng(bd.share_of_oracle_clicks),
                            dcn_share_of_bound=rng(dc.share_of_bound_clicks), dcn_goal_met=bool(dc.share_of_oracle_clicks.min() >= GOAL)))
    res = dict(command=command(), config_file=rel(a.config), experiments={e: dict(config=c.flat(), config_hash=c.hash())
               for e, c in cfgs.items()}, strategies=STRATS, budget_props=PROPS, goal_share_of_oracle=GOAL,
               machine=machine(), seconds=time.time() - t0, summary=summary,
               sizes=[{**r, 'experiment': e} for (n, e), r in results.items()])
    dump_json(OUT / 'oracle_share.json', res)
    last = max((s for s in summary if s['experiment'] == exps[0]), key=lambda s: s['rows'])
    best = max((s for s in summary if s['rows'] == last['rows']), key=lambda s: s['dcn_share_of_oracle']['median'])
    print(f"bench_oracle_share: {len(sizes)} sizes x {len(exps)} DCN experiments; at {last['rows']:,} rows ({last['train_clicks']:,} training "
          f"clicks) the DCN bidder ({best['experiment']}) gets {best['dcn_share_of_oracle']['min']:.0%}-{best['dcn_share_of_oracle']['max']:.0%} "
          f"of the oracle's clicks (goal >= {GOAL:.0%}: {'met' if best['dcn_goal_met'] else 'NOT met'}), the specified-model bound "
          f"{best['bound_share_of_oracle']['min']:.0%}-{best['bound_share_of_oracle']['max']:.0%}; test AUC DCN {best['auc']['DCN']:.3f} / "
          f"bound {best['auc']['bound']:.3f} / oracle {best['auc']['oracle']:.3f}; {time.time() - t0:.0f}s -> {rel(OUT / 'oracle_share.json')}")

if __name__ == '__main__':
    main()
