"""Model quality on synthetic Criteo-shaped data with planted crosses: LR, DNN, the DCN family and its ensembles,
next to the oracle (true pCTR) and the specified-model bound (a logistic regression over exactly the planted terms).

    .venv/bin/python bench/bench_models.py [--nrows 600000] [--experiments LR_default,DCN_default,...] [--reuse]

Every model is trained by `rtb_dcn.train.train` with its `*_default` experiment of
configs/experiments/dcn_criteo.yaml on the first NROWS rows of data/bench/criteo_5000000_s7.txt (seeded 80/10/10
split: 480k train / 60k valid / 60k test rows). Ensembles (rtb_dcn.ensembles: mean, weights fitted on validation
logloss, learned logistic fusion) fuse the trained DCN variants; they are fitted on the validation rows.
Writes report/benchmarks/models.json, models.csv and models.md; prints a one-line summary.
"""
import argparse, json, sys, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, NROWS, CONFIG, RUNS, SEED_DATA, ensure_data, command, machine, write_json, log, OUT

BASELINES = ['LR_default', 'DNN_default']
DCN_VARIANTS = ['DCNv1_default', 'DCN_stacked_default', 'DCN_default', 'DCN_stacked_parallel_default',
                'DCN_lowrank_default', 'DCN_mix_default']
GOAL_GAP = 0.02   # best DCN's test logloss within 2% of the specified-model bound's

def run_experiment(name, nrows, reuse):
    "metrics.json of experiment `name` (trained now, or reused when its config hash and rows match)."
    from rtb_dcn.train import load_experiment, train
    cfg = load_experiment(CONFIG, name)
    run = RUNS / name
    mf = run / 'metrics.json'
    if reuse and mf.exists():
        m = json.loads(mf.read_text())
        if m.get('config_hash') == cfg.hash() and m.get('nrows') == nrows and m.get('data') == str(DATA):
            log(f"{name}: reusing {mf} (config {cfg.hash()})"); return cfg, m
    log(f"{name}: training {cfg.model.kind}/{cfg.model.structure}/{cfg.model.cross} -> {run}")
    m = train(cfg, DATA, run, nrows=nrows)
    log(f"{name}: test logloss {m['logloss']:.5f} auc {m['auc']:.4f}, {m['epochs']} epochs, {m['rows_per_s']:,.0f} rows/s")
    return cfg, m

def row(name, kind, m, cfg=None, **extra):
    r = dict(model=name, kind=kind, test_logloss=m['logloss'], test_auc=m['auc'],
             normalized_entropy=m.get('normalized_entropy'), calibration=m.get('calibration'))
    if cfg is not None:
        r.update(config=cfg.flat(), config_hash=cfg.hash(), epochs=m['epochs'], best_epoch=m['best_epoch'],
                 best_val_logloss=m['best_val_logloss'], params=m['params'], rows_per_s=m['rows_per_s'], fit_seconds=m['fit_seconds'])
    r.update(extra)
    return r

