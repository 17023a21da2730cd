"""Scoring backends behind the router under the same open-loop load (issue 18): the router with in-process ONNX Runtime
and TF SavedModel; the router -> the project's model server over REST and gRPC; -> real Triton (PyPI nvidia-pytriton,
Python backend running onnxruntime) with dynamic batching on and off; -> real KServe ModelServer; -> the SageMaker
serving contract (`rtb-dcn sagemaker-serve`, through boto3's sagemaker-runtime client). Each backend gets the same
rising offered QPS (bench_router's open-loop generator and step rules); the result is latency percentiles vs offered
QPS and the highest QPS whose client p99 <= 10 ms, per backend.

    .venv/bin/python bench/bench_backends.py [--run artifacts/demo_ipinyou] [--qps 100,200,400,800] [--duration 4]
        [--backends onnx,tf,rest,grpc,triton,triton_nobatch,kserve,sagemaker]
        [--locust [--locust-qps 200] [--locust-users 4] [--locust-duration 10]]
    -> report/latency_throughput/backends.json, backends.csv, backends.png (one panel per backend)
       (--locust: + backends_locust.csv)

With --locust, each backend also gets the same Locust scenario (`rtb-dcn loadtest`'s steady pacing, closed-loop users)
against the router's /openrtb2/bid, and a remote backend's server is loaded by Locust directly, the way the router's
scorer calls it: KServe-v2 REST (`--endpoint kserve`) and, where it serves gRPC (the model server with --grpc-port,
Triton, KServe), KServe-v2 gRPC `ModelInfer` (`--endpoint kserve_grpc`, the locustfile's KServeGrpcUser).

Triton and KServe need their virtualenvs (`make venv-triton venv-kserve`); a backend whose server cannot start is
recorded as skipped with the reason. The remote backends' model servers run on the same 2-core machine as the router and
the load generator: the comparison is of whole set-ups on one box, not of the servers alone."""
import argparse, csv, json, os, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, command, machine, dump_json, log   # noqa: E402
import bench_router as br                                       # its open-loop generator and step rules (not edited here)

OUT = ROOT / 'report' / 'latency_throughput'
BACKENDS = ['onnx', 'tf', 'rest', 'grpc', 'triton', 'triton_nobatch', 'kserve', 'sagemaker']
LABELS = {'onnx': 'in-process ONNX Runtime', 'tf': 'in-process TF SavedModel', 'rest': 'model server, KServe v2 REST',
          'grpc': 'model server, KServe v2 gRPC', 'triton': 'Triton, dynamic batching', 'triton_nobatch': 'Triton, no batching',
          'kserve': 'KServe ModelServer (REST)', 'sagemaker': 'SageMaker contract container'}
AWS_ENV = {'AWS_ACCESS_KEY_ID': 'test', 'AWS_SECRET_ACCESS_KEY': 'test', 'AWS_DEFAULT_REGION': 'us-east-1'}


def backing_server(kind: str, run: Path, tmp: Path, logs: Path):
    "(server to start or None, router env) for a backend."
    from rtb_dcn import deploy
    from rtb_dcn.servers import Server, free_port, model_server, rtb_dcn_exe
    if kind in ('onnx', 'tf'): return None, {'RTB_SCORER': kind}
    if kind == 'rest':
        s = model_server(run, log=logs)
        return s, {'RTB_SCORER': 'kserve', 'RTB_SCORER_URL': s.url}
    if kind == 'grpc':
        g = free_port()
        s = model_server(run, log=logs, grpc_port=g)
        s.grpc_port = g
        return s, {'RTB_SCORER': 'kserve_grpc', 'RTB_SCORER_URL': f'127.0.0.1:{g}'}
    if kind.startswith('triton'):
        repo = tmp / kind
        deploy.write_triton_repository(run, repo, name=run.name, backend='python', dynamic_batching=(kind == 'triton'), max_queue_delay_us=200)
        s = deploy.triton_server(repo, log=logs, workdir=tmp / f'{kind}_work')
        return s, {'RTB_SCORER': 'kserve', 'RTB_SCORER_URL': s.url}
    if kind == 'kserve':
        s = deploy.kserve_server(run, log=logs, workdir=tmp / 'kserve_work')
        return s, {'RTB_SCORER': 'kserve', 'RTB_SCORER_URL': s.url}
    if kind == 'sagemaker':
        p = free_port()
        s = Server('sagemaker-serve', [rtb_dcn_exe(), 'sagemaker-serve', 'serve', '--run', run, '--host', '127.0.0.1', '--port', p],
                   p, health='/ping', log=logs, timeout_s=120)
        return s, {'RTB_SCORER': 'sagemaker', 'RTB_SCORER_URL': 'rtb-dcn-bench', 'AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME': s.url, **AWS_ENV}
    raise SystemExit(f'--backends: {kind!r} is not a backend; expected some of {", ".join(BACKENDS)}')


