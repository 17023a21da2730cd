"""Inference latency of one exported run: ONNX Runtime (rtb_dcn.export.onnx_session, in-process) vs the TF
SavedModel's serving signature, at batch 1, 32 and 256, on encoded test rows of the benchmark data.

    .venv/bin/python bench/bench_inference.py [--run data/bench/runs/DCN_default] [--calls 2000] [--threads 2]
                                              [--export] [--baseline-onnx OTHER.onnx]

The run folder is exported first (rtb_dcn.export.export_run: saved_model/ + model.onnx + parity.json) when it has
no model.onnx, or always with --export (after a change of the layers' graph). The ONNX graph's node count (and its
op histogram) is recorded: the per-node overhead is what dominates ORT at batch 1. --baseline-onnx also times
another ONNX file of the same model (e.g. an earlier export) with the same session options, in the same rounds. Each (backend, batch) is warmed up, then timed call by call in 20 interleaved rounds (time.perf_counter around one call,
inputs already numpy / tf tensors, output read back to numpy). Both backends use the same number of threads;
ORT is also timed with one intra-op thread and with intra-op spinning off (session.intra_op.allow_spinning=0):
its thread pool spins by default, which costs on a shared, busy CPU.
Read `machine.load_avg_at_start`: on a loaded 2-core host the p99s and the batch-256 numbers are noisy.
Writes report/benchmarks/inference.json; prints a one-line summary.
"""
import argparse, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, NROWS, RUNS, ROOT, ensure_data, command, machine, write_json, log

BATCHES = (1, 32, 256)
ROUNDS = 20        # timing rounds per batch size; in each round every backend is timed in turn
GOAL_SPEEDUP_B1 = 3.0

def timings(f, n, warmup):
    for _ in range(warmup): f()
    ts = np.empty(n)
    for i in range(n):
        t = time.perf_counter(); f(); ts[i] = time.perf_counter() - t
    return ts