def write_tables(res):
    "models.csv and models.md from the content of models.json."
    cols = ['model', 'kind', 'test_logloss', 'test_auc', 'logloss_gap_to_bound', 'normalized_entropy', 'calibration',
            'epochs', 'best_epoch', 'params', 'rows_per_s']
    df = pd.DataFrame(res['models']).reindex(columns=cols)
    df.to_csv(OUT / 'models.csv', index=False, float_format='%.6g')
    def fmt(c, v):
        if v is None or (isinstance(v, float) and np.isnan(v)): return ''
        if c in ('epochs', 'best_epoch', 'params', 'rows_per_s'): return f'{v:,.0f}'
        if c == 'logloss_gap_to_bound': return f'{v:+.2%}'
        return f'{v:.5f}' if isinstance(v, float) else str(v)
    s = res['summary']
    n_members = len(next((r['members'] for r in res['models'] if r.get('members')), []))
    md = [f"# Model quality on synthetic Criteo-shaped data with planted crosses", '',
          f"{res['nrows']:,} rows of `{res['data']}`, seeded 80/10/10 split ({res['split']['train']:,} train / "
          f"{res['split']['valid']:,} valid / {res['split']['test']:,} test rows); test-set metrics. Configs: "
          f"`{res['config_file']}` (`*_default`). Ensembles fuse the {n_members} DCN variants (fitted on the validation rows).", '',
          f"Best: **{s['best']}**, {s['best_gap_to_bound']:+.2%} logloss vs the specified-model bound "
          f"(goal <= +{s['goal_gap_to_bound']:.0%}: {'met' if s['goal_met'] else 'NOT met'}); best single DCN "
          f"{s['best_single_dcn']} {s['best_single_dcn_gap_to_bound']:+.2%}; LR on raw features {s['lr_gap_to_bound']:+.2%} "
          f"(LR_default, Keras) and {s.get('first_order_lr_gap_to_bound', float('nan')):+.2%} (first-order sklearn LR fitted to convergence).", '',
          f"Command: `{res['command']}`", '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    md += ['| ' + ' | '.join(fmt(c, r.get(c)) for c in cols) + ' |' for r in df.to_dict('records')]
    (OUT / 'models.md').write_text('\n'.join(md) + '\n')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--nrows', type=int, default=NROWS, help='rows of the data file used (80/10/10 split)')
    ap.add_argument('--experiments', default=','.join(BASELINES + DCN_VARIANTS), help='comma-separated experiment names')
    ap.add_argument('--reuse', action='store_true', help='reuse finished runs under data/bench/runs/ with the same config hash')
    ap.add_argument('--tables-only', action='store_true', help='only rewrite models.csv / models.md from models.json')
    ap.add_argument('--bound-C', default='0.1,0.3,1', help='inverse L2 strengths tried for the specified-model bound')
    ap.add_argument('--lr-C', default='0.1,0.3', help='inverse L2 strengths tried for the first-order sklearn LR')
    a = ap.parse_args()
    if a.tables_only: return write_tables(json.loads((OUT / 'models.json').read_text()))
    t0 = time.time()
    ensure_data()
    from rtb_dcn.data import read_dataset, split_frame
    from rtb_dcn.features import FeatureSpec
    from rtb_dcn.synth import CriteoSynth
    from rtb_dcn.train import ctr_metrics
    rows, results = [], {}
    names = [n for n in a.experiments.split(',') if n]
    for i, n in enumerate(names):
        log(f"[{i + 1}/{len(names)}] {n}")
        results[n] = run_experiment(n, a.nrows, a.reuse)
        cfg, m = results[n]
        rows.append(row(n, 'baseline' if cfg.model.kind != 'dcn' else 'dcn', m, cfg))

    log("oracle, specified-model bound and ensembles: reading the split")
    cfg0 = results[names[0]][0]
    parts = split_frame(read_dataset(DATA, cfg0.format, nrows=a.nrows), cfg0.fractions, seed=cfg0.seed)
    y = {k: v['label'].to_numpy() for k, v in parts.items()}
    oracle = ctr_metrics(y['test'], parts['test']['true_pctr'].to_numpy())
    rows.append(row('oracle (true pCTR)', 'reference', oracle))

    from _bound import design, fit_bound
    shape = CriteoSynth(SEED_DATA)
    prev = {}
    if a.reuse and (OUT / 'models.json').exists():   # reference fits are reused like runs: same rows, same C grid
        old = json.loads((OUT / 'models.json').read_text())
        if old.get('nrows') == a.nrows:
            prev = {r['model']: r for r in old['models'] if r['kind'] == 'reference' and 'C_tried' in r}
    def reference(name, crosses, Cs, what):
        r = prev.get(name)
        if r is not None and [t['C'] for t in r['C_tried']] == Cs:
            log(f"{what}: reusing the fit in {OUT / 'models.json'}")
            m = dict(logloss=r['test_logloss'], auc=r['test_auc'], normalized_entropy=r['normalized_entropy'], calibration=r['calibration'])
            return m, r
        tb = time.time()
        X, groups = design([parts['train'], parts['valid'], parts['test']], shape, crosses=crosses)
        lr, tried = fit_bound(X[0], y['train'], X[1], y['valid'], Cs=Cs, log=log, what=what)
        m = ctr_metrics(y['test'], lr.predict_proba(X[2])[:, 1])
        log(f"{what}: test logloss {m['logloss']:.5f} auc {m['auc']:.4f} ({X[0].shape[1]:,} columns, C={lr.C:g})")
        return m, row(name, 'reference', m, columns=int(X[0].shape[1]), groups=groups, C=float(lr.C), C_tried=tried,
                      fit_seconds=time.time() - tb)
    bound, r = reference('specified-model bound', True, [float(c) for c in a.bound_C.split(',')], 'bound'); rows.append(r)
    # the same logistic regression without the planted crosses: first-order LR on the raw fields, fitted to convergence
    lr1m, r = reference('first-order LR (sklearn, no crosses)', False, [float(c) for c in a.lr_C.split(',')], 'first-order LR'); rows.append(r)

    members = [n for n in DCN_VARIANTS if n in results]
    ens = []
    if len(members) >= 2:
        import keras
        from rtb_dcn.run import Run
        from rtb_dcn.ensembles import fit_ensemble
        specs, models = [], []
        for n in members:
            r = Run(RUNS / n); specs.append(r.spec); models.append(r.keras_model())
        for n, s in zip(members[1:], specs[1:]):
            if s.to_dict()['categorical'] != specs[0].to_dict()['categorical']:
                raise SystemExit(f"{n}: its FeatureSpec differs from {members[0]}'s; the ensemble needs one encoder")
        enc = {k: specs[0].encode(parts[k]) for k in ('valid', 'test')}
        for fusion in ('mean', 'weighted', 'learned'):
            te = time.time()
            model, info = fit_ensemble(models, list(enc['valid']), y['valid'], fusion=fusion)
            p = model.predict(list(enc['test']), batch_size=8192, verbose=0).ravel()
            m = ctr_metrics(y['test'], p)
            rows.append(row(f'ensemble_{fusion}', 'ensemble', m, members=members,
                            **{k: v for k, v in info.items() if k in ('weights', 'coef', 'intercept')},
                            valid_logloss=info['val_logloss']['ensemble'], fit_seconds=time.time() - te))
            log(f"ensemble_{fusion}: test logloss {m['logloss']:.5f} auc {m['auc']:.4f}")

    dcn_rows = [r for r in rows if r['kind'] in ('dcn', 'ensemble')]
    best = min(dcn_rows, key=lambda r: r['test_logloss']) if dcn_rows else None
    best_single = min([r for r in rows if r['kind'] == 'dcn'], key=lambda r: r['test_logloss'], default=None)
    lr_row = next((r for r in rows if r['model'] == 'LR_default'), None)
    for r in rows:
        r['logloss_gap_to_bound'] = r['test_logloss'] / bound['logloss'] - 1
        r['logloss_gap_to_oracle'] = r['test_logloss'] / oracle['logloss'] - 1
    summary = dict(best=best and best['model'], best_gap_to_bound=best and best['logloss_gap_to_bound'],
                   best_single_dcn=best_single and best_single['model'],
                   best_single_dcn_gap_to_bound=best_single and best_single['logloss_gap_to_bound'],
                   goal_gap_to_bound=GOAL_GAP, goal_met=bool(best and best['logloss_gap_to_bound'] <= GOAL_GAP),
                   lr_gap_to_bound=lr_row and lr_row['logloss_gap_to_bound'],
                   first_order_lr_gap_to_bound=lr1m['logloss'] / bound['logloss'] - 1)
    res = dict(command=command(), data=str(DATA.relative_to(DATA.parents[2])), nrows=a.nrows,
               split={k: len(v) for k, v in parts.items()}, config_file=str(CONFIG.relative_to(CONFIG.parents[2])),
               machine=machine(), seconds=time.time() - t0, summary=summary, models=rows)
    out = write_json('models.json', res)
    write_tables(res)
    print(f"bench_models: {len(rows)} rows; best {summary['best']} test logloss {best['test_logloss']:.5f} "
          f"({summary['best_gap_to_bound']:+.2%} vs bound {bound['logloss']:.5f}, goal <= +{GOAL_GAP:.0%}); "
          f"LR {lr_row['test_logloss'] if lr_row else float('nan'):.5f}; oracle {oracle['logloss']:.5f}; "
          f"{time.time() - t0:.0f}s -> {out}")

if __name__ == '__main__':
    main()
