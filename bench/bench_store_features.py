"""Do the feature store's point-in-time aggregates (per-user and per-context counts, smoothed CTR, recency) make the
model better? Trained with and without them on synthetic iPinYou-shaped logs whose true pCTR is known, (a) with a
planted per-user effect that only a user's own click history reveals, and (b) without one.

    .venv/bin/python bench/bench_store_features.py [--rows 300000] [--seeds 42,43,44] [--user-effect 1.0]

Data: `rtb_dcn.synth.write_synth(data/bench/store_features/..., 'ipinyou', rows, seed=42, base_ctr=0.05,
users=1_000_000, user_zipf=1.1, user_effect=σ)` for σ = --user-effect (a) and σ = 0 (b): the same rows, users,
contexts and times in both logs (same seed), only the click model differs. About 3 users in 4 are one-off visitors
and half the rows belong to users with 10+ visits. base_ctr 0.05 (not iPinYou's 0.2%) so that 180k training rows
carry ~9k clicks and a user's past CTR can be measured at all.
Model: experiment DCN_default of configs/experiments/dcn_ipinyou.yaml (time-ordered split 60% train / 6.67% valid /
33.33% test, the same split in every run), trained by `rtb_dcn.train.train` without and with `store_features=True`
(the TrainConfig key that adds the store's point-in-time aggregates as dense fields, encoded by FeatureSpec as the
product trains and serves them: rtb_dcn.train.store_encoding, counts log1p, smoothed CTRs logit, recencies log1p of
hours, all clipped and standardised); one run per training seed.
Metrics on the test rows: logloss, AUC, and the oracle (true pCTR) logloss/AUC; for (a) also the oracle without the
user offset (the best a model that cannot see the user's history can do), so the gap store features can close is
shown. Gain = relative test logloss reduction (without - with) / without, per seed; its uncertainty: the spread over
seeds and a 95% interval from a paired bootstrap of the test rows clustered by user (Poisson weights per user;
rows of one user move together), over the seed-mean gain.
Writes report/benchmarks/store_features.json and store_features.md; prints progress and a one-line summary.

Diagnostics, not the product (each wraps rtb_dcn in this process only):
--standardise-dense z-scores every dense input of both arms with means and standard deviations of the train rows
(after FeatureSpec's encoding), writes store_features_standardised.{json,md}; it was the evidence for the product's
standardisation of the store features (before it, recency in seconds and counts reached the network as log1p values
up to ~15, CTRs as ~0.05, and the store features made the model worse).
--store-raw log1p encodes the store features as the product did before the logit/hours forms (clipped, signed log1p of
the raw CTRs and seconds, standardised); writes store_features_log1p.{json,md}. (store_features_logit.{json,md} is the
earlier diagnostic that made logit/hours the product's form: it gave those forms to the raw values before FeatureSpec.)
Runs go to data/bench/runs/store_features/<log>_<arm>_s<seed>/.
"""
import argparse, contextlib, json, sys, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, RUNS, OUT, command, machine, log, rel, dump_json

CONFIG = ROOT / 'configs' / 'experiments' / 'dcn_ipinyou.yaml'
DATA_DIR = ROOT / 'data' / 'bench' / 'store_features'
DATA_SEED = 42
ARMS = ('without', 'with')
STORE_KEY = 'store_features'          # the TrainConfig key of the store-features training option

def data_file(rows: int, effect: float, a) -> Path:
    "The synthetic iPinYou-shaped log of this size and user effect (written when missing, a few seconds)."
    from rtb_dcn.synth import write_synth
    p = DATA_DIR / f'ipinyou_{rows}_s{DATA_SEED}_b{a.base_ctr:g}_u{a.users}_z{a.user_zipf:g}_e{effect:g}.txt'
    if not (p.exists() and Path(f'{p}.pctr').exists()):
        p.parent.mkdir(parents=True, exist_ok=True)
        log(f"  {write_synth(p, 'ipinyou', rows=rows, seed=DATA_SEED, base_ctr=a.base_ctr, users=a.users, user_zipf=a.user_zipf, user_effect=effect, progress=False)}")
    return p

