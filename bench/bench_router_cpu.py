"""CPU time per bid request of the router app, driven in-process over ASGI (no sockets, no uvicorn, no load generator):
the most repeatable way on a shared 2-core machine to see what a change to the request path costs.

    .venv/bin/python bench/bench_router_cpu.py [--run artifacts/demo_ipinyou] [--requests 3000] [--rounds 4] [--bid-log on|off]

Replays the first 500 rows of the real iPinYou sample as OpenRTB requests through `create_app(settings)` one at a time,
after 50 warm-up requests, and measures `time.process_time()` (every thread of the process: the event loop, the
scorer's executor, the bid log's writer) per request in each round. To compare two versions, run it from two git
worktrees with `PYTHONPATH=<worktree>`, interleaved. Writes report/benchmarks/router_cpu.json; prints one line per round.
"""
import argparse, asyncio, json, sys, tempfile, time
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


async def measure(app, reqs: list[bytes], n: int, rounds: int) -> list[dict]:
    out = []
    async with app.router.lifespan_context(app):
        for b in reqs[:50]: await call(app, b)
        for k in range(rounds):
            codes, t = Counter(), time.process_time()
            for i in range(n): codes[await call(app, reqs[i % len(reqs)])] += 1
            us = (time.process_time() - t) / n * 1e6
            log(f"round {k + 1}: {us:.0f} us CPU per request; statuses {dict(codes)}")
            out.append(dict(cpu_us_per_request=round(us, 1), statuses={str(c): v for c, v in codes.items()}))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', default=str(ROOT / 'artifacts' / 'demo_ipinyou'), help='exported run folder to serve')
    ap.add_argument('--requests', type=int, default=3000, help='requests per round')
    ap.add_argument('--rounds', type=int, default=4)
    ap.add_argument('--bid-log', default='on', choices=('on', 'off'), help='write the bid log (to a temporary folder)')
    a = ap.parse_args()
    from rtb_dcn.config import load_settings
    from rtb_dcn.router import create_app
    tmp = tempfile.mkdtemp(prefix='rtb_dcn-router-cpu-')
    s = load_settings(run_dir=a.run, bid_log=str(Path(tmp) / 'bids.jsonl') if a.bid_log == 'on' else 'off',
                      artifacts_dir=str(Path(a.run).resolve().parent))
    res = asyncio.run(measure(create_app(s), bodies(), a.requests, a.rounds))
    best = min(r['cpu_us_per_request'] for r in res)
    write_json('router_cpu.json', dict(command=command(), run=a.run, bid_log=a.bid_log, requests=a.requests, rounds=res,
                                       best_cpu_us_per_request=best))
    print(f"bench_router_cpu: {a.requests} x {a.rounds} requests, bid log {a.bid_log}: best {best:.0f} us CPU per request")


if __name__ == '__main__':
    main()