def stats(ts, batch):
    ms = ts * 1e3
    return dict(calls=len(ts), median_ms=float(np.median(ms)), p90_ms=float(np.percentile(ms, 90)),
                p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()), rows_per_s=float(batch / np.median(ts)))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', default=str(RUNS / 'DCN_default'), help='trained run folder (model.keras + input_spec.json)')
    ap.add_argument('--calls', type=int, default=2000, help='timed calls per (backend, batch) at batch 1 (fewer at larger batches)')
    ap.add_argument('--threads', type=int, default=2, help='intra-op threads of both backends')
    ap.add_argument('--export', action='store_true', help='re-export saved_model/ and model.onnx even when they exist')
    ap.add_argument('--baseline-onnx', default=None, help='another ONNX file of the same model, timed alongside (ORT, same options)')
    a = ap.parse_args()
    t0 = time.time()
    run = Path(a.run)
    if not (run / 'model.keras').exists():
        raise SystemExit(f"{run}: no model.keras; train it first (bench/bench_models.py) or pass --run")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from rtb_dcn.export import export_run, onnx_session
    from rtb_dcn.features import FeatureSpec
    from rtb_dcn.data import read_dataset
    if a.export or not (run / 'model.onnx').exists() or not (run / 'saved_model').exists():
        log(f"exporting {run}"); export_run(run, progress=True)
    import collections, onnx
    def graph_facts(path):
        nodes = onnx.load(str(path)).graph.node
        return dict(file=str(path), nodes=len(nodes), ops=dict(collections.Counter(n.op_type for n in nodes).most_common()))
    graph = graph_facts(run / 'model.onnx')
    base_graph = graph_facts(a.baseline_onnx) if a.baseline_onnx else None
    log(f"model.onnx: {graph['nodes']} nodes" + (f"; baseline {a.baseline_onnx}: {base_graph['nodes']} nodes" if base_graph else ''))
    spec = FeatureSpec.load(run / 'input_spec.json')
    ensure_data()
    df = read_dataset(DATA, spec.fmt or 'criteo', nrows=NROWS).iloc[-10_000:]   # rows from the test end of the file
    ids, dense = spec.encode(df)
    sess = onnx_session(run / 'model.onnx', threads=a.threads)
    sess1 = onnx_session(run / 'model.onnx', threads=1)      # one thread: no pool to wake (what a busy host favours)
    import onnxruntime as ort                                  # onnx_session's options, intra-op spinning off
    so = ort.SessionOptions(); so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL; so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    sess_ns = ort.InferenceSession(str(run / 'model.onnx'), sess_options=so, providers=['CPUExecutionProvider'])
    sess_base = onnx_session(a.baseline_onnx, threads=a.threads) if a.baseline_onnx else None
    fn = tf.saved_model.load(str(run / 'saved_model')).signatures['serving_default']
    # parity on these rows, so that both backends are known to compute the same thing
    p_ort = sess.run(['pctr'], {'cat_ids': ids[:2048], 'dense': dense[:2048]})[0]
    p_tf = fn(cat_ids=tf.constant(ids[:2048]), dense=tf.constant(dense[:2048]))['pctr'].numpy()
    parity = float(np.abs(p_ort - p_tf).max())
    if sess_base is not None:
        p_base = sess_base.run(['pctr'], {'cat_ids': ids[:2048], 'dense': dense[:2048]})[0]
        base_graph['parity_max_abs_diff'] = float(np.abs(p_base - p_ort).max())
    rows = []
    for b in BATCHES:
        n = max(200, a.calls // (1 if b == 1 else 4 if b == 32 else 10))
        x_ids, x_dense = ids[:b], dense[:b]
        t_ids, t_dense = tf.constant(x_ids), tf.constant(x_dense)
        fns = {'ort': lambda: sess.run(['pctr'], {'cat_ids': x_ids, 'dense': x_dense})[0],
               'ort1': lambda: sess1.run(['pctr'], {'cat_ids': x_ids, 'dense': x_dense})[0],
               'ortns': lambda: sess_ns.run(['pctr'], {'cat_ids': x_ids, 'dense': x_dense})[0],
               # TF from numpy inputs (what a server holding numpy arrays pays) and from ready tf tensors
               'tf': lambda: fn(cat_ids=tf.constant(x_ids), dense=tf.constant(x_dense))['pctr'].numpy(),
               'tft': lambda: fn(cat_ids=t_ids, dense=t_dense)['pctr'].numpy()}
        if sess_base is not None: fns['base'] = lambda: sess_base.run(['pctr'], {'cat_ids': x_ids, 'dense': x_dense})[0]
        ts = {k: [] for k in fns}
        for f in fns.values(): timings(f, 0, 50)                   # warm-up
        for _ in range(ROUNDS):                                     # interleaved rounds: every backend sees the same load
            for k, f in fns.items(): ts[k].append(timings(f, max(1, n // ROUNDS), 2))
        ort_s, ort_1, ort_ns, tf_np, tf_t = (stats(np.concatenate(ts[k]), b) for k in ('ort', 'ort1', 'ortns', 'tf', 'tft'))
        r = dict(batch=b, onnxruntime=ort_s, onnxruntime_1_thread=ort_1, onnxruntime_no_spinning=ort_ns, saved_model=tf_np, saved_model_tf_inputs=tf_t,
                 speedup_median=tf_np['median_ms'] / ort_s['median_ms'], speedup_p99=tf_np['p99_ms'] / ort_s['p99_ms'])
        if sess_base is not None:
            r['onnxruntime_baseline_onnx'] = stats(np.concatenate(ts['base']), b)
            r['speedup_median_baseline_onnx'] = tf_np['median_ms'] / r['onnxruntime_baseline_onnx']['median_ms']
        rows.append(r)
        log(f"batch {b:>3}: ORT median {ort_s['median_ms']:.3f} ms p99 {ort_s['p99_ms']:.3f} ms | SavedModel median "
            f"{tf_np['median_ms']:.3f} ms p99 {tf_np['p99_ms']:.3f} ms | {r['speedup_median']:.1f}x | ORT 1 thread {ort_1['median_ms']:.3f} ms, no spinning {ort_ns['median_ms']:.3f} ms")
    b1 = rows[0]['speedup_median']
    res = dict(command=command(), run=str(run.relative_to(ROOT) if run.is_absolute() and run.is_relative_to(ROOT) else run),
               model=run.name, threads=a.threads, parity_max_abs_diff=parity, onnx_graph=graph, baseline_onnx_graph=base_graph,
               machine=machine(),
               goal=f'ORT >= {GOAL_SPEEDUP_B1:g}x faster than SavedModel at batch 1 (median)', goal_met=bool(b1 >= GOAL_SPEEDUP_B1),
               seconds=time.time() - t0, results=rows)
    out = write_json('inference.json', res)
    print(f"bench_inference: {run.name}: batch 1 ORT {rows[0]['onnxruntime']['median_ms']:.3f} ms vs SavedModel "
          f"{rows[0]['saved_model']['median_ms']:.3f} ms median ({b1:.1f}x, goal >= {GOAL_SPEEDUP_B1:g}x); batch 256 "
          f"{rows[-1]['speedup_median']:.1f}x; {graph['nodes']} ONNX nodes; {a.threads} threads -> {out}")

if __name__ == '__main__':
    main()
