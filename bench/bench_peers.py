"""Peer comparison on identical data, splits and encoded inputs: rtb_dcn's default DCN vs FuxiCTR 2.3.10 (a parallel
DCNv2 composed from its blocks, PyTorch CPU) vs DeepCTR 0.9.4's DCN (TensorFlow 2.21 + tf-keras), each peer in its
own virtualenv under .bench_venvs/ (created here when missing).

    .venv/bin/python bench/bench_peers.py [--experiment DCN_default] [--only rtb_dcn,fuxictr,deepctr]

1. The train/valid/test rows of the quality benchmark (first 600k rows of data/bench/criteo_5000000_s7.txt, the
   seeded 80/10/10 split of rtb_dcn.train) are encoded ONCE with rtb_dcn's FeatureSpec (the one `train` fitted for
   the experiment's run, or fitted the same way) and saved as .npy under data/bench/peers/.
2. Every contender reads those arrays and trains the same architecture (embedding width, 3 cross layers of the
   full-matrix kind, the DNN widths, dropout, embedding L2, Adam learning rate, batch size) with early stopping on
   validation logloss (patience from the experiment), best weights restored, then scores the test rows.
   rows/s = training rows x epochs run / wall time of the fit (training plus the per-epoch validation pass).
   The host has 2 shared cores: each result records the load average around its run and its command; compare
   rows/s of runs made back to back (`--only rtb_dcn,deepctr --merge` re-measures two and keeps the third).
Writes report/benchmarks/peers.json; prints a one-line summary.
"""
import argparse, json, os, subprocess, sys, time, venv
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, NROWS, CONFIG, RUNS, ROOT, OUT, ensure_data, command, machine, write_json, dump_json, log

VENVS = ROOT / '.bench_venvs'
ARRAYS = ROOT / 'data' / 'bench' / 'peers'
PEERS = {
    'fuxictr': dict(script='peers/fuxictr_dcnv2.py', install=[['torch==2.13.0', 'fuxictr==2.3.10', 'polars<2']],
                    check='import fuxictr, torch; print(fuxictr.__version__, torch.__version__)', env={}),
    'deepctr': dict(script='peers/deepctr_dcn.py', install=[['tensorflow==2.21.0', 'tf-keras==2.21.0'], ['--no-deps', 'deepctr==0.9.4']],
                    check='import tensorflow as tf, deepctr; print(deepctr.__version__, tf.__version__)', env={'TF_USE_LEGACY_KERAS': '1'}),
}

def ensure_venv(name) -> Path:
    "The peer's virtualenv, created and installed on first use."
    d, p = VENVS / name, PEERS[name]
    py = d / 'bin' / 'python'
    if py.exists() and subprocess.run([str(py), '-c', p['check']], capture_output=True, env={**os.environ, **p['env']}).returncode == 0:
        return py
    log(f"creating {d} and installing {p['install']}")
    venv.EnvBuilder(with_pip=True, clear=True).create(d)
    for args in p['install']:
        subprocess.run([str(py), '-m', 'pip', 'install', '-q', *args], check=True)
    return py

def export_arrays(cfg, out: Path) -> dict:
    "Encode the split with rtb_dcn's FeatureSpec and save {part}_{cat_ids,dense,label}.npy + meta.json."
    meta_f = out / 'meta.json'
    spec_f = RUNS / 'DCN_default' / 'input_spec.json'
    from rtb_dcn.features import FeatureSpec
    from rtb_dcn.data import read_dataset, split_frame, SCHEMAS
    parts = split_frame(read_dataset(DATA, cfg.format, nrows=NROWS), cfg.fractions, seed=cfg.seed)
    if spec_f.exists(): spec = FeatureSpec.load(spec_f); src = str(spec_f.relative_to(ROOT))
    else:
        spec = FeatureSpec.fit(parts['train'], SCHEMAS[cfg.format], min_count=cfg.min_count, seed=cfg.seed, fmt=cfg.format)
        src = 'FeatureSpec.fit on the train part (as rtb_dcn.train does)'
    out.mkdir(parents=True, exist_ok=True)
    for k, df in parts.items():
        ids, dense = spec.encode(df)
        np.save(out / f'{k}_cat_ids.npy', ids); np.save(out / f'{k}_dense.npy', dense)
        np.save(out / f'{k}_label.npy', df['label'].to_numpy(np.int8))
    meta = dict(cat=[f.name for f in spec.cat_fields], cardinalities=[f.cardinality for f in spec.cat_fields],
                dense=[f.name for f in spec.dense_fields], rows={k: len(v) for k, v in parts.items()},
                data=str(DATA.relative_to(ROOT)), nrows=NROWS, spec=src)
    dump_json(meta_f, meta)
    return meta

