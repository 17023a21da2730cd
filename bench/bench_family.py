"""Model quality on the generator family (rtb_dcn.synth.FAMILY): for every setting and seed, the oracle (true pCTR),
the specified-model bound (rtb_dcn.synth.specified_bound), and each experiment trained by rtb_dcn.train.train; the
median over seeds of every model's test logloss gap to the bound, and the goal (+2%) shown met or by how much it is missed.

    nice -n 10 .venv/bin/python bench/bench_family.py                 # quick sizes (about 10 min on a shared 2-core machine)
    FULL=1 nice -n 10 .venv/bin/python bench/bench_family.py          # the issue's sizes (500k rows, 3M at 0.2% CTR): hours

    [--settings criteo_like,independent,...] [--seeds 1,2,3] [--experiments DCN_default,LR_default]
    [--config configs/experiments/dcn_criteo.yaml] [--extra NAME=YAML:EXPERIMENT ...] [--out family] [--rows N]

Seed s means: the setting's world and rows drawn with seed s (rtb_dcn.synth.write_family), and training seeded with s
(split, initialisation, shuffling), so the three seeds are three data sets of the same kind. Every model of one
(setting, seed) sees the same seeded 80/10/10 split. `--extra tuned=report/tune/x/best.yaml:DCN_tuned` adds an
experiment from another YAML under a short name; `--ensemble A+B` adds the learned fusion of experiments A and B
(same feature layout) fitted on each data set's validation rows; `--merge a,b --out family` joins runs made over different
settings or seeds into one report. Writes report/benchmarks/<out>.json and <out>.md.
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, OUT, CONFIG, command, machine, write_json, log

GOAL_GAP = 0.02
QUICK_ROWS, QUICK_ROWS_SPARSE = 40_000, 100_000        # quick mode: rows per file (settings under 1% CTR get more)
FULL_ROWS, FULL_ROWS_SPARSE = 500_000, 3_000_000       # the sizes: 400k train / 50k valid / 50k test; 3M at 0.2%
DATA = ROOT / 'data' / 'bench' / 'family'

def rows_for(setting, full: bool, rows: int | None) -> int:
    if rows: return rows
    sparse = setting.base_ctr < 0.01
    return (FULL_ROWS_SPARSE if sparse else FULL_ROWS) if full else (QUICK_ROWS_SPARSE if sparse else QUICK_ROWS)

def data_file(name: str, n: int, seed: int) -> Path:
    from rtb_dcn.synth import write_family
    p = DATA / f'{name}_{n}_s{seed}.txt'
    if not (p.exists() and Path(f'{p}.pctr').exists()):
        p.parent.mkdir(parents=True, exist_ok=True)
        log(f"  {write_family(p, name, rows=n, seed=seed, progress=False)}")
    return p

def ensemble_metrics(kept: dict, members: list[str], parts) -> dict:
    """The members' trained models fused by rtb_dcn.ensembles.fit_ensemble ('learned': a logistic regression on their logits,
    fitted on the validation rows); test metrics. Members must share the feature layout (same seed and min_count)."""
    from rtb_dcn.ensembles import fit_ensemble
    from rtb_dcn.train import ctr_metrics
    specs = [kept[m][1] for m in members]
    if any(s.to_dict()['categorical'] != specs[0].to_dict()['categorical'] for s in specs):
        raise SystemExit(f"--ensemble {'+'.join(members)}: the members' input specs differ; expected one feature layout (same min_count)")
    xv, xt = (list(specs[0].encode(parts[k])) for k in ('valid', 'test'))
    ens, info = fit_ensemble([kept[m][0] for m in members], xv, parts['valid']['label'].to_numpy(), 'learned')
    p = ens.predict(xt, batch_size=8192, verbose=0).ravel()
    return {**ctr_metrics(parts['test']['label'], p), 'coef': info['coef'], 'intercept': info['intercept'], 'members': members}

DECILE_CLICKS, DECILE_BAND = 30, (0.9, 1.1)   # issue 19's calibration goal: every pCTR decile with >= 30 clicks within the band

def served_pctr(run, test, cal) -> tuple[np.ndarray, np.ndarray]:
    "(labels, pCTR as served) of the test rows: the run's model, then the calibration kept at training (if any)."
    from rtb_dcn.train import predict, apply_calibration
    y, p = predict(run.keras_model(), iter([test]), run.spec)
    return y, apply_calibration(np.asarray(p, np.float64).ravel(), cal)

def decile_band(y, p) -> dict:
    "Deciles of pCTR with at least DECILE_CLICKS clicks (judged) and those whose mean pCTR / CTR lies in DECILE_BAND."
    from rtb_dcn.tune import decile_calibration
    t = decile_calibration(np.asarray(y), p)
    j = t[t.clicks >= DECILE_CLICKS]
    return dict(judged=int(len(j)), in_band=int(j.ratio.between(*DECILE_BAND).sum()), ratios=[round(float(v), 4) for v in t.ratio])

def one(setting, seed: int, n: int, exps: dict, bound_Cs, ensembles=()) -> dict:
    "Oracle, bound and every experiment on one (setting, seed) data set; then each ensemble of experiments."
    from rtb_dcn.data import read_dataset, split_frame
    from rtb_dcn.synth import specified_bound
    from rtb_dcn.train import train, ctr_metrics
    df = read_dataset(data_file(setting.name, n, seed), 'criteo')
    df.attrs['name'] = f'{setting.name}_{n}_s{seed}'
    out = dict(setting=setting.name, seed=seed, rows=n, models={})
    first = next(iter(exps.values()))
    parts = split_frame(df, first.fractions, seed)
    out['split'] = {k: len(v) for k, v in parts.items()}
    out['train_clicks'] = int(parts['train']['label'].sum()); out['test_clicks'] = int(parts['test']['label'].sum())
    out['models']['oracle'] = ctr_metrics(parts['test']['label'], parts['test']['true_pctr'])
    tb = time.time()
    b = specified_bound(parts, setting, Cs=bound_Cs)
    out['models']['bound'] = {**ctr_metrics(parts['test']['label'], b.pop('pctr')), 'C': b['C'], 'columns': b['columns'],
                              'fit_seconds': time.time() - tb}
    kept, need = {}, {m for e in ensembles for m in e}
    for name, cfg in exps.items():
        cfg = cfg.model_copy(update=dict(seed=seed))
        with tempfile.TemporaryDirectory() as run:
            m = train(cfg, df, run, verbose=False)
            from rtb_dcn.run import Run
            if name in need: kept[name] = (Run(run).keras_model(), Run(run).spec)
            m['deciles'] = decile_band(*served_pctr(Run(run), parts['test'], m.get('calibrate')))
        out['models'][name] = {k: m[k] for k in ('logloss', 'auc', 'calibration', 'normalized_entropy', 'epochs', 'best_epoch',
                                                 'fit_seconds', 'rows_per_s', 'evaluations', 'calibrate', 'uncalibrated', 'deciles') if k in m}
        out['models'][name]['config_hash'] = cfg.hash()
        if 'uncalibrated' in m: out['models'][f'{name} (uncalibrated)'] = dict(m['uncalibrated'])   # the same model before Platt
    for e in ensembles: out['models']['+'.join(e)] = ensemble_metrics(kept, list(e), parts)
    bl = out['models']['bound']['logloss']
    for m in out['models'].values(): m['gap_to_bound'] = m['logloss'] / bl - 1
    log("  " + ', '.join(f"{k} {v['logloss']:.5f} ({v['gap_to_bound']:+.2%})" for k, v in out['models'].items()))
    return out

def summarise(runs: list[dict], models: list[str]) -> list[dict]:
    "Per setting: median over seeds of each model's test logloss, AUC and gap to the bound; the goal per learnt model."
    rows = []
    for s in dict.fromkeys(r['setting'] for r in runs):
        rs = [r for r in runs if r['setting'] == s]
        row = dict(setting=s, seeds=[r['seed'] for r in rs], rows=rs[0]['rows'], train_clicks=int(statistics.median(r['train_clicks'] for r in rs)),
                   test_clicks=int(statistics.median(r['test_clicks'] for r in rs)), models={})
        for m in ['oracle', 'bound'] + models:
            if not all(m in r['models'] for r in rs): continue
            med = lambda k: float(statistics.median(r['models'][m][k] for r in rs))
            row['models'][m] = dict(logloss=med('logloss'), auc=med('auc'), gap_to_bound=med('gap_to_bound'),
                                    gaps=[r['models'][m]['gap_to_bound'] for r in rs], calibration=med('calibration'))
            if 'best_epoch' in rs[0]['models'][m]: row['models'][m].update(best_epoch=med('best_epoch'), epochs=med('epochs'))
            if all('deciles' in r['models'][m] for r in rs):     # summed over seeds: deciles judged and in the band
                row['models'][m]['deciles'] = {k: sum(r['models'][m]['deciles'][k] for r in rs) for k in ('judged', 'in_band')}
            if m not in ('oracle', 'bound'):
                g = row['models'][m]['gap_to_bound']
                row['models'][m].update(goal_met=bool(g <= GOAL_GAP), short_by=max(0.0, g - GOAL_GAP))
        rows.append(row)
    return rows

def write_md(res: dict, path: Path):
    models = res['models']
    lines = [f"# Model quality on the generator family", '',
             f"Settings of `rtb_dcn.synth.FAMILY`, {len(res['seeds'])} seeds each (seed = the world, the rows and the training seed); "
             f"seeded 80/10/10 split; test-set metrics, **median over seeds**. Rows per data set: "
             + ', '.join(f"{r['setting']} {r['rows']:,}" for r in res['summary']) + f" ({res['mode']} mode"
             + ("; `FULL=1` runs the issue's sizes: 500k rows, 3M under 1% CTR" if res['mode'] == 'quick' else '') + "). "
             f"Experiments: " + ', '.join(f"`{m}` ({res['experiments'][m]['source']})" for m in models) + '.', '',
             f"Goal: every learnt model within +{GOAL_GAP:.0%} test logloss of the specified-model bound, on every setting. "
             f"Gap = logloss / bound's - 1 (negative: better than the bound, possible when the bound's L2 or its data are limiting).", '',
             f"Command: `{res['command']}` ({res['seconds'] / 60:.1f} min; 1-minute load average at start / end: "
             + ', '.join(f"{m.get('load_avg_at_start', float('nan')):.1f} / {m.get('load_avg_at_end', float('nan')):.1f}"
                         for m in (res['machine'] if isinstance(res.get('machine'), list) else [res.get('machine') or {}]))
             + f" on {(res['machine'][0] if isinstance(res.get('machine'), list) else res.get('machine') or {}).get('cpus', '?')} shared cores)", '']
    hdr = ['setting', 'CTR', 'train clicks', 'oracle', 'bound'] + [f'{m} (gap)' for m in models] + ['goal ' + m for m in models]
    lines += ['| ' + ' | '.join(hdr) + ' |', '|' + '---|' * len(hdr)]
    from rtb_dcn.synth import FAMILY
    for r in res['summary']:
        mm = r['models']
        cells = [r['setting'], f"{FAMILY[r['setting']].base_ctr:.1%}", f"{r['train_clicks']:,}",
                 f"{mm['oracle']['logloss']:.5f}", f"{mm['bound']['logloss']:.5f}"]
        cells += [f"{mm[m]['logloss']:.5f} ({mm[m]['gap_to_bound']:+.2%})" if m in mm else '' for m in models]
        cells += [('met' if mm[m]['goal_met'] else f"short by {mm[m]['short_by']:.2%}") if m in mm else '' for m in models]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', 'AUC (median): ' + '; '.join(f"{r['setting']}: " + ', '.join(f"{m} {v['auc']:.4f}" for m, v in r['models'].items())
                                                for r in res['summary']), '']
    for m in models:
        met = [r['setting'] for r in res['summary'] if r['models'].get(m, {}).get('goal_met')]
        lines.append(f"- `{m}`: goal met on {len(met)} of {len(res['summary'])} settings" + (f" ({', '.join(met)})" if met else '') + '.')
    lines += ['', 'Calibration (median mean pCTR / observed CTR on the test rows) and training length (median best epoch / epochs run):', '']
    for r in res['summary']:
        lines.append(f"- {r['setting']}: " + '; '.join(f"{m} {v['calibration']:.3f}" + (f" (best epoch {v['best_epoch']:g} of {v['epochs']:g})" if 'best_epoch' in v else '')
                                                      for m, v in r['models'].items() if m != 'oracle'))
    if any('deciles' in v for r in res['summary'] for v in r['models'].values()):
        lines += ['', f"Calibration by pCTR decile (the test rows in ten equal groups by pCTR as served; a decile is judged when it holds "
                      f">= {DECILE_CLICKS} clicks and passes when mean pCTR / CTR is within [{DECILE_BAND[0]}, {DECILE_BAND[1]}]): "
                      f"deciles in the band / judged, over the seeds:", '']
        for r in res['summary']:
            lines.append(f"- {r['setting']}: " + '; '.join(f"{m} {v['deciles']['in_band']}/{v['deciles']['judged']}"
                                                          for m, v in r['models'].items() if 'deciles' in v))
    if res.get('notes'): lines += ['', '## Why', '', res['notes']]
    path.write_text('\n'.join(lines) + '\n')

def merge(parts: list[dict], out: str):
    "One report from several runs of this script over different settings or seeds (same experiments and mode)."
    first = parts[0]
    for p in parts[1:]:
        if (p['models'], p['mode']) != (first['models'], first['mode']):
            raise SystemExit(f"--merge: {p['command']!r} ran other experiments or mode than {first['command']!r}")
    runs = [r for p in parts for r in p['runs']]
    seen = [(r['setting'], r['seed']) for r in runs]
    if len(set(seen)) < len(seen): raise SystemExit(f"--merge: a (setting, seed) appears in two runs; expected each once")
    res = {**first, 'seeds': sorted({s for p in parts for s in p['seeds']}),
           'command': ' && '.join(p['command'] for p in parts) + f" && {command()}", 'seconds': sum(p['seconds'] for p in parts),
           'machine': [p['machine'] for p in parts], 'runs': runs, 'summary': summarise(runs, first['models'])}
    res.pop('notes', None)
    write_json(f'{out}.json', res); write_md(res, OUT / f'{out}.md')

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--settings', default=None, help='comma-separated settings of rtb_dcn.synth.FAMILY (default: all)')
    ap.add_argument('--seeds', default='1,2,3')
    ap.add_argument('--config', default=str(CONFIG))
    ap.add_argument('--experiments', default='LR_default,DCN_default', help='experiments of --config')
    ap.add_argument('--extra', action='append', default=[], help='NAME=YAML:EXPERIMENT, an experiment from another YAML')
    ap.add_argument('--ensemble', action='append', default=[], help='A+B: experiments fused (learned fusion on validation), e.g. LR_default+DCN_default')
    ap.add_argument('--rows', type=int, default=None, help='rows per data set for every setting (default: by mode and CTR)')
    ap.add_argument('--bound-C', default=None, help='inverse L2 strengths tried for the bound (default: quick 0.1,0.3; full 0.03,0.1,0.3,1)')
    ap.add_argument('--out', default='family', help='report/benchmarks/<out>.json and .md')
    ap.add_argument('--merge', default=None, help='A,B: write <out> from report/benchmarks/A.json and B.json (runs of other settings, same experiments)')
    ap.add_argument('--render', action='store_true', help="only rewrite <out>.md from <out>.json (e.g. after editing its 'notes')")
    a = ap.parse_args()
    if a.render: return write_md(json.loads((OUT / f'{a.out}.json').read_text()), OUT / f'{a.out}.md')
    if a.merge: return merge([json.loads((OUT / f'{n}.json').read_text()) for n in a.merge.split(',')], a.out)
    full = os.environ.get('FULL') == '1'
    t0 = time.time()
    from rtb_dcn.synth import FAMILY
    from rtb_dcn.train import load_experiment
    exps, sources = {}, {}
    for e in [e for e in a.experiments.split(',') if e]:
        exps[e] = load_experiment(a.config, e); sources[e] = f"{os.path.relpath(a.config, ROOT)}:{e}"
    for x in a.extra:
        name, _, ref = x.partition('='); yml, _, e = ref.rpartition(':')
        exps[name] = load_experiment(yml, e); sources[name] = f"{os.path.relpath(yml, ROOT)}:{e}"
    ensembles = [tuple(e.split('+')) for e in a.ensemble]
    for e in ensembles:
        if len(e) < 2 or not set(e) <= set(exps): raise SystemExit(f"--ensemble {'+'.join(e)}: expected two or more of {', '.join(exps)} joined by +")
    settings = [FAMILY[s] for s in (a.settings.split(',') if a.settings else FAMILY)]
    seeds = [int(s) for s in a.seeds.split(',')]
    Cs = tuple(float(c) for c in (a.bound_C or ('0.03,0.1,0.3,1' if full else '0.1,0.3')).split(','))
    runs = []
    for i, st in enumerate(settings):
        for seed in seeds:
            n = rows_for(st, full, a.rows)
            log(f"[{i + 1}/{len(settings)}] {st.name} (CTR {st.base_ctr:.1%}), seed {seed}, {n:,} rows")
            runs.append(one(st, seed, n, exps, Cs, ensembles))
    models = [x for k, c in exps.items() for x in ([k] + ([f'{k} (uncalibrated)'] if c.calibrate != 'none' else []))]
    models += ['+'.join(e) for e in ensembles]
    summary = summarise(runs, models)
    res = dict(command=command(), mode='full' if full else 'quick', seeds=seeds, goal_gap_to_bound=GOAL_GAP, models=models,
               experiments={**{k: dict(source=sources[k], config=c.flat(), config_hash=c.hash()) for k, c in exps.items()},
                            **{'+'.join(e): dict(source='learned fusion of ' + ' and '.join(e) + ' (rtb_dcn.ensembles.fit_ensemble on the validation rows)')
                               for e in ensembles},
                            **{f'{k} (uncalibrated)': dict(source=f'{k} before its {c.calibrate} calibration') for k, c in exps.items() if c.calibrate != 'none'}},
               bound_C_grid=list(Cs), machine=machine(), seconds=time.time() - t0, summary=summary, runs=runs)
    out = write_json(f'{a.out}.json', res)
    write_md(res, OUT / f'{a.out}.md')
    worst = {m: max(r['models'][m]['gap_to_bound'] for r in summary) for m in models}
    print(f"bench_family: {len(settings)} settings x {len(seeds)} seeds; worst median gap to the bound: "
          + ', '.join(f"{m} {g:+.2%}" for m, g in worst.items()) + f" (goal <= +{GOAL_GAP:.0%}); {time.time() - t0:.0f}s -> {out}")

if __name__ == '__main__':
    main()
