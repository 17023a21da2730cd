"""Router latency/throughput benchmark -> report/latency_throughput/router.json (+ router_steps.csv, router.png).

    .venv/bin/python bench/bench_router.py                 # the full run (~5-8 minutes on 2 cores)
    .venv/bin/python bench/bench_router.py --step-s 2 --qps 100,400 --only bare,ort,handoff,redis   # a smoke run
    .venv/bin/python bench/bench_router.py --repeat 3 --step-s 4 --qps 400,800,1200,1600,2400 --only bare,ort,redis,kserve,kgrpc,bare2,ort2,redis2
                                                           # the goals' three interleaved repetitions (medians)

Each router variant (VARIANTS: the defaults, every request handed to a thread, state in Redis, ONNX Runtime behind a
KServe-v2 model server; 1 and 2 workers) is ramped next to a bare FastAPI endpoint with the same number of workers IN
THE SAME RUN (with --repeat N, every section once per repetition, interleaved, and medians reported), and reported as ratios to it
(capacity at client p99 <= 10 ms, server CPU per request), with the machine's float32 matmul and Python loop speed
(`machine.calibration`) next to the absolute numbers. Each variant is then run again at half of its capacity to
measure the share of requests over 10 ms server-side.

Every server is a real subprocess on a free 127.0.0.1 port (`rtb-dcn serve ...`, `rtb-dcn model-server ...`, and a
bare FastAPI JSON endpoint served by uvicorn the same way; all started and stopped by rtb_dcn.servers), one at a time.

Load generator: open loop, asyncio (a minimal HTTP/1.1 keep-alive client, see RawClient), on the SAME 2-core machine as the server. Send times follow a fixed-rate
schedule (request i is due at t0 + i/QPS, whatever the earlier answers did); the client latency of a request is
measured from its *scheduled* send time, so generator lag and server queueing both count (no coordinated omission).
Server-side p50/p90/p99 come from the router's own Prometheus histogram `rtb_stage_seconds{stage="total"}`
(handler start -> answer ready): /metrics is scraped before and after each step and the bucket counts differenced,
quantiles interpolated within buckets like PromQL's histogram_quantile. The generator's own CPU use is recorded per
step (it competes with the server for the same 2 cores), as is the load average (the machine may be shared).
"""
from __future__ import annotations
import argparse, asyncio, csv, json, os, platform, re, shlex, shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
from rtb_dcn.config import RtbError
from rtb_dcn.run import Run
from rtb_dcn.servers import Server, router_server, model_server, bare_server, redis_server, free_port   # subprocesses on 127.0.0.1, health-checked

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump_json, small_ipinyou_run, calibration   # JSON with repository-relative paths; the fallback run
OUT = Path(os.environ.get('RTB_BENCH_OUT', ROOT / 'report' / 'latency_throughput'))
P99_GOAL_S = 0.010


def log(*a): print(*a, file=sys.stderr, flush=True)


def command() -> str:
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    return ' '.join(shlex.quote(a) for a in [exe, os.path.relpath(os.path.abspath(sys.argv[0]), ROOT), *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------- servers
def router(name, run: Path, tmp: Path, features: Path | None, **flags) -> Server:
    "`rtb-dcn serve` on `run`, started; bid log and server log in `tmp`; `flags`: serve's options (workers=2, scorer='tf', ...)."
    return router_server(run, name=name, log=tmp, cwd=ROOT, bid_log=tmp / f'bids-{name}.jsonl', features=features, **flags).start()


# ---------------------------------------------------------------------------------------------- server histograms
_LINE = re.compile(r'^([a-zA-Z_:]+)(\{.*\})? ([0-9.eE+-]+|NaN|\+Inf)$')

def scrape(url: str) -> dict:
    "{'buckets': {le: count} of rtb_stage_seconds{stage=total}, 'no_bids': {reason: n}, 'errors': n, 'requests': n}."
    import httpx
    out = {'buckets': {}, 'stages': {}, 'no_bids': {}, 'errors': 0.0, 'requests': 0.0, 'bids': 0.0}
    try: text = httpx.get(url + '/metrics', timeout=5).text
    except httpx.HTTPError: return out
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m: continue
        name, lab, v = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or '')), float(m.group(3))
        if name == 'rtb_stage_seconds_bucket':
            out['stages'].setdefault(lab['stage'], {})[float(lab['le'])] = v
            if lab['stage'] == 'total': out['buckets'][float(lab['le'])] = v
        elif name == 'rtb_no_bids_total': out['no_bids'][lab['reason']] = out['no_bids'].get(lab['reason'], 0) + v
        elif name == 'rtb_errors_total': out['errors'] += v
        elif name == 'rtb_requests_total': out['requests'] += v
        elif name == 'rtb_bids_total': out['bids'] += v
    return out