def run(cmd, env=None):
    log('$ ' + ' '.join(map(str, cmd)))
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if p.returncode: raise SystemExit(f"{cmd[1]} failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--experiment', default='DCN_default', help='rtb_dcn experiment whose settings all contenders use')
    ap.add_argument('--only', default='rtb_dcn,fuxictr,deepctr')
    ap.add_argument('--merge', action='store_true', help='keep the other contenders\' results of the existing peers.json')
    ap.add_argument('--reexport', action='store_true', help='encode the arrays again even if data/bench/peers/ has them')
    ap.add_argument('--repeat', type=int, default=1, help='run the contenders this many times, interleaved; rows/s = the median run')
    a = ap.parse_args()
    t0 = time.time()
    ensure_data()
    from rtb_dcn.train import load_experiment
    cfg = load_experiment(CONFIG, a.experiment)
    if a.reexport or not (ARRAYS / 'meta.json').exists():
        log(f"encoding the split with rtb_dcn's FeatureSpec -> {ARRAYS}")
        meta = export_arrays(cfg, ARRAYS)
    else: meta = json.loads((ARRAYS / 'meta.json').read_text())
    common = ['--data-dir', ARRAYS, '--embedding-dim', cfg.model.embedding_dim, '--cross-layers', cfg.model.num_cross_layers,
              '--hidden-units', ','.join(map(str, cfg.model.hidden_units)), '--dropout', cfg.model.dropout, '--lr', cfg.learning_rate,
              '--batch-size', cfg.batch_size, '--epochs', cfg.epochs, '--patience', cfg.patience, '--seed', cfg.seed]
    rows, runs = [], {}
    for who in [w for _ in range(a.repeat) for w in a.only.split(',')]:
        load0 = os.getloadavg()[0]
        if who == 'rtb_dcn':
            r = run([sys.executable, Path(__file__).parent / 'peers' / 'rtb_dcn_arrays.py', '--data-dir', ARRAYS,
                     '--config', CONFIG, '--experiment', a.experiment])
        else:
            py = ensure_venv(who)
            # the same L2 strength as Keras' l2(x) = x * sum(w^2): FuxiCTR's regulariser adds (x / 2) * ||w||^2
            l2 = cfg.model.embedding_l2 * (2 if who == 'fuxictr' else 1)
            r = run([py, Path(__file__).parent / PEERS[who]['script'], *common, '--embedding-l2', l2], env=PEERS[who]['env'])
        r.update(command=command(), started_load_avg=load0, finished_load_avg=os.getloadavg()[0],
                 finished=time.strftime('%Y-%m-%dT%H:%M:%S%z'))
        runs.setdefault(who, []).append(r)
        write_json('peers.partial.json', dict(command=command(), results=[x for v in runs.values() for x in v]))   # survives an interrupted run
        log(f"{who}: test logloss {r['test_logloss']:.5f} auc {r['test_auc']:.4f}, {r['epochs']} epochs, {r['rows_per_s']:,.0f} rows/s")
    for who, rs in runs.items():    # the median run by rows/s (the machine is shared: single runs of the same code vary)
        rs = sorted(rs, key=lambda x: x['rows_per_s'])
        med = dict(rs[(len(rs) - 1) // 2])
        if len(rs) > 1: med.update(repeats=len(rs), rows_per_s_runs=[round(x['rows_per_s'], 1) for x in runs[who]])
        rows.append(med)
    if a.merge and (OUT / 'peers.json').exists():
        prev = json.loads((OUT / 'peers.json').read_text())
        kept = [{'command': prev['command'], 'machine_at_end': prev.get('machine'), **r} for r in prev['results']
                if r['peer'] not in {x['peer'] for x in rows}]
        rows = kept + rows
    by = {r['peer']: r for r in rows}
    ours = by.get('rtb_dcn')
    comp = {}
    if ours:
        for k, r in by.items():
            if k == 'rtb_dcn': continue
            comp[k] = dict(logloss_delta=ours['test_logloss'] - r['test_logloss'], auc_delta=ours['test_auc'] - r['test_auc'],
                           speed_ratio=ours['rows_per_s'] / r['rows_per_s'],
                           better_quality=bool(ours['test_logloss'] < r['test_logloss'] and ours['test_auc'] > r['test_auc']))
    goal_met = bool(comp) and all(c['better_quality'] and c['speed_ratio'] >= 1.0 for c in comp.values())
    e2e = None
    if (RUNS / a.experiment / 'metrics.json').exists():
        m = json.loads((RUNS / a.experiment / 'metrics.json').read_text())
        e2e = dict(test_logloss=m['logloss'], test_auc=m['auc'], rows_per_s=m['rows_per_s'], epochs=m['epochs'],
                   note='rtb_dcn.train.train from the text file (reader + encoder + tf.data), same split; models.json')
    res = dict(command=command(), experiment=a.experiment, arrays=str(ARRAYS.relative_to(ROOT)), data=meta,
               settings=cfg.flat(), machine=machine(), seconds=time.time() - t0,
               goal='rtb_dcn better test logloss and AUC than each peer at >= 1.0x its training rows/s', goal_met=goal_met,
               vs_rtb_dcn=comp, rtb_dcn_train_end_to_end=e2e, results=rows)
    out = write_json('peers.json', res)
    (out.parent / 'peers.partial.json').unlink(missing_ok=True)
    print('bench_peers: ' + '; '.join(f"{r['peer']} logloss {r['test_logloss']:.5f} auc {r['test_auc']:.4f} {r['rows_per_s']:,.0f} rows/s"
                                      for r in rows) + f"; goal met: {goal_met} -> {out}")

if __name__ == '__main__':
    main()
