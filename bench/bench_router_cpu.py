"""CPU time per bid request of the router app, driven in-process over ASGI (no sockets, no uvicorn, no load generator):
the most repeatable way on a shared 2-core machine to see what a change to the request path costs.

    .venv/bin/python bench/bench_router_cpu.py [--run artifacts/demo_ipinyou] [--requests 3000] [--rounds 4] [--bid-log on|off] [--features on|off] [--profile 25]

Replays the first 500 rows of the real iPinYou sample as OpenRTB requests through `create_app(settings)` one at a time,
after 50 warm-up requests, and measures `time.process_time()` (every thread of the process: the event loop, the
scorer's executor, the bid log's writer) per request in each round. The bare FastAPI endpoint of bench_router.py
(`rtb_dcn.servers.bare_app`) is driven the same way, interleaved round by round, so the ratio router / bare of the
app's own CPU (without uvicorn's HTTP parsing, which both pay) comes from one run. `--profile N` adds a cProfile round
of the router and records its top N functions by own time. To compare two versions, run it from two git worktrees
with `PYTHONPATH=<worktree>`, interleaved. Writes report/benchmarks/router_cpu.json; prints one line per round.
"""
import argparse, asyncio, json, statistics, sys, tempfile, time
from collections import Counter
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, command, write_json, log


def bodies(n: int = 500) -> list[bytes]:
    from rtb_dcn.config import load_settings
    from rtb_dcn.data import read_dataset
    from rtb_dcn.openrtb import row_to_bid_request
    df = read_dataset(load_settings().samples() / 'ipinyou' / 'drsa-2259' / 'test.log.txt', 'ipinyou').head(n)
    out = []
    for row in df.to_dict('records'):
        r = row_to_bid_request(row, 'ipinyou')
        out.append(json.dumps(r if isinstance(r, dict) else r.model_dump(exclude_none=True)).encode())
    return out


async def call(app, body: bytes) -> int:
    "One POST /openrtb2/bid through the ASGI app; its status."
    scope = {'type': 'http', 'asgi': {'version': '3.0'}, 'http_version': '1.1', 'method': 'POST', 'scheme': 'http',
             'path': '/openrtb2/bid', 'raw_path': b'/openrtb2/bid', 'query_string': b'', 'root_path': '',
             'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(body)).encode())],
             'client': ('127.0.0.1', 1), 'server': ('127.0.0.1', 8080), 'state': {}}
    sent, status = False, {}
    async def receive():
        nonlocal sent
        if not sent:
            sent = True; return {'type': 'http.request', 'body': body, 'more_body': False}
        await asyncio.sleep(3600)
    async def send(m):
        if m['type'] == 'http.response.start': status['code'] = m['status']
    await app(scope, receive, send)
    return status.get('code')


async def one_round(app, reqs: list[bytes], n: int) -> dict:
    codes, t = Counter(), time.process_time()
    for i in range(n): codes[await call(app, reqs[i % len(reqs)])] += 1
    us = (time.process_time() - t) / n * 1e6
    return dict(cpu_us_per_request=round(us, 1), statuses={str(c): v for c, v in codes.items()})


