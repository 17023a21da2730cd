"""Scale-out measurements: the encoded-shard cache of `rtb-dcn train FILE`, Spark vs local encode rows/s, training rows/s
with 1 vs 2 workers, and the full-Criteo / Criteo-1TB recipe derived from them.

    nice -n 10 .venv/bin/python bench/bench_scale.py [--only train_from_file,encode,workers] [--rows 200000]
    FULL=1 ...   also encodes 20M synthetic rows (about 5 GB of text; long)

Sections (each writes its own JSON, `scale` collects the rest into report/benchmarks/scale.{json,md}):
- train_from_file: `rtb-dcn train DATA --nrows N --epochs 3` with `--no-cache` (every epoch re-reads and re-encodes
  the log: the code path before the cache) and without it (epochs 2+ stream from <run>/encoded/), the same command
  otherwise; end-to-end rows/s = train rows x epochs / the command's wall seconds; peak RSS of each; the two runs'
  test logloss (the same model: equal). -> report/benchmarks/train_from_file.json
- encode: the whole `rtb-dcn prepare` (fit + encode + write) on the first N rows of the 5M file, local Arrow path vs
  Spark local[1] and local[2], each in a fresh process. -> report/benchmarks/scale_encode.json
- workers: one epoch of `rtb-dcn train SHARDS` with 1 worker and with 2 workers (`--distributed`, TF_CONFIG on
  127.0.0.1), rows/s and the bytes all-reduced per step. -> report/benchmarks/scale_workers.json
- report (also after encode + workers): the recipe for full Criteo and Criteo 1TB from those numbers and the prices
  in PRICES (inputs, not measurements). -> report/benchmarks/scale.{json,md}
"""
import argparse, json, os, resource, subprocess, sys, time
import numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, CONFIG, RUNS, ROOT, OUT, ensure_data, command, machine, write_json, log, rel

VENV_BIN = Path(sys.executable).parent