def hist_quantiles(before: dict, after: dict, qs=(0.5, 0.9, 0.99)) -> dict:
    "Quantiles of the observations between two scrapes of a cumulative Prometheus histogram (histogram_quantile)."
    les = sorted(after['buckets'])
    if not les: return {}
    cum = np.array([after['buckets'][le] - before['buckets'].get(le, 0.0) for le in les])
    n = cum[-1]
    if n <= 0: return {}
    res = {}
    for q in qs:
        rank = q * n
        i = int(np.searchsorted(cum, rank, side='left'))
        if les[i] == float('inf'): res[f'p{round(q * 100)}'] = les[i - 1]; continue
        lo, c_lo = (0.0, 0.0) if i == 0 else (les[i - 1], cum[i - 1])
        res[f'p{round(q * 100)}'] = lo + (les[i] - lo) * ((rank - c_lo) / max(cum[i] - c_lo, 1e-12))
    res['n'] = int(n)
    return res


# ---------------------------------------------------------------------------------------------- load generators
class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (a pool of at most `max_conn` connections).
    The load generator uses it instead of httpx.AsyncClient: on this machine httpx served a bare endpoint 437 req/s
    at ~90% of a core, these ~10 lines 3,431 req/s at ~18% (closed loop, 16 connections), so with httpx the
    generator, not the server, would be measured. httpx still does the control calls (/metrics, /healthz)."""
    def __init__(self, port: int, max_conn: int = 256, timeout: float = 2.0):
        self.port, self.timeout, self.idle, self.retries = port, timeout, [], 0
        self.sem = asyncio.Semaphore(max_conn)
    async def warm(self, n: int):
        for _ in range(n): self.idle.append(await asyncio.open_connection('127.0.0.1', self.port))
    async def _post(self, conn, req: bytes) -> int:
        r, w = conn
        w.write(req)
        head = await r.readuntil(b'\r\n\r\n')
        cl = 0
        for line in head.split(b'\r\n')[1:]:
            if line[:15].lower() == b'content-length:': cl = int(line[15:])
        if cl: await r.readexactly(cl)
        return int(head[9:12])
    async def post(self, req: bytes) -> int:
        "Status of one request (`req`: the full request bytes); 0 on a timeout or a broken connection."
        async with self.sem:
            for attempt in (0, 1):
                conn = self.idle.pop() if self.idle else None
                reused = conn is not None
                try:
                    if conn is None: conn = await asyncio.wait_for(asyncio.open_connection('127.0.0.1', self.port), self.timeout)
                    st = await asyncio.wait_for(self._post(conn, req), self.timeout)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                    if conn is not None: conn[1].close()
                    # a kept-alive connection the server closed while it sat idle (its keep-alive timeout, 5 s) fails
                    # before any byte of an answer: the server never read the request, so it goes once more on a new
                    # connection, as HTTP clients do (counted in `client_retries`; before, these counted as errors)
                    if attempt == 0 and reused and (isinstance(e, (ConnectionResetError, BrokenPipeError))
                                                    or (isinstance(e, asyncio.IncompleteReadError) and not e.partial)):
                        self.retries += 1; continue
                    return 0
                self.idle.append(conn)
                return st
    def close(self):
        for _, w in self.idle: w.close()


def http_request(body: bytes, path: str = '/openrtb2/bid') -> bytes:
    return (f'POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n'
            f'content-length: {len(body)}\r\n\r\n').encode() + body


async def _open_loop(port: int, reqs: list[bytes], qps: float, duration: float, max_conn: int, timeout: float):
    n = max(int(qps * duration), 1)
    lat = np.full(n, np.nan); status = np.zeros(n, np.int32)
    c = RawClient(port, max_conn, timeout)
    await c.warm(min(32, max_conn))
    loop = asyncio.get_running_loop()
    async def one(i, due):
        status[i] = await c.post(reqs[i % len(reqs)])
        lat[i] = loop.time() - due
    t0 = loop.time() + 0.05
    tasks = []
    for i in range(n):
        due = t0 + i / qps
        d = due - loop.time()
        if d > 0: await asyncio.sleep(d)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    wall = loop.time() - t0
    c.close()
    return lat, status, wall, c.retries


async def _closed_loop(port: int, reqs: list[bytes], concurrency: int, duration: float, timeout: float):
    lats, stats = [], []
    c = RawClient(port, concurrency, timeout)
    await c.warm(concurrency)
    loop = asyncio.get_running_loop()
    t_end = loop.time() + duration
    async def worker(k):
        i = k
        while loop.time() < t_end:
            t = loop.time()
            stats.append(await c.post(reqs[i % len(reqs)])); lats.append(loop.time() - t); i += concurrency
    t0 = loop.time()
    await asyncio.gather(*[worker(k) for k in range(concurrency)])
    wall = loop.time() - t0
    c.close()
    return np.array(lats), np.array(stats, np.int32), wall, c.retries


def _summary(lat, status, wall, offered=None) -> dict:
    ok = (status == 200) | (status == 204)
    d = {'sent': int(len(status)), 'completed_per_s': round(len(status) / wall, 1), 'bids_200': int((status == 200).sum()),
         'no_bids_204': int((status == 204).sum()), 'errors': int((~ok).sum()),
         'error_codes': {str(k): int(v) for k, v in zip(*np.unique(status[~ok], return_counts=True))}}
    l = lat[~np.isnan(lat)] * 1000
    if len(l): d.update({f'client_p{q}_ms': round(float(np.percentile(l, q)), 3) for q in (50, 90, 99)}, client_max_ms=round(float(l.max()), 2))
    if offered: d['offered_qps'] = offered
    return d


def run_step(srv: Server, bodies, *, qps=None, concurrency=None, duration=5.0, max_conn=256, timeout=2.0, extra_cpu=()) -> dict:
    "One load step against `srv`: open loop at `qps`, or closed loop with `concurrency` workers."
    before = scrape(srv.url); r0 = srv.cpu_s(); cpu0 = r0 + sum(p.cpu_s() for p in extra_cpu); c0 = time.process_time(); w0 = time.time()
    if qps: lat, status, wall, retries = asyncio.run(_open_loop(srv.port, bodies, qps, duration, max_conn, timeout))
    else: lat, status, wall, retries = asyncio.run(_closed_loop(srv.port, bodies, concurrency, duration, timeout))
    elapsed = time.time() - w0
    after = scrape(srv.url)
    d = {'server': srv.name, **({'qps': qps} if qps else {'concurrency': concurrency}), **_summary(lat, status, wall, qps), 'client_retries': retries}
    sq = hist_quantiles(before, after)
    if sq: d.update({f'server_{k}_ms': round(v * 1000, 3) for k, v in sq.items() if k != 'n'}, server_observed=sq['n'])
    stages = {}
    for st in ('parse', 'features', 'score', 'bid'):
        q = hist_quantiles({'buckets': before['stages'].get(st, {})}, {'buckets': after['stages'].get(st, {})}, (0.5, 0.99))
        if q: stages[st] = {k: round(v * 1000, 3) for k, v in q.items() if k != 'n'}
    if stages: d['server_stage_ms'] = stages
    nb = {k: int(v - before['no_bids'].get(k, 0)) for k, v in after['no_bids'].items() if v - before['no_bids'].get(k, 0) > 0}
    if nb: d['no_bid_reasons'] = nb
    d['late_tmax'] = nb.get('tmax', 0)
    d['server_errors_counted'] = int(after['errors'] - before['errors'])
    r1 = srv.cpu_s(); cpu_s = r1 + sum(p.cpu_s() for p in extra_cpu) - cpu0
    d['server_cpu_pct'] = round(100 * cpu_s / elapsed, 1)
    d['cpu_us_per_request'] = round(cpu_s / max(len(status), 1) * 1e6, 1)   # service demand: server CPU per answered request
    if extra_cpu: d['router_cpu_us_per_request'] = round((r1 - r0) / max(len(status), 1) * 1e6, 1)   # the router alone (remote scorers)
    b0, b1 = before['buckets'], after['buckets']
    n_all = b1.get(float('inf'), 0) - b0.get(float('inf'), 0)
    if n_all > 0 and 0.01 in b1: d['server_over_10ms_pct'] = round(100 * (1 - (b1[0.01] - b0.get(0.01, 0)) / n_all), 3)
    d['client_cpu_pct'] = round(100 * (time.process_time() - c0) / elapsed, 1)
    d['load_avg_1m'] = round(os.getloadavg()[0], 2)
    return d


def good(d: dict, side: str) -> bool:
    "No errors, no late (tmax) no-bids, the whole schedule served, and p99 <= 10 ms on `side` (server|client)."
    p99 = d.get(f'{side}_p99_ms')
    return (d['errors'] == 0 and d['late_tmax'] == 0 and p99 is not None and p99 <= P99_GOAL_S * 1000
            and d['completed_per_s'] >= 0.95 * d.get('offered_qps', 0))


def ramp(srv: Server, bodies, qps_steps, duration, extra_cpu=()) -> list[dict]:
    "Rising QPS until the server saturates (errors, client p50 over 100 ms, or under 90% of the offered rate served)."
    rows = []
    for q in qps_steps:
        d = run_step(srv, bodies, qps=q, duration=duration, extra_cpu=extra_cpu)
        rows.append(d)
        log(f"  {srv.name:>14} {q:>5} qps: served {d['completed_per_s']:>7}/s  client p50/p99 {d.get('client_p50_ms')}/{d.get('client_p99_ms')} ms  "
            f"server p50/p90/p99 {d.get('server_p50_ms')}/{d.get('server_p90_ms')}/{d.get('server_p99_ms')} ms  errors {d['errors']} "
            f"tmax {d['late_tmax']}  cpu srv {d['server_cpu_pct']}% cli {d['client_cpu_pct']}%  load {d['load_avg_1m']}")
        if d['errors'] or (d.get('client_p50_ms') or 1e9) > 100 or d['completed_per_s'] < 0.9 * q: break
        time.sleep(0.5)
    return rows


def best(rows, side) -> int | None:
    ok = [r['qps'] for r in rows if good(r, side)]
    return max(ok) if ok else None


# ---------------------------------------------------------------------------------------------- inputs
def ensure_run(run: str, tmp: Path) -> Path:
    "The exported run folder `run` (found the way every --run is), else a small iPinYou run trained in `tmp`."
    try: return Run(run).require('model.onnx', 'saved_model').path
    except RtbError as e:
        log(f'{e}: training a small iPinYou-shaped DCN first')
        return small_ipinyou_run(tmp)[1]


def request_bodies(log_path: Path, n: int) -> list[bytes]:
    from rtb_dcn.data import read_dataset
    from rtb_dcn.openrtb import row_to_bid_request
    df = read_dataset(log_path, 'ipinyou', nrows=n)
    return [http_request(json.dumps(row_to_bid_request(r, 'ipinyou')).encode()) for r in df.to_dict('records')]


def synth_log(tmp: Path) -> Path:
    found = sorted((ROOT / 'data' / 'synth').glob('ipinyou_*_s*.txt'), key=lambda p: p.stat().st_size)
    if found: return found[0]
    from rtb_dcn.synth import write_synth
    p = tmp / 'ipinyou_20000.txt'; write_synth(p, 'ipinyou', rows=20000, seed=7, progress=False)
    return p


# ---------------------------------------------------------------------------------------------- main
# router variants: name -> (uvicorn workers, what it is, `rtb-dcn serve` flags); each is compared with the bare endpoint
# on the same number of workers. ort*: the defaults (a one-imp request scored by ONNX Runtime on the event loop, larger
# ones micro-batched in a worker thread); handoff*: every request handed to the micro-batcher's thread (the default
# before score_inline_rows); redis*: the defaults with open bids, win stats and budgets in Redis (shared by the workers).
VARIANTS = {
    'ort': (1, 'in-process ORT, one-imp requests on the event loop, state in process', {}),
    'handoff': (1, 'in-process ORT, every request handed to the micro-batcher thread, state in process', {'score_inline_rows': 0}),
    'redis': (1, 'in-process ORT, one-imp requests on the event loop, state in Redis', {'state': 'redis'}),
    'ort2': (2, 'in-process ORT on the event loop, state per process', {'per_worker_state': True}),
    'handoff2': (2, 'in-process ORT handed to the micro-batcher thread, state per process', {'per_worker_state': True, 'score_inline_rows': 0}),
    'redis2': (2, 'in-process ORT on the event loop, state in Redis shared by both workers', {'state': 'redis'}),
    'kserve': (1, 'ONNX Runtime in a separate `rtb-dcn model-server`, called over KServe-v2 REST (CPU of both counted)', {'scorer': 'kserve'}),
    'kgrpc': (1, 'ONNX Runtime in a separate `rtb-dcn model-server`, called over KServe-v2 gRPC (CPU of both counted)', {'scorer': 'kserve_grpc'}),
}


def median_of(runs: list):
    "The element-wise median of the repeats' summaries (dicts of numbers, nested; None where no repeat has a number)."
    first = next((r for r in runs if r is not None), None)
    if isinstance(first, dict):
        return {k: median_of([r.get(k) if isinstance(r, dict) else None for r in runs]) for k in first}
    nums = [r for r in runs if isinstance(r, (int, float)) and not isinstance(r, bool)]
    if not nums: return first
    m = float(np.median(nums))
    return int(m) if all(isinstance(r, int) for r in nums) and m.is_integer() else round(m, 3)


def vs_bare(rows: list[dict], bare_rows: list[dict], r: dict, b: dict) -> dict:
    "Router / bare in the same run: capacity (client p99 <= 10 ms) and CPU per request at the rates both served."
    common = sorted({x['qps'] for x in rows if x.get('cpu_us_per_request')} & {x['qps'] for x in bare_rows if x.get('cpu_us_per_request')})
    cpu = {q: round(next(x for x in rows if x['qps'] == q)['cpu_us_per_request'] / next(x for x in bare_rows if x['qps'] == q)['cpu_us_per_request'], 2)
           for q in common}
    ratio = lambda k: None if not (r.get(k) and b.get(k)) else round(r[k] / b[k], 3)
    out = {'max_qps_client_p99_10ms': ratio('max_qps_client_p99_10ms'), 'max_served_per_s': ratio('max_served_per_s'),
           'cpu_per_request_by_qps': cpu, 'cpu_per_request_median': round(float(np.median(list(cpu.values()))), 3) if cpu else None,
           'goals': {'max_qps_client_p99_10ms': '>= 0.5', 'cpu_per_request': '<= 2'}}
    if any('router_cpu_us_per_request' in x for x in rows):   # a remote scorer: the router's own CPU, without the model server's
        rc = {q: round(next(x for x in rows if x['qps'] == q)['router_cpu_us_per_request'] / next(x for x in bare_rows if x['qps'] == q)['cpu_us_per_request'], 2)
              for q in common if next(x for x in rows if x['qps'] == q).get('router_cpu_us_per_request')}
        out['router_only_cpu_per_request_by_qps'] = rc
        out['router_only_cpu_per_request_median'] = round(float(np.median(list(rc.values()))), 3) if rc else None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--run', default=str(ROOT / 'artifacts' / 'demo_ipinyou'), help='exported run folder to serve')
    ap.add_argument('--qps', default='100,200,400,800,1200,1600,2400', help='open-loop rates of the ramp')
    ap.add_argument('--backend-qps', default='200,400,800,1200,1600', help='ramp of the TF / KServe backends')
    ap.add_argument('--step-s', type=float, default=5.0, help='seconds per load step')
    ap.add_argument('--concurrency', type=int, default=64, help='closed-loop concurrency of the micro-batching comparison')
    ap.add_argument('--repeat', type=int, default=1, help='interleaved repetitions of the bare/router sections (medians reported; the goals ask for 3)')
    ap.add_argument('--only', default='bare,ort,handoff,redis,kserve,bare2,ort2,handoff2,redis2,batching,tf',
                    help=f"which parts to run: bare, bare2 (2 uvicorn workers), router variants {', '.join(VARIANTS)}, batching, tf, kserve")
    a = ap.parse_args()
    t_start = time.time()
    parts = set(a.only.split(','))
    qps = [int(x) for x in a.qps.split(',')]; bqps = [int(x) for x in a.backend_qps.split(',')]
    tmp = Path(tempfile.mkdtemp(prefix='bench_router_'))
    OUT.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    run = ensure_run(a.run, tmp)
    data = synth_log(tmp)
    bodies = request_bodies(data, 3000)
    from rtb_dcn.featurestore import InProcessStore, load_features
    store = InProcessStore(); load_features(data, 'ipinyou', store, nrows=200_000)
    features = store.save(tmp / 'features.json')
    log(f'run {run}; {len(bodies)} requests from {data}; feature store {len(store)} keys; load avg {load0}')
    res = {'command': command(), 'what': 'rtb-dcn serve (uvicorn; 1 worker unless a section says 2) under an open-loop load; see method',
           'method': __doc__.split('\n\n', 2)[2].strip(),
           'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(), 'load_avg_at_start': [round(x, 2) for x in load0],
                       'calibration': calibration(),
                       'when': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'shared': 'the machine runs other jobs; see load_avg_1m per step'},
           'run': str(run), 'requests_from': str(data), 'step_s': a.step_s, 'p99_goal_ms': P99_GOAL_S * 1000,
           'criterion': 'a step is good when errors == 0, no tmax no-bids, >= 95% of the offered rate served and p99 <= 10 ms',
           'steps': []}
    steps, top = res['steps'], res
    def add(section, rows, rep=0):
        for r in rows: r['section'], r['repeat'] = section, rep + 1
        steps.extend(rows)
        return rows
    try:
        def summary(rows, server_side=True) -> dict:
            out = {'max_qps_server_p99_10ms': best(rows, 'server')} if server_side else {}
            return {**out, 'max_qps_client_p99_10ms': best(rows, 'client'), 'max_served_per_s': max(r['completed_per_s'] for r in rows)}
        # every router variant next to the bare endpoint with the same number of uvicorn workers, in this one run: the
        # ratios (router / bare) are what holds on another machine; the absolute numbers go with `machine.calibration`
        def variant(v, w, flags, name):
            "The router of variant `v` (started), and the model server it calls (kserve) or None."
            ms = None
            if flags.get('scorer') == 'kserve':
                ms = model_server(run, log=tmp, cwd=ROOT).start(); flags = {**flags, 'scorer_url': ms.url}
            elif flags.get('scorer') == 'kserve_grpc':
                gport = free_port()
                ms = model_server(run, log=tmp, cwd=ROOT, grpc_port=gport).start(); flags = {**flags, 'scorer_url': f'127.0.0.1:{gport}'}
            try: return router(name, run, tmp, features, workers=w, **flags), ms
            except BaseException:
                if ms is not None: ms.stop()
                raise

        def one_pass(res: dict, rep: int):
            for w in (1, 2):
                bare_key, bare_sec = ('bare', 'bare') if w == 1 else ('bare2', f'bare_{w}w')
                if bare_key in parts:
                    s = bare_server(w, log=tmp, cwd=ROOT).start()
                    try: rows = add(bare_sec, ramp(s, bodies, qps + [3200, 4800], a.step_s), rep)
                    finally: s.stop()
                    res['bare_fastapi' + ('' if w == 1 else '_2_workers')] = summary(rows, server_side=False)
                for v, (vw, label, flags) in VARIANTS.items():
                    if v not in parts or vw != w: continue
                    flags = {**flags, **({'redis_url': redis.url} if flags.get('state') == 'redis' else {})}
                    s, ms = variant(v, w, flags, f'router-{v}')
                    extra = (ms,) if ms is not None else ()
                    log(f'router {v} ({label}) up in {s.start_s:.1f}s')
                    try: rows = add(f'ramp_{v}', ramp(s, bodies, qps + ([] if w == 1 else [3200]), a.step_s, extra_cpu=extra), rep)
                    finally:
                        s.stop()
                        if ms is not None: ms.stop()
                    res[f'router_{v}'] = summary(rows)
                    # the share of requests over 10 ms server-side at half of this variant's capacity
                    cap = res[f'router_{v}']['max_qps_server_p99_10ms'] or res[f'router_{v}']['max_served_per_s']
                    hs, ms = variant(v, w, flags, f'router-{v}-half')
                    try: half = run_step(hs, bodies, qps=max(50, int(cap / 2)), duration=max(a.step_s * 2, 10), extra_cpu=(ms,) if ms else ())
                    finally:
                        hs.stop()
                        if ms is not None: ms.stop()
                    res[f'router_{v}']['at_half_capacity'] = {k: half.get(k) for k in ('qps', 'server_over_10ms_pct', 'server_p99_ms', 'client_p99_ms',
                                                                                      'server_stage_ms', 'cpu_us_per_request', 'errors')}
                    add(f'half_{v}', [half], rep)
                    b = res.get('bare_fastapi' + ('' if w == 1 else '_2_workers'))
                    if b: res[f'router_{v}']['vs_bare'] = vs_bare(rows, [r for r in steps if r['section'] == bare_sec and r['repeat'] == rep + 1],
                                                                   res[f'router_{v}'], b)
            for v, base in (('redis', 'ort'), ('redis2', 'ort2')):     # in this repetition: Redis state vs in-process, same workers
                if f'router_{v}' in res and f'router_{base}' in res:
                    r, o = res[f'router_{v}'], res[f'router_{base}']
                    ratio = lambda x, y: None if not (x and y) else round(x / y, 3)
                    res[f'shared_state_cost_{v}'] = {
                        'redis_vs_inprocess_max_qps_server_p99_10ms': ratio(r['max_qps_server_p99_10ms'], o['max_qps_server_p99_10ms']),
                        'redis_vs_inprocess_max_qps_client_p99_10ms': ratio(r['max_qps_client_p99_10ms'], o['max_qps_client_p99_10ms']),
                        'redis_vs_inprocess_cpu_per_request': ratio((r.get('vs_bare') or {}).get('cpu_per_request_median'),
                                                                    (o.get('vs_bare') or {}).get('cpu_per_request_median')),
                        'goal': '>= 0.85 (the shared state costs at most 15% of the in-process throughput)'}

        redis = None
        if any(VARIANTS[v][2].get('state') == 'redis' for v in parts if v in VARIANTS):
            redis = redis_server(log=tmp).start(); log(f'redis-server for --state redis at {redis.url}')
        repeats = []
        try:
            for rep in range(a.repeat):       # interleaved: every section once per repetition, so a slow spell hits all of them
                log(f'--- repetition {rep + 1}/{a.repeat}')
                repeats.append({})
                one_pass(repeats[-1], rep)
        finally:
            if redis is not None: redis.stop()
            for k in dict.fromkeys(k for r in repeats for k in r):    # the medians over the repetitions, under the keys of one
                res[k] = median_of([r.get(k) for r in repeats])
            if a.repeat > 1: res['repeats'] = repeats
        if 'batching' in parts:
            res['micro_batching'] = {}
            for mb in ('on', 'off'):
                s = router(f'router-mb-{mb}', run, tmp, features, micro_batching=mb, score_inline_rows=0)   # the batcher sees every request
                try:
                    d = add('batching', [run_step(s, bodies, concurrency=a.concurrency, duration=a.step_s)])[0]
                    d['micro_batching'] = mb
                finally: s.stop()
                log(f"  micro-batching {mb}: {d['completed_per_s']}/s at concurrency {a.concurrency}, client p50/p99 {d.get('client_p50_ms')}/"
                    f"{d.get('client_p99_ms')} ms, server p99 {d.get('server_p99_ms')} ms, errors {d['errors']}")
                res['micro_batching'][mb] = {k: d.get(k) for k in ('completed_per_s', 'client_p50_ms', 'client_p99_ms', 'server_p50_ms',
                                                                  'server_p99_ms', 'errors', 'late_tmax', 'server_cpu_pct')}
        res['backends'] = {}
        if 'ort' in parts: res['backends']['onnx (in-process ORT)'] = res['router_ort']
        if 'tf' in parts:
            s = router('router-tf', run, tmp, features, scorer='tf')
            log(f'router (TF SavedModel) up in {s.start_s:.1f}s')
            try: rows = add('backend_tf', ramp(s, bodies, bqps, a.step_s))
            finally: s.stop()
            res['backends']['tf (in-process SavedModel)'] = summary(rows)
        if 'router_kserve' in res:
            res['backends']['kserve (remote rtb-dcn model-server over HTTP)'] = {**res['router_kserve'], 'note': 'server CPU counts router + model server'}
        if 'router_kgrpc' in res:
            res['backends']['kserve_grpc (remote rtb-dcn model-server over gRPC)'] = {**res['router_kgrpc'], 'note': 'server CPU counts router + model server'}
    finally:
        res['load_avg_at_end'] = [round(x, 2) for x in os.getloadavg()]
        res['seconds'] = round(time.time() - t_start, 1)
        dump_json(OUT / 'router.json', res)
        cols = ['section', 'server', 'qps', 'concurrency', 'micro_batching', 'offered_qps', 'completed_per_s', 'sent', 'bids_200', 'no_bids_204',
                'errors', 'late_tmax', 'client_p50_ms', 'client_p90_ms', 'client_p99_ms', 'client_max_ms', 'server_p50_ms', 'server_p90_ms',
                'server_p99_ms', 'server_cpu_pct', 'client_cpu_pct', 'load_avg_1m']
        with open(OUT / 'router_steps.csv', 'w', newline='') as f:
            w = csv.DictWriter(f, cols, extrasaction='ignore'); w.writeheader(); w.writerows(steps)
        try: plot(steps, OUT / 'router.png')
        except Exception as e: log(f'plot failed: {e}')
        shutil.rmtree(tmp, ignore_errors=True)
    parts_ = [f"{v}: client-p99<=10ms QPS {res[f'router_{v}'].get('max_qps_client_p99_10ms')}"
              + (f" ({res[f'router_{v}']['vs_bare']['max_qps_client_p99_10ms']}x bare, CPU/request {res[f'router_{v}']['vs_bare']['cpu_per_request_median']}x)"
                 if 'vs_bare' in res[f'router_{v}'] else '') for v in VARIANTS if f'router_{v}' in res]
    print(f"bench_router: {'; '.join(parts_) or 'no router variant run'}; bare: {res.get('bare_fastapi', {}).get('max_qps_client_p99_10ms')}; "
          f"{res['seconds']:.0f}s -> {OUT / 'router.json'}")


def plot(steps, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for srv in dict.fromkeys(r['server'] for r in steps if r.get('qps')):
        rows = [r for r in steps if r['server'] == srv and r.get('qps')]
        x = [r['qps'] for r in rows]
        axes[0].plot(x, [r.get('client_p99_ms') for r in rows], 'o-', label=f'{srv} client p99')
        if any(r.get('server_p99_ms') is not None for r in rows):
            axes[0].plot(x, [r.get('server_p99_ms') for r in rows], 's--', label=f'{srv} server p99')
        axes[1].plot(x, [r['completed_per_s'] for r in rows], 'o-', label=srv)
    axes[0].axhline(10, color='grey', lw=0.8); axes[0].set_yscale('log'); axes[0].set_xlabel('offered QPS (open loop)'); axes[0].set_ylabel('ms')
    axes[0].set_title('p99 latency (10 ms line)'); axes[0].legend(fontsize=6)
    axes[1].set_xlabel('offered QPS'); axes[1].set_ylabel('served / s'); axes[1].set_title('throughput'); axes[1].legend(fontsize=7)
    fig.tight_layout(); fig.savefig(path, dpi=90)


if __name__ == '__main__':
    main()