async def measure(apps: dict, reqs: list[bytes], n: int, rounds: int, profile: int = 0) -> dict:
    "Per app: `rounds` rounds of `n` requests, the apps interleaved round by round; with `profile`, a cProfile round of the first."
    from contextlib import AsyncExitStack
    out = {name: [] for name in apps}
    async with AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
            for b in reqs[:50]: await call(app, b)
        for k in range(rounds):
            for name, app in apps.items():
                r = await one_round(app, reqs, n); out[name].append(r)
                log(f"round {k + 1} {name}: {r['cpu_us_per_request']:.0f} us CPU per request; statuses {r['statuses']}")
        if profile:
            import cProfile, pstats
            name, app = next(iter(apps.items()))
            pr = cProfile.Profile(); pr.enable(); await one_round(app, reqs, n); pr.disable()
            st = pstats.Stats(pr); total = st.total_tt
            rows = sorted(((v[2], v[3], v[1], k) for k, v in st.stats.items()), reverse=True)[:profile]   # tottime, cumtime, calls
            out['profile'] = dict(app=name, note='cProfile of one round (its overhead inflates small functions); own time per request',
                                  total_us_per_request=round(total / n * 1e6, 1),
                                  top=[dict(function=f"{Path(f).name}:{ln}:{fn}", own_us=round(tt / n * 1e6, 2),
                                            cum_us=round(ct / n * 1e6, 2), calls_per_request=round(c / n, 2))
                                       for tt, ct, c, (f, ln, fn) in rows])
            for r in out['profile']['top']: log(f"  {r['own_us']:7.2f} us own {r['cum_us']:8.2f} cum {r['calls_per_request']:6.2f}x  {r['function']}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', default=str(ROOT / 'artifacts' / 'demo_ipinyou'), help='exported run folder to serve')
    ap.add_argument('--requests', type=int, default=3000, help='requests per round')
    ap.add_argument('--rounds', type=int, default=4)
    ap.add_argument('--bid-log', default='on', choices=('on', 'off'), help='write the bid log (to a temporary folder)')
    ap.add_argument('--profile', type=int, default=0, help='add a cProfile round of the router; record its top N functions')
    ap.add_argument('--out', default='router_cpu', help='report/benchmarks/<out>.json')
    ap.add_argument('--features', default='on', choices=('on', 'off'),
                    help="on: the in-process feature store bench_router.py serves with (200k rows of the synthetic iPinYou log)")
    a = ap.parse_args()
    from rtb_dcn.config import load_settings
    from rtb_dcn.router import create_app
    from rtb_dcn.servers import bare_app
    tmp = tempfile.mkdtemp(prefix='rtb_dcn-router-cpu-')
    store = {}
    if a.features == 'on':
        from bench_router import synth_log
        from rtb_dcn.featurestore import InProcessStore, load_features
        fs = InProcessStore(); load_features(synth_log(Path(tmp)), 'ipinyou', fs, nrows=200_000)
        store = dict(feature_store='inprocess', feature_store_path=str(fs.save(Path(tmp) / 'features.json')))
    s = load_settings(run_dir=a.run, bid_log=str(Path(tmp) / 'bids.jsonl') if a.bid_log == 'on' else 'off',
                      artifacts_dir=str(Path(a.run).resolve().parent), **store)
    res = asyncio.run(measure({'router': create_app(s), 'bare': bare_app()}, bodies(), a.requests, a.rounds, a.profile))
    med = {k: statistics.median(r['cpu_us_per_request'] for r in res[k]) for k in ('router', 'bare')}
    ratio = round(med['router'] / med['bare'], 2)
    import rtb_dcn, subprocess
    src = Path(rtb_dcn.__file__).parent.parent           # the code measured (a worktree when PYTHONPATH points at one)
    rev = subprocess.run(['git', '-C', str(src), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', str(src), 'status', '--porcelain', '--', 'rtb_dcn'], capture_output=True, text=True).stdout.strip()
    write_json(f'{a.out}.json', dict(command=command(), run=a.run, code_revision=rev + ('+changes' if dirty else ''), bid_log=a.bid_log, features=a.features, requests=a.requests,
                                       what='CPU per request of the ASGI apps alone (no uvicorn, no sockets): the router and the bare FastAPI endpoint, interleaved',
                                       rounds=res['router'], bare_rounds=res['bare'],
                                       median_cpu_us_per_request=med['router'], bare_median_cpu_us_per_request=med['bare'],
                                       router_vs_bare=ratio, profile=res.get('profile')))
    print(f"bench_router_cpu: {a.requests} x {a.rounds} requests, bid log {a.bid_log}: router {med['router']:.0f} us, "
          f"bare {med['bare']:.0f} us CPU per request (median of rounds; {ratio}x)")


if __name__ == '__main__':
    main()