def locust_scenarios(kind: str, router, backing, run: Path, data: Path, opts: dict, tmp: Path) -> list[dict]:
    "The Locust scenario against the router (bid) and, for a remote backend, against its server (REST; gRPC where served)."
    from rtb_dcn.loadtest import loadtest
    targets = [('router', router.url, 'bid')]
    if backing is not None and kind != 'sagemaker':
        targets.append(('backend', backing.url, 'kserve'))
        gport = getattr(backing, 'grpc_port', None)
        if gport: targets.append(('backend', f'127.0.0.1:{gport}', 'kserve_grpc'))
    out = []
    for where, url, ep in targets:
        s = loadtest(url, 'steady', ep, data, 'ipinyou', users=opts['users'], spawn_rate=opts['users'], duration=opts['duration'],
                     qps=opts['qps'], run=run, rows=1000, out_dir=tmp / 'locust', name=f'{kind}_{where}_{ep}', progress=False)
        out.append({'target': where, 'endpoint': ep, 'path': s['path'], 'users': s['users'], 'offered_qps': s['offered_qps'],
                    **{k: s[k] for k in ('requests', 'failures', 'p50_ms', 'p90_ms', 'p99_ms')},
                    'rps': None if s['rps'] is None else round(s['rps'], 1), 'max_ms': None if s['max_ms'] is None else round(s['max_ms'], 1)})
        log(f"  locust {where} {ep}: {s['requests']} requests, {s['failures']} failures, {s['rps']} req/s, p50/p99 {s['p50_ms']}/{s['p99_ms']} ms")
    return out


def bench_backend(kind, run, bodies, qps_steps, duration, tmp, logs, locust: dict | None = None, data: Path | None = None) -> dict:
    from rtb_dcn.config import RtbError
    from rtb_dcn.servers import router_server
    try: backing, env = backing_server(kind, run, tmp, logs)
    except RtbError as e: return {'backend': kind, 'label': LABELS[kind], 'skipped': str(e)}
    try:
        if backing is not None:
            backing.start()
            if env['RTB_SCORER'] == 'kserve':                       # the first call (Triton's Python stub, KServe) is slow: not in the router's
                from rtb_dcn.features import FeatureSpec              # start-up check, whose deadline is the scorer timeout
                from rtb_dcn.scoring import KServeScorer
                spec = FeatureSpec.load(run)
                KServeScorer(env['RTB_SCORER_URL'], run.name, timeout_s=60).score(*spec.encode_records([dict.fromkeys([f.name for f in spec.cat_fields] + spec._dense_in)]))
        env = {'RTB_BID_LOG': 'off', 'RTB_FEATURE_STORE': 'none', **env}
        with router_server(run, env=env, log=logs, name=f'router-{kind}') as r:
            ready = r.client.get('/readyz').json()
            if ready.get('status') != 'ready': return {'backend': kind, 'label': LABELS[kind], 'skipped': f'router not ready: {ready}'}
            br.run_step(r, bodies, qps=50, duration=1.0)                # warm-up (connections, first calls)
            rows = br.ramp(r, bodies, qps_steps, duration, extra_cpu=[backing] if backing is not None else ())
            loc = locust_scenarios(kind, r, backing, run, data, locust, tmp) if locust else None
    except RtbError as e: return {'backend': kind, 'label': LABELS[kind], 'skipped': ' '.join(str(e).split())[:300]}
    finally:
        if backing is not None: backing.stop()
    return {'backend': kind, 'label': LABELS[kind], 'steps': rows, 'best_qps_client_p99_le_10ms': br.best(rows, 'client'),
            'best_qps_server_p99_le_10ms': br.best(rows, 'server'), **({'locust': loc} if loc is not None else {})}