def timed(cmd: list, env: dict | None = None) -> dict:
    "Run `cmd`; wall seconds, the child's peak RSS (MB, os.wait4), last stdout line."
    import tempfile
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        t = time.perf_counter()
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True, cwd=ROOT,
                             env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **(env or {})})
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0); err.seek(0); o, e = out.read(), err.read()
    if p.returncode: raise SystemExit(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {e[-2000:]}")
    return dict(wall_s=round(wall, 2), peak_rss_mb=round(ru.ru_maxrss / 1024, 1), last_line=o.strip().splitlines()[-1])


def train_from_file(rows: int, epochs: int = 3, experiment: str = 'DCN_default') -> dict:
    data = ensure_data()
    res = {}
    for name, extra in (('before_no_cache', ['--no-cache']), ('after_cache', [])):
        run = RUNS / f'scale_train_from_file_{name}'
        if (run / 'encoded').exists():
            import shutil; shutil.rmtree(run / 'encoded')   # a cold cache: the first epoch still reads and encodes the log
        cmd = [VENV_BIN / 'rtb-dcn', 'train', data, '--nrows', rows, '--experiment', experiment, '--epochs', epochs,
               '--run', run, *extra]
        log(f"train_from_file: {name}: {' '.join(map(str, cmd[1:]))}")
        t = timed(cmd)
        m = json.loads((run / 'metrics.json').read_text())
        res[name] = dict(command='rtb-dcn ' + ' '.join(map(str, cmd[1:])), **t, epochs=m['epochs'], train_rows=m['train_rows'],
                         end_to_end_rows_per_s=round(m['train_rows'] * m['epochs'] / t['wall_s'], 1),
                         fit_rows_per_s=round(m['rows_per_s'], 1), fit_seconds=round(m['fit_seconds'], 2),
                         spec_seconds=round(m['spec_seconds'], 2), test_logloss=m['logloss'], test_auc=m['auc'])
        log(f"  {res[name]['end_to_end_rows_per_s']:.0f} rows/s end to end ({t['wall_s']:.0f}s), fit {m['rows_per_s']:.0f} rows/s")
    b, a = res['before_no_cache'], res['after_cache']
    out = dict(what='rtb-dcn train FILE end to end: every epoch re-reads and re-encodes the log (--no-cache, the code path '
                    'before the cache) vs epochs 2+ streamed from the encoded cache under <run>/encoded/',
               data=rel(data), nrows=rows, experiment=experiment, epochs_max=epochs, **res,
               speedup_end_to_end=round(a['end_to_end_rows_per_s'] / b['end_to_end_rows_per_s'], 3),
               speedup_fit=round(a['fit_rows_per_s'] / b['fit_rows_per_s'], 3),
               same_model=a['test_logloss'] == b['test_logloss'] and a['epochs'] == b['epochs'],
               command=command(), machine=machine())
    write_json('train_from_file.json', out)
    log(f"train_from_file: {b['end_to_end_rows_per_s']:.0f} -> {a['end_to_end_rows_per_s']:.0f} rows/s end to end "
        f"(x{out['speedup_end_to_end']}), same model: {out['same_model']}")
    return out


def _child_prepare(engine: str, data: str, out: str, master: str | None) -> None:
    "One prepare in a fresh process: its manifest (+ wall seconds) as the last stdout line."
    t = time.perf_counter()
    if engine == 'local':
        from rtb_dcn.shards import prepare_local
        man = prepare_local(data, 'criteo', out, min_count=2, seed=42)
    else:
        from rtb_dcn.spark import prepare_spark
        man = prepare_spark(data, 'criteo', out, min_count=2, seed=42, master=master)
    print(json.dumps(dict(wall_s=time.perf_counter() - t, rows=man['rows'], fit_s=man.get('fit_s'), total_s=man.get('total_s'),
                          stages_s=man.get('stages_s'))))


def encode(rows_list: list[int]) -> dict:
    "Spark local[1] / local[2] vs the local Arrow path: the whole prepare (fit the spec on the train split, encode and write every split)."
    src = ensure_data()
    res = []
    for rows in rows_list:
        data = src.parent / f'criteo_{rows}_s7.txt'          # the first `rows` lines of the 5M file (no Spark read of the rest)
        if not data.exists() and rows > 5_000_000:
            ensure_data(data, rows=rows)                         # more rows than the 5M file has: a synthetic file of its own
        if not data.exists():
            with open(src, 'rb') as f, open(data, 'wb') as g:
                for i, line in enumerate(f):
                    if i == rows: break
                    g.write(line)
        for engine, master in (('local', None), ('spark', 'local[1]'), ('spark', 'local[2]')):
            out = RUNS / f'scale_shards_{engine}_{master or "arrow"}_{rows}'.replace('[', '').replace(']', '')
            log(f"encode: {rows:,} rows with {engine} {master or ''}")
            cmd = [sys.executable, __file__, '--child-prepare', json.dumps([engine, str(data), str(out), master])]
            load = os.getloadavg()[0]                        # the machine is shared: the 1-minute load at the start of each run
            t = timed(cmd)
            r = json.loads(t['last_line'])
            res.append(dict(rows=rows, engine=engine, master=master, wall_s=round(t['wall_s'], 2), peak_rss_mb_driver=t['peak_rss_mb'],
                            rows_per_s=round(rows / t['wall_s'], 1), job_total_s=r['total_s'], fit_s=r['fit_s'],
                            stages_s=r.get('stages_s'), load_1m_at_start=round(load, 2)))
            log(f"  {res[-1]['rows_per_s']:.0f} rows/s ({t['wall_s']:.0f}s)")
            import shutil; shutil.rmtree(out, ignore_errors=True)
    return dict(what='rows/s of the whole prepare (read, split, fit the spec on the train split, encode, write zstd Parquet shards), '
                     'in a fresh process each; Spark includes its JVM start', results=res)


def workers(rows: int, experiment: str = 'DCN_default') -> dict:
    "Training rows/s with 1 worker and with 2 workers (MultiWorkerMirroredStrategy, both on this machine), one epoch on a shard folder."
    from rtb_dcn.distributed import local_cluster, worker_env
    src = ensure_data()
    shards = RUNS / f'scale_train_shards_{rows}'
    if not (shards / 'manifest.json').exists():
        timed([VENV_BIN / 'rtb-dcn', 'prepare', src, '--out', shards, '--nrows', rows])
    base = [VENV_BIN / 'rtb-dcn', 'train', shards, '--experiment', experiment, '--epochs', 1, '--seed', 42]
    out = dict(shard_bytes_per_row=round(sum(f.stat().st_size for f in shards.rglob('*.parquet'))
                                         / json.loads((shards / 'manifest.json').read_text())['rows'], 1))
    t = timed([*base, '--run', RUNS / 'scale_w1'])
    m = json.loads((RUNS / 'scale_w1' / 'metrics.json').read_text())
    out['1_worker'] = dict(wall_s=t['wall_s'], peak_rss_mb=t['peak_rss_mb'], fit_rows_per_s=round(m['rows_per_s'], 1),
                           train_rows=m['train_rows'], params=m['params'], test_logloss=m['logloss'])
    log(f"workers: 1 worker {m['rows_per_s']:.0f} rows/s")
    w = local_cluster(2)
    t0 = time.perf_counter()
    ps = [subprocess.Popen([str(c) for c in [*base, '--distributed', '--run', RUNS / f'scale_w2_{i}']], cwd=ROOT,
                           env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **worker_env(w, i)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    errs = [p.communicate()[1] for p in ps]
    for p, e in zip(ps, errs):
        if p.returncode: raise SystemExit(f"worker failed: {e[-2000:]}")
    m2 = json.loads((RUNS / 'scale_w2_0' / 'metrics.json').read_text())
    out['2_workers_same_machine'] = dict(wall_s=round(time.perf_counter() - t0, 2), fit_rows_per_s=round(m2['rows_per_s'], 1),
                                          test_logloss=m2['logloss'])
    out['scaling_2_over_1'] = round(m2['rows_per_s'] / m['rows_per_s'], 3)
    emb = sum(int(np.prod(v.shape)) for v in _embedding_shapes(RUNS / 'scale_w1'))
    out['embedding_params'] = emb
    out['allreduce_bytes_per_step'] = emb * 4      # FusedAdam densifies the embedding gradient: the whole table is all-reduced each step
    log(f"workers: 2 workers {m2['rows_per_s']:.0f} rows/s (x{out['scaling_2_over_1']})")
    return dict(what='one epoch of rtb-dcn train on a shard folder; 2 workers = two processes on this 2-core machine sharing '
                     'its cores (so the ratio measures the all-reduce overhead, not added compute)', rows=rows,
                experiment=experiment, **out)


def _embedding_shapes(run):
    import keras
    import rtb_dcn.layers  # noqa: F401
    m = keras.saving.load_model(Path(run) / 'model.keras')
    return [v for v in m.weights if 'embedding' in v.path]


# Prices are inputs, not measurements (us-east-1 list prices; change them here): EMR Serverless per vCPU-hour and
# per GB-hour, and an m5.4xlarge (16 vCPU, 64 GB) on demand and a typical Spot price for it.
PRICES = dict(emr_serverless_vcpu_h=0.052624, emr_serverless_gb_h=0.0057785, m5_4xlarge_on_demand_h=0.768,
              m5_4xlarge_spot_h=0.30, c5_xlarge_on_demand_h=0.17, c5_xlarge_spot_h=0.07)
TRAIN_WORKERS = 8   # the recipe's training cluster: 8 workers of 4 vCPU (2 cores, the size of the worker measured here)
CRITEO_KAGGLE_ROWS, CRITEO_1TB_ROWS = 45_840_617, 4_373_472_329   # rows of the two public data sets
GZIP_DAY_FILES = 24  # Criteo 1TB ships as day_0.gz .. day_23.gz: a gzip file is one Spark task (it cannot be entered mid-stream)


def recipe(from_rows: int | None = None) -> dict:
    "The full-Criteo and Criteo-1TB recipe from the measured rates at `from_rows` (default: the largest size measured); each derived number carries its inputs."
    enc = json.loads((OUT / 'scale_encode.json').read_text())['results']
    from_rows = from_rows or max(x['rows'] for x in enc)
    if not any(r['rows'] == from_rows for r in enc): raise SystemExit(f"--recipe-rows {from_rows}: no encode run of that size in scale_encode.json")
    wk = json.loads((OUT / 'scale_workers.json').read_text())
    tff = json.loads((OUT / 'train_from_file.json').read_text())
    by = {(r['engine'], r['master']): r for r in enc if r['rows'] == from_rows}
    r1, r2, rl = by[('spark', 'local[1]')], by[('spark', 'local[2]')], by[('local', None)]
    per_core = r1['rows_per_s']                              # Spark rows/s per core, JVM start included (pessimistic)
    eff = r2['rows_per_s'] / (2 * r1['rows_per_s'])         # measured 1 -> 2 core efficiency, assumed to hold per core
    train_rate = tff['after_cache']['fit_rows_per_s']        # DCN_default, one 2-core worker, epochs from the encoded cache
    sh = RUNS / f"scale_train_shards_{wk['rows']}"           # the workers section's shard folder: measured bytes per row
    if (sh / 'manifest.json').exists(): bpr = sum(f.stat().st_size for f in sh.rglob('*.parquet')) / json.loads((sh / 'manifest.json').read_text())['rows']
    elif 'shard_bytes_per_row' in wk: bpr = wk['shard_bytes_per_row']                 # recorded by the workers section
    elif (OUT / 'scale.json').exists(): bpr = json.loads((OUT / 'scale.json').read_text())['recipe']['inputs']['shard_bytes_per_row']   # as measured when the recipe was last made
    else: raise SystemExit(f"{sh}: missing; run --only workers first (it writes the shard folder whose bytes per row the recipe uses)")
    out = dict(inputs=dict(encode_rows=from_rows, spark_rows_per_s_1_core=per_core, spark_rows_per_s_2_cores=r2['rows_per_s'],
                           spark_core_efficiency_2=round(eff, 3), local_arrow_rows_per_s=rl['rows_per_s'],
                           train_rows_per_s_one_2core_worker=train_rate, workers_2_over_1_same_machine=wk['scaling_2_over_1'],
                           embedding_params_measured=wk['embedding_params'], shard_bytes_per_row=round(bpr, 1),
                           peak_rss_mb=dict(local_prepare=rl['peak_rss_mb_driver'], spark_prepare_driver=r2['peak_rss_mb_driver'],
                                            train=tff['after_cache']['peak_rss_mb']), prices_usd=PRICES),
               datasets={})
    for name, rows, cores in (('criteo_kaggle_45M', CRITEO_KAGGLE_ROWS, 32), ('criteo_1tb', CRITEO_1TB_ROWS, 640)):
        enc_h = rows / (per_core * cores * eff) / 3600
        vcpu_h = enc_h * cores
        gb_h = vcpu_h * 4                                    # 4 GB per vCPU (m5 ratio; 16 GB executors of 4 cores)
        m5 = cores / 16
        train_rows = rows * 0.8 * 4                          # 80% train split, 4 epochs (the experiment's cap)
        train_h_1 = train_rows / train_rate / 3600           # one 2-core worker
        # TRAIN_WORKERS 2-core workers, each at the measured 2-core rate, times the measured 2-worker efficiency (pessimistic:
        # measured with both workers on the same 2 cores, so it also counts their contention)
        train_h_c5 = train_rows / (train_rate * TRAIN_WORKERS * wk['scaling_2_over_1']) / 3600
        out['datasets'][name] = dict(rows=rows, prepare_cores=cores, prepare_wall_h=round(enc_h, 2),
            prepare_cost_emr_serverless_usd=round(vcpu_h * PRICES['emr_serverless_vcpu_h'] + gb_h * PRICES['emr_serverless_gb_h'], 2),
            prepare_cost_m5_on_demand_usd=round(enc_h * m5 * PRICES['m5_4xlarge_on_demand_h'], 2),
            prepare_cost_m5_spot_usd=round(enc_h * m5 * PRICES['m5_4xlarge_spot_h'], 2),
            train_rows_x_epochs=int(train_rows), train_wall_h_one_2core_worker=round(train_h_1, 1),
            train_wall_h_8_workers=round(train_h_c5, 1),
            train_cost_c5_on_demand_usd=round(train_h_c5 * TRAIN_WORKERS * PRICES['c5_xlarge_on_demand_h'], 2),
            train_cost_c5_spot_usd=round(train_h_c5 * TRAIN_WORKERS * PRICES['c5_xlarge_spot_h'], 2),
            shard_gb=round(rows * bpr / 1e9, 1),
            prepare_wall_h_gzip_days=round(rows / GZIP_DAY_FILES / per_core / 3600, 1) if name == 'criteo_1tb' else None)   # Kaggle: one plain train.txt
    return out


def write_report(res: dict) -> None:
    enc, wk, rc = res['encode'], res['workers'], res['recipe']
    def by(d):
        m = d['machine']; cmds = [c for c in d.get('commands') or [d['command']] if c]
        return ' and '.join(f"`{c}`" for c in cmds) + f" (the last: load average {m['load_avg_at_start']:.1f} -> {m['load_avg_at_end']:.1f})"
    measured = sorted({r['rows'] for r in enc['results']})
    L = ['# Scale-out: Spark encode, multi-worker training, and the full-Criteo recipe', '',
         f"On {res['machine']['cpus']} shared cores. Encode measured by {by(enc)} on {', '.join(f'{n:,}' for n in measured)} rows "
         f"(the 1-minute load at the start of each run is in the table); workers by {by(wk)}; the recipe also reads "
         "`train_from_file.json`. A busy machine: re-run on a quiet one for cleaner numbers.", '',
         '## Encode (the whole `rtb-dcn prepare`: read, split, fit on train, encode, write zstd Parquet shards)', '',
         '| rows | engine | wall s | rows/s | peak RSS MB (driver) | load at start | Spark stages s (parse / split / fit / encode) |',
         '|---:|---|---:|---:|---:|---:|---|']
    for r in enc['results']:
        st = r.get('stages_s') or {}
        stages = ' / '.join(f"{st[k]:.0f}" for k in ('parse_s', 'split_s', 'fit_s', 'encode_s') if k in st) or '-'
        load = f"{r['load_1m_at_start']:.1f}" if 'load_1m_at_start' in r else '-'
        L.append(f"| {r['rows']:,} | {r['engine']} {r['master'] or '(Arrow, 1 process)'} | {r['wall_s']:.0f} | {r['rows_per_s']:,.0f} "
                 f"| {r['peak_rss_mb_driver']:,.0f} | {load} | {stages} |")
    if enc.get('notes'): L += ['', enc['notes']]     # how a run was made, added to scale_encode.json by hand (e.g. its machine's other load)
    if 20_000_000 not in measured:
        top = [r for r in enc['results'] if r['rows'] == measured[-1]]
        mins = [20e6 / r['rows_per_s'] / 60 for r in top]
        proj = ', '.join(f"{r['engine']} {r['master'] or '(Arrow)'} {m:.0f} min" for r, m in zip(top, mins))
        L += ['', f"20M rows: not run in this session's time box. Projected from the {measured[-1]:,}-row rates: {proj} "
              f"({sum(mins):.0f} min for the three, plus writing a 5 GB synthetic file); `FULL=1` runs them."]
    L += ['', 'The Spark job keeps the rows out of the JVM: Spark schedules one Python task per input range (a plain file in '
          '64 MB byte ranges, a gzip file whole) and stage; the tasks read and write Parquet with pyarrow (local scratch, or '
          'the output prefix on a cluster), and only counts, the per-task value counts (summed by one Spark groupBy), the '
          "dense-sample candidates and the written parts' row counts cross into Spark. Input and output may be s3:// "
          '(pyarrow\'s S3 client; no s3a jars).']
    L += ['', '## Training rows/s, 1 vs 2 workers (MultiWorkerMirroredStrategy, both workers on this 2-core machine)', '',
          f"1 worker: {wk['1_worker']['fit_rows_per_s']:,.0f} rows/s; 2 workers: {wk['2_workers_same_machine']['fit_rows_per_s']:,.0f} rows/s "
          f"(x{wk['scaling_2_over_1']}: the two share the same 2 cores, so this is the all-reduce overhead, not added compute). "
          f"The embedding tables hold {wk['embedding_params']:,} parameters; FusedAdam densifies their gradient, so each step "
          f"all-reduces {wk['allreduce_bytes_per_step'] / 1e6:,.1f} MB.", '',
          '## Recipe', '', '| | full Criteo (Kaggle, 45.8M rows) | Criteo 1TB (4.37B rows) | derived from |', '|---|---:|---:|---|']
    a, b, i = rc['datasets']['criteo_kaggle_45M'], rc['datasets']['criteo_1tb'], rc['inputs']
    rows = [('prepare cores (Spark)', 'prepare_cores', 'chosen: 8 / 160 executors of 4 cores'),
            ('prepare wall hours', 'prepare_wall_h', f"{i['spark_rows_per_s_1_core']:,.0f} rows/s/core x efficiency {i['spark_core_efficiency_2']} (local[1] vs local[2])"),
            ('prepare cost, EMR Serverless $', 'prepare_cost_emr_serverless_usd', 'vCPU-h x $0.0526 + GB-h (4 GB/vCPU) x $0.00578'),
            ('prepare cost, m5.4xlarge on demand $', 'prepare_cost_m5_on_demand_usd', 'cores/16 instances x $0.768/h'),
            ('prepare cost, m5.4xlarge Spot $', 'prepare_cost_m5_spot_usd', 'cores/16 instances x $0.30/h (typical Spot)'),
            ('train rows x epochs', 'train_rows_x_epochs', '80% train split x 4 epochs'),
            ('train hours, one 2-core worker', 'train_wall_h_one_2core_worker', f"{i['train_rows_per_s_one_2core_worker']:,.0f} rows/s (DCN_default, cached epochs)"),
            ('train hours, 8 c5.xlarge workers (MWMS)', 'train_wall_h_8_workers', f"8 x the 2-core rate x {i['workers_2_over_1_same_machine']} (measured 2-worker efficiency)"),
            ('train cost, on demand $', 'train_cost_c5_on_demand_usd', '8 x $0.17/h'),
            ('train cost, Spot $', 'train_cost_c5_spot_usd', '8 x $0.07/h (typical Spot; checkpoints per epoch make restarts cheap)')]
    rows.append(('prepare wall hours if the input stays 24 gzip day files', 'prepare_wall_h_gzip_days',
                 f"one task per gzip file: rows / 24 / {i['spark_rows_per_s_1_core']:,.0f} rows/s (store days plain or re-split into 64 MB objects)"))
    rows.append(('encoded shards GB (zstd Parquet)', 'shard_gb', f"{i['shard_bytes_per_row']} bytes/row measured on the 200k-row shard folder"))
    num = lambda v: '-' if v is None else f'{v:,}'
    for label, k, src in rows: L.append(f"| {label} | {num(a[k])} | {num(b[k])} | {src} |")
    pr = i['peak_rss_mb']
    L += ['', f"Memory per stage (measured peak RSS): local prepare {pr['local_prepare']:,.0f} MB (bounded by the chunk, not the data); "
          f"Spark prepare's launching processes {pr['spark_prepare_driver']:,.0f} MB (the JVM's heap is spark.driver.memory, 2 GB here; executors: 16 GB per 4 cores in the descriptor); "
          f"training {pr['train']:,.0f} MB at 200k rows (grows with the vocabulary: embedding tables + 2 Adam moments, "
          f"12 bytes per parameter).", '',
          'A 1B-row embedding table at width 16 is 16e9 parameters: 64 GB of weights and 192 GB with the Adam moments. '
          'MultiWorkerMirroredStrategy keeps a full copy on every worker and all-reduces the (densified) gradient of the whole table '
          'every step (measured above: the all-reduced bytes equal the table), so it cannot hold or move such a table: parameter-server '
          'training with the tables sharded over servers (`ParameterServerStrategy` + a variable partitioner), where a step pulls and '
          'pushes only the rows its batch touches, or frequency thresholds / hashing that shrink the table, are the way there.', '']
    (OUT / 'scale.md').write_text('\n'.join(L) + '\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', default='train_from_file,encode,workers', help='comma-separated sections: train_from_file, encode, workers, report')
    ap.add_argument('--rows', type=int, default=200_000, help='train_from_file: rows of the benchmark file (--nrows)')
    ap.add_argument('--epochs', type=int, default=3, help='train_from_file: --epochs')
    ap.add_argument('--encode-rows', default='1000000,5000000', help='encode: comma-separated row counts (FULL=1 adds 20000000)')
    ap.add_argument('--add', action='store_true', help='encode: add these sizes to the recorded scale_encode.json instead of replacing it')
    ap.add_argument('--recipe-rows', type=int, default=None, help='report: the encode size whose rates the recipe uses (default: the largest measured)')
    ap.add_argument('--train-rows', type=int, default=200_000, help='workers: rows of the shard folder trained on')
    ap.add_argument('--child-prepare', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_prepare: return _child_prepare(*json.loads(a.child_prepare))
    only = a.only.split(',')
    if 'train_from_file' in only: train_from_file(a.rows, a.epochs)
    out = {}
    if 'encode' in only:
        rows = [int(r) for r in a.encode_rows.split(',')] + ([20_000_000] if os.environ.get('FULL') == '1' else [])
        out['encode'] = encode(rows)
        if a.add and (OUT / 'scale_encode.json').exists():   # keep the recorded runs of other sizes (each keeps its own load figure)
            old = json.loads((OUT / 'scale_encode.json').read_text())
            out['encode']['results'] = [r for r in old['results'] if r['rows'] not in rows] + out['encode']['results']
            out['encode']['results'].sort(key=lambda r: (r['rows'], r['engine'], r['master'] or ''))
            out['encode']['commands'] = [*old.get('commands', [old.get('command')]), command()]
        write_json('scale_encode.json', dict(**out['encode'], command=command(), machine=machine()))
    if 'workers' in only:
        out['workers'] = workers(a.train_rows)
        write_json('scale_workers.json', dict(**out['workers'], command=command(), machine=machine()))
    if 'report' in only or ('encode' in only and 'workers' in only):
        res = dict(encode=json.loads((OUT / 'scale_encode.json').read_text()), workers=json.loads((OUT / 'scale_workers.json').read_text()))
        res.update(recipe=recipe(a.recipe_rows), command=command(), machine=machine())
        write_json('scale.json', res)
        write_report(res)
        log(f"scale: report/benchmarks/scale.md written")


if __name__ == '__main__':
    main()