def user_offsets(rows: int, effect: float, a) -> tuple[np.ndarray, float]:
    "(the planted per-user logit offset of every row of the log, the intercept of the log's click model) from the generator."
    from rtb_dcn.synth import IpinyouSynth
    g = IpinyouSynth(seed=DATA_SEED, base_ctr=a.base_ctr, users=a.users, user_zipf=a.user_zipf, user_effect=effect)
    off = np.concatenate([g.chunk(s, min(rows, s + 100_000), rows)[0].get('user_offset', np.zeros(min(rows, s + 100_000) - s))
                          for s in range(0, rows, 100_000)])
    return off, g.bias

def train_recorded(cfg, data: Path, run: Path) -> tuple[dict, pd.DataFrame]:
    """(metrics.json, the test rows' frame: row, user_id, label, true_pctr, pctr) of `rtb_dcn.train.train`. The test
    predictions are recorded as train() computes them (a wrapper around rtb_dcn.train.predict that keeps the chunks'
    row numbers, users and true pCTR), so both arms are scored on exactly the rows and features train() used; the
    recorded logloss is checked against metrics.json."""
    import rtb_dcn.train as T
    import keras
    seen, out = [], []
    orig = T.predict
    def recording_predict(model, chunks, spec, batch_size=8192):
        def tee():
            for ch in chunks:
                if len(ch): seen.append(pd.DataFrame({'row': ch.index.to_numpy(), 'user_id': ch['user_id'].to_numpy(),
                                                      'true_pctr': ch['true_pctr'].to_numpy()}))
                yield ch
        y, p = orig(model, tee(), spec, batch_size)
        out.append((y, p))
        return y, p
    T.predict = recording_predict
    try: m = T.train(cfg, data, run, verbose=False)
    finally: T.predict = orig
    keras.backend.clear_session()
    if len(out) != 1: raise SystemExit(f"train() scored {len(out)} splits; expected one test pass to record")
    y, p = out[0]
    df = pd.concat(seen, ignore_index=True).assign(label=y.astype(np.int8), pctr=p.astype(np.float64))
    ll = T.ctr_metrics(df.label, df.pctr)['logloss']
    if abs(ll - m['logloss']) > 1e-6: raise SystemExit(f"recorded test logloss {ll:.6f} != metrics.json {m['logloss']:.6f}")
    return m, df

@contextlib.contextmanager
def standardised_dense():
    "Within the block, FeatureSpec.encode z-scores the dense inputs with the train rows' mean/sd (computed when the spec is fitted)."
    from rtb_dcn.features import FeatureSpec
    fit0, enc0 = FeatureSpec.fit.__func__, FeatureSpec.encode
    def fit(cls, data, *args, **kw):
        chunks = [data] if isinstance(data, pd.DataFrame) else list(data)
        spec = fit0(cls, iter(chunks), *args, **kw)
        d = np.concatenate([enc0(spec, c)[1] for c in chunks if len(c)]).astype(np.float64)
        spec.__dict__['_z'] = (d.mean(0), d.std(0) + 1e-6)
        return spec
    def encode(self, df, strict=True):
        ids, dense = enc0(self, df, strict)
        mu, sd = self.__dict__['_z']
        return ids, ((dense - mu) / sd).astype(np.float32)
    FeatureSpec.fit, FeatureSpec.encode = classmethod(fit), encode
    try: yield
    finally: FeatureSpec.fit, FeatureSpec.encode = classmethod(fit0), enc0

@contextlib.contextmanager
def store_raw_log1p():
    "Within the block, the store features are encoded without logit and units (clip, signed log1p, standardise)."
    import rtb_dcn.train as T
    enc0 = T.store_encoding
    T.store_encoding = lambda scfg: dict(standardize=scfg.names)
    try: yield
    finally: T.store_encoding = enc0

def weighted_logloss(y, p, w, eps=1e-7):
    "Logloss of each weight vector (rows of `w`)."
    p = np.clip(p, eps, 1 - eps)
    l = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return (w @ l) / w.sum(1)