def plot(results: list[dict], path: Path):
    "Small multiples: one panel per backend, client p50/p90/p99 (ms, log scale) vs offered QPS, the 10 ms goal dashed."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    done = [r for r in results if r.get('steps')]
    n = len(done); cols = min(4, n); rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, r in zip(axes.flat, done):
        q = [s['qps'] for s in r['steps']]
        for p, style in (('p50', ':'), ('p90', '--'), ('p99', '-')):
            ax.plot(q, [s.get(f'client_{p}_ms') for s in r['steps']], style, marker='o', ms=3, color='C0', label=p)
        ax.axhline(10, color='C3', lw=0.8, ls='--')
        b = r['best_qps_client_p99_le_10ms']
        ax.set_title(f"{r['label']}\nbest {b if b else '-'} QPS at p99 <= 10 ms", fontsize=8.5)
        ax.set_yscale('log'); ax.grid(alpha=0.3)
    for ax in axes.flat[n:]: ax.axis('off')
    for ax in axes[-1]: ax.set_xlabel('offered QPS')
    for ax in axes[:, 0]: ax.set_ylabel('client latency (ms)')
    axes.flat[0].legend(fontsize=7, loc='upper left')
    fig.suptitle('router + scoring backend, open-loop load (one 2-core machine)', fontsize=10)
    fig.text(0.01, 0.005, command(), fontsize=6, family='monospace')
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    fig.savefig(path, dpi=120); plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--run', default='demo_ipinyou', help='exported run folder (artifacts/<run>); a small one is trained if missing')
    ap.add_argument('--qps', default='100,200,400,800,1200', help='offered QPS steps (a backend stops at saturation)')
    ap.add_argument('--duration', type=float, default=4.0, help='seconds per step')
    ap.add_argument('--backends', default=','.join(BACKENDS))
    ap.add_argument('--out', default=str(OUT), help='folder of backends.json, backends.csv, backends.png')
    ap.add_argument('--locust', action='store_true', help='also the Locust scenarios: router /openrtb2/bid; a remote backend over REST and gRPC')
    ap.add_argument('--locust-qps', type=float, default=200.0, help='Locust: offered requests/s over all users')
    ap.add_argument('--locust-users', type=int, default=4, help='Locust: users (each a paced closed loop)')
    ap.add_argument('--locust-duration', type=float, default=10.0, help='Locust: seconds per scenario')
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='bench-backends-'))
    logs = tmp / 'logs'; logs.mkdir()
    run = br.ensure_run(a.run, tmp)
    data = br.synth_log(tmp)
    bodies = br.request_bodies(data, 2000)
    locust = {'qps': a.locust_qps, 'users': a.locust_users, 'duration': a.locust_duration} if a.locust else None
    steps = [int(q) for q in a.qps.split(',')]
    results, t0 = [], time.time()
    for kind in a.backends.split(','):
        log(f'{kind}: {LABELS.get(kind, "?")}')
        results.append(bench_backend(kind, run, bodies, steps, a.duration, tmp, logs, locust, data))
        if results[-1].get('skipped'): log(f"  skipped: {results[-1]['skipped']}")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    doc = {'command': command(), 'what': __doc__.split('\n\n')[0], 'run': str(run), 'qps_steps': steps, 'duration_s': a.duration,
           'minutes': round((time.time() - t0) / 60, 1), 'machine': machine(), **({'locust': locust} if locust else {}), 'results': results}
    dump_json(out / 'backends.json', doc)
    with open(out / 'backends.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['backend', 'offered_qps', 'served_per_s', 'client_p50_ms', 'client_p90_ms', 'client_p99_ms', 'server_p99_ms', 'errors', 'late_tmax', 'cpu_us_per_request'])
        for r in results:
            for s in r.get('steps', []):
                w.writerow([r['backend'], s['qps'], s['completed_per_s'], s.get('client_p50_ms'), s.get('client_p90_ms'), s.get('client_p99_ms'),
                            s.get('server_p99_ms'), s['errors'], s['late_tmax'], s.get('cpu_us_per_request')])
    if locust:
        with open(out / 'backends_locust.csv', 'w', newline='') as f:
            w = csv.writer(f)
            w.writerow(['backend', 'target', 'endpoint', 'users', 'offered_qps', 'requests', 'failures', 'rps', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms'])
            for r in results:
                for s in r.get('locust', []):
                    w.writerow([r['backend'], s['target'], s['endpoint'], s['users'], s['offered_qps'], s['requests'], s['failures'], s['rps'],
                                s['p50_ms'], s['p90_ms'], s['p99_ms'], s['max_ms']])
    plot(results, out / 'backends.png')
    log('best QPS at client p99 <= 10 ms: ' + ', '.join(f"{r['backend']} {r.get('best_qps_client_p99_le_10ms', 'skipped')}" for r in results))
    log(f'-> {out / "backends.json"}, backends.csv, backends.png')


if __name__ == '__main__':
    main()