def user_bootstrap(users: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    "(n_boot, rows) Poisson(1) weights drawn per user and shared by that user's rows (a clustered bootstrap)."
    codes, _ = pd.factorize(users)
    rng = np.random.default_rng(seed)
    return rng.poisson(1.0, (n_boot, codes.max() + 1)).astype(np.float32)[:, codes]

def gain_stats(tests: dict, seeds, n_boot: int) -> dict:
    "Relative logloss gain of `with` over `without` per seed, its mean, seed spread, and the clustered-bootstrap 95% interval."
    from rtb_dcn.train import ctr_metrics
    ref = tests['without', seeds[0]]
    y, users = ref.label.to_numpy(np.float64), ref.user_id.to_numpy()
    per_seed, diffs_auc = [], []
    for s in seeds:
        a, b = ctr_metrics(y, tests['without', s].pctr), ctr_metrics(y, tests['with', s].pctr)
        per_seed.append((a['logloss'] - b['logloss']) / a['logloss']); diffs_auc.append(b['auc'] - a['auc'])
    boot = []
    for i in range(0, n_boot, 50):                      # 50 replicates at a time: bounded memory
        w = user_bootstrap(users, min(50, n_boot - i), seed=1000 + i)
        g = np.mean([1 - weighted_logloss(y, tests['with', s].pctr.to_numpy(), w) / weighted_logloss(y, tests['without', s].pctr.to_numpy(), w)
                     for s in seeds], axis=0)
        boot.append(g)
    boot = np.concatenate(boot)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return dict(gain_rel_per_seed=per_seed, gain_rel_mean=float(np.mean(per_seed)),
                gain_rel_seed_sd=float(np.std(per_seed, ddof=1)) if len(seeds) > 1 else None,
                gain_rel_ci95=[float(lo), float(hi)], bootstrap_replicates=len(boot), bootstrap='test rows, clustered by user (Poisson(1) weights)',
                auc_diff_per_seed=diffs_auc, auc_diff_mean=float(np.mean(diffs_auc)))

def run_log(name: str, effect: float, a, cfg0, seeds, arms) -> dict:
    from rtb_dcn.train import ctr_metrics
    from rtb_dcn.synth import SynthShape, _sigmoid, read_true_pctr
    t0 = time.time()
    data = data_file(a.rows, effect, a)
    tests, runs = {}, []
    for arm in arms:
        for s in seeds:
            over = {'seed': s, **({STORE_KEY: True} if arm == 'with' else {})}
            cfg = type(cfg0)(**{**cfg0.flat(), **over})
            run = RUNS / 'store_features' / f'{name}_{arm}_s{s}'
            tr = time.time()
            m, df = train_recorded(cfg, data, run)
            tests[arm, s] = df
            log(f"  [{name}] {arm:7s} seed {s}: test logloss {m['logloss']:.5f} auc {m['auc']:.4f} "
                f"({m['epochs']} epochs, best {m['best_epoch']}, {time.time() - tr:.0f}s) -> {rel(run)}")
            runs.append(dict(arm=arm, seed=s, run=rel(run), config_hash=cfg.hash(), logloss=m['logloss'], auc=m['auc'],
                             calibration=m['calibration'], epochs=m['epochs'], best_epoch=m['best_epoch'],
                             params=m['params'], fit_seconds=m['fit_seconds'],
                             dense_fields=_dense_fields(run), standardised_fields=_dense_fields(run, standardised=True),
                             logit_fields=_dense_fields(run, key='logit'), unit_fields=_dense_fields(run, key='unit')))
    ref = tests[arms[0], seeds[0]]
    for k, df in tests.items():
        if not np.array_equal(df.row.to_numpy(), ref.row.to_numpy()): raise SystemExit(f"{name}: run {k} has other test rows than {arms[0]}, seed {seeds[0]}")
    y = ref.label.to_numpy()
    oracle = ctr_metrics(y, ref.true_pctr)
    r = dict(log=name, user_effect=effect, data=rel(data), rows=a.rows, test_rows=len(ref), test_clicks=int(y.sum()),
             test_users=int(ref.user_id.nunique()), oracle=dict(logloss=oracle['logloss'], auc=oracle['auc']))
    if effect:   # the best model blind to the user's history: the true logit less the user offset, re-calibrated
        off, _ = user_offsets(a.rows, effect, a)
        p_all = read_true_pctr(data)
        z = np.log(p_all) - np.log1p(-p_all) - off
        b = SynthShape._calibrate(z, float(p_all.mean()))
        blind = ctr_metrics(y, _sigmoid(b + z[ref.row.to_numpy()]))
        r['oracle_without_user_offset'] = dict(logloss=blind['logloss'], auc=blind['auc'])
    for arm in arms:
        ll = [x['logloss'] for x in runs if x['arm'] == arm]; au = [x['auc'] for x in runs if x['arm'] == arm]
        r[arm] = dict(logloss_mean=float(np.mean(ll)), logloss_sd=float(np.std(ll, ddof=1)) if len(ll) > 1 else None,
                      auc_mean=float(np.mean(au)), auc_sd=float(np.std(au, ddof=1)) if len(au) > 1 else None)
    if set(arms) == set(ARMS):
        r['gain'] = gain_stats(tests, seeds, a.boot)
        gap = r['without']['logloss_mean'] - oracle['logloss']
        r['gain']['share_of_gap_to_oracle_closed'] = (r['without']['logloss_mean'] - r['with']['logloss_mean']) / gap if gap > 0 else None
    r['runs'], r['seconds'] = runs, time.time() - t0
    return r

def _dense_fields(run: Path, standardised: bool = False, key: str | None = None) -> list[str]:
    "The dense fields of the run's input_spec.json (where the store features show up); those FeatureSpec standardises; those with `key` set."
    try: spec = json.loads((run / 'input_spec.json').read_text())
    except (OSError, ValueError): return []
    fields = spec.get('dense') or spec.get('dense_fields') or []
    return [f['name'] if isinstance(f, dict) else f for f in fields
            if not (standardised or key) or (isinstance(f, dict) and f.get('scale' if standardised else key) is not None)]

def verdicts(res: dict) -> dict:
    "(a) a win: the 95% interval of the gain lies above 0; (b) no measurable cost: the interval reaches 0 or above."
    out = {}
    for r in res['logs']:
        g = r.get('gain')
        if not g: continue
        lo, hi = g['gain_rel_ci95']
        out[r['log']] = (dict(clear_win=bool(lo > 0)) if r['user_effect'] else dict(no_measurable_cost=bool(hi >= 0)))
    return out

def markdown(res: dict) -> str:
    pct = lambda x: '' if x is None else f'{100 * x:+.2f}%'
    f5 = lambda x: '' if x is None else f'{x:.5f}'
    L = ['# Store features: the feature store\'s point-in-time aggregates as model inputs', '',
         f"Synthetic iPinYou-shaped logs, {res['rows']:,} rows each (base CTR {res['base_ctr']}, {res['users']:,} users, Zipf "
         f"{res['user_zipf']}: repeat visitors), the same rows with and without a planted per-user logit offset; "
         f"experiment `{res['experiment']}` of `{res['config_file']}`, time-ordered split, test = last third; "
         f"training seeds {', '.join(map(str, res['seeds']))}. Gain = relative test logloss reduction with store features; "
         f"95% interval from a bootstrap of test rows clustered by user ({res['boot']} replicates) over the seed-mean gain "
         f"(test-row sampling only; the seed sd is the training noise).", '',
         f"Command: `{res['command']}`", '']
    withs = [x for r in res['logs'] for x in r['runs'] if x['arm'] == 'with']
    if withs and 'standardised_fields' in withs[0]:
        n_std = sorted({len(x['standardised_fields']) for x in withs}); n_den = sorted({len(x['dense_fields']) for x in withs})
        L += [f"Encoding of the `with` runs (their input_spec.json): {'/'.join(map(str, n_den))} dense fields, of which "
              f"{'/'.join(map(str, n_std))} standardised by FeatureSpec (the store features: clipped, transformed, then (t - mean) / scale)"
              + (f"; their transforms: {'/'.join(sorted({str(len(x['logit_fields'])) for x in withs}))} logit (the smoothed CTRs), "
                 f"{'/'.join(sorted({str(len(x['unit_fields'])) for x in withs}))} log1p of value / unit (the recencies, in hours), the others signed log1p"
                 if withs[0].get('logit_fields') else '' if res.get('store_raw') == 'logit' else ': signed log1p')
              + ("; store CTRs as logit and recencies as log1p(hours) before it, without its log1p (diagnostic)" if res.get('store_raw') == 'logit' else '')
              + '.', '']
    if res.get('missing'): L += [f"**Not measured:** {res['missing']}", '']
    if res.get('standardised_dense'):
        L += ["**Diagnostic, not the product:** every dense input of both arms z-scored with the train rows' mean/sd "
              "(FeatureSpec wrapped in the benchmark process); the product's encoder is measured in store_features.md.", '']
    elif res.get('store_raw') == 'log1p':
        L += ["**Diagnostic, not the product:** the store features encoded as clipped, signed log1p of the raw CTRs and "
              "seconds, standardised (the product's encoding before the logit/hours forms); the product is measured in store_features.md.", '']
    elif res.get('store_raw') == 'logit':
        L += ["**Diagnostic, not the product:** the store features reach FeatureSpec in another raw form (CTR as logit, "
              "recency as log1p(hours)); the product's encoding is measured in store_features.md.", '']
    elif res['verdicts']:
        L += ['Verdicts: ' + '; '.join(f"{k}: {', '.join(f'{n} = {v}' for n, v in d.items())}" for k, d in res['verdicts'].items())
              + ".", '']
    L += ['| log | user effect σ | arm | test logloss (mean ± sd) | test AUC (mean ± sd) |', '|---|---|---|---|---|']
    for r in res['logs']:
        for arm in ARMS:
            if arm in r:
                a = r[arm]
                sd = lambda v: f" ± {v:.5f}" if v is not None else ''
                L.append(f"| {r['log']} | {r['user_effect']:g} | {arm} store features | {a['logloss_mean']:.5f}{sd(a['logloss_sd'])} | {a['auc_mean']:.4f}{sd(a['auc_sd'])} |")
        L.append(f"| {r['log']} | {r['user_effect']:g} | oracle (true pCTR) | {r['oracle']['logloss']:.5f} | {r['oracle']['auc']:.4f} |")
        if 'oracle_without_user_offset' in r:
            o = r['oracle_without_user_offset']
            L.append(f"| {r['log']} | {r['user_effect']:g} | oracle blind to the user offset | {o['logloss']:.5f} | {o['auc']:.4f} |")
    L += ['', '| log | gain per seed | mean gain | seed sd | 95% interval | AUC diff (mean) | share of the gap to the oracle closed | verdict |',
          '|---|---|---|---|---|---|---|---|']
    for r in res['logs']:
        g = r.get('gain')
        if not g: continue
        v, share, sd_ = res['verdicts'].get(r['log'], {}), g['share_of_gap_to_oracle_closed'], g['gain_rel_seed_sd']
        L.append(f"| {r['log']} | {', '.join(pct(x) for x in g['gain_rel_per_seed'])} | {pct(g['gain_rel_mean'])} | "
                 f"{'' if sd_ is None else f'{100 * sd_:.2f}%'} | "
                 f"[{pct(g['gain_rel_ci95'][0])}, {pct(g['gain_rel_ci95'][1])}] | {g['auc_diff_mean']:+.4f} | "
                 f"{'' if share is None else f'{share:.0%}'} | "
                 f"{', '.join(f'{k}: {x}' for k, x in v.items())} |")
    L += ['', f"Machine: {res['machine']['cpus']} CPUs (shared), load {res['machine']['load_avg_at_start']:.1f} at start; "
          f"{res['seconds'] / 60:.1f} min in all.", '']
    return '\n'.join(L)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=300_000, help='rows of each synthetic log')
    ap.add_argument('--seeds', default='42,43,44', help='comma-separated training seeds (one run per arm and seed)')
    ap.add_argument('--user-effect', type=float, default=1.0, help='std of the planted per-user logit offset in log (a)')
    ap.add_argument('--base-ctr', type=float, default=0.05, help='mean true pCTR of the logs')
    ap.add_argument('--users', type=int, default=1_000_000, help='user population of the logs')
    ap.add_argument('--user-zipf', type=float, default=1.1, help='Zipf exponent of user popularity')
    ap.add_argument('--config', default=str(CONFIG), help='experiment YAML')
    ap.add_argument('--experiment', default='DCN_default', help='experiment in --config')
    ap.add_argument('--epochs', type=int, default=4, help='maximum epochs (early stopping on validation logloss)')
    ap.add_argument('--boot', type=int, default=500, help='bootstrap replicates')
    ap.add_argument('--arms', default='without,with', help="arms to train: without,with (only 'without' checks the plumbing)")
    ap.add_argument('--name', default=None, help='output name under report/benchmarks/ (default: store_features, '
                    'or store_features_standardised with --standardise-dense)')
    ap.add_argument('--standardise-dense', action='store_true', help='diagnostic: z-score the dense inputs of both arms (train mean/sd)')
    ap.add_argument('--store-raw', choices=('product', 'log1p'), default='product',
                    help="diagnostic 'log1p': the store features without logit and hours (clip, signed log1p, standardise)")
    ap.add_argument('--render', default=None, help='only write the markdown of this results JSON next to it (no training)')
    a = ap.parse_args()
    if a.render:
        p = Path(a.render); p.with_suffix('.md').write_text(markdown(json.loads(p.read_text())))
        print(f"bench_store_features: {rel(p.with_suffix('.md'))} from {rel(p)}"); return
    if a.standardise_dense and a.store_raw != 'product': raise SystemExit("--standardise-dense and --store-raw log1p: one diagnostic at a time")
    a.name = a.name or ('store_features_standardised' if a.standardise_dense else 'store_features_log1p' if a.store_raw == 'log1p' else 'store_features')
    t0 = time.time()
    from rtb_dcn.train import load_experiment, TrainConfig
    seeds = [int(s) for s in a.seeds.split(',') if s]
    arms = tuple(x for x in a.arms.split(',') if x)
    if not arms or set(arms) - set(ARMS): raise SystemExit(f"--arms: {a.arms!r}; expected a comma list of {', '.join(ARMS)}")
    missing = None
    if 'with' in arms and STORE_KEY not in TrainConfig.model_fields:
        missing = (f"rtb_dcn.train.TrainConfig has no `{STORE_KEY}` key yet (the store-features training option has not "
                   f"landed); only the 'without' arm was trained")
        log(f"bench_store_features: {missing}")
        arms = ('without',)
    cfg0 = load_experiment(a.config, a.experiment, epochs=a.epochs)
    logs = [('user_effect', a.user_effect), ('no_user_effect', 0.0)]
    res_logs = []
    for i, (name, eff) in enumerate(logs):
        log(f"[{i + 1}/{len(logs)}] log {name} (σ = {eff:g}), arms {', '.join(arms)}, seeds {', '.join(map(str, seeds))}"
            + (', dense inputs standardised (diagnostic)' if a.standardise_dense else ''))
        diag = standardised_dense() if a.standardise_dense else store_raw_log1p() if a.store_raw == 'log1p' else contextlib.nullcontext()
        with diag:
            res_logs.append(run_log(name + ('_std' if a.standardise_dense else '_log1p' if a.store_raw == 'log1p' else ''), eff, a, cfg0, seeds, arms))
    res = dict(command=command(), config_file=rel(a.config), experiment=a.experiment, config=cfg0.flat(), rows=a.rows,
               data_seed=DATA_SEED, base_ctr=a.base_ctr, users=a.users, user_zipf=a.user_zipf, seeds=seeds, boot=a.boot,
               arms=list(arms), missing=missing, standardised_dense=a.standardise_dense, store_raw=a.store_raw, logs=res_logs, machine=machine(), seconds=time.time() - t0)
    res['verdicts'] = verdicts(res)
    dump_json(OUT / f'{a.name}.json', res)
    (OUT / f'{a.name}.md').write_text(markdown(res))
    parts = []
    for r in res_logs:
        g = r.get('gain')
        parts.append(f"{r['log']}: " + (f"gain {100 * g['gain_rel_mean']:+.2f}% [{100 * g['gain_rel_ci95'][0]:+.2f}%, {100 * g['gain_rel_ci95'][1]:+.2f}%]"
                                         if g else f"without {r['without']['logloss_mean']:.5f} vs oracle {r['oracle']['logloss']:.5f}"))
    print(f"bench_store_features: {'; '.join(parts)}; {(time.time() - t0) / 60:.1f} min -> {rel(OUT / (a.name + '.json'))}")

if __name__ == '__main__':
    main()
