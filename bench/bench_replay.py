"""Replayer benchmarks -> report/latency_throughput/replay.json

1. rate accuracy: `replay_stream` at 500 QPS for 30 s against the router (`rtb-dcn serve`, a small trained iPinYou run) on
   127.0.0.1: achieved vs target QPS (the issue's target: within +-2%), latency percentiles, late sends;
2. replayer capacity: steps of fixed QPS against a trivial endpoint (uvicorn, 204 for everything); the highest step
   whose achieved rate is within 2% of the target with < 1% late sends (> 10 ms) is the sustainable rate;
3. stream sinks: records/s of the Redis Streams sink (redis-server) and the Kinesis sink (moto server), `send` in
   batches straight from memory, with the read-back counts.

Usage: .venv/bin/python bench/bench_replay.py [--quick]"""
import argparse, asyncio, json, os, sys, time
from pathlib import Path
from rtb_dcn.config import repo_root
from rtb_dcn.servers import router_server, uvicorn_server, redis_server, moto_server
from rtb_dcn.stream import replay_stream, request_events, summary_line
from rtb_dcn.sinks import HttpSink, RedisStreamSink, KinesisSink, Event

ROOT = repo_root()
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump_json, small_ipinyou_run   # JSON with repository-relative paths; the fallback run
WORK = ROOT / 'data' / 'bench' / 'replay'
OUT = ROOT / 'report' / 'latency_throughput' / 'replay.json'
_ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
_ap.add_argument('--quick', action='store_true', help='shorter steps (a smoke run; numbers not for the report)')
QUICK = _ap.parse_args().quick if __name__ == '__main__' else False
os.environ.update(AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing')

def log(*a): print(*a, file=sys.stderr, flush=True)

def ensure_run() -> tuple[Path, Path]:
    "(log, exported run) under WORK: the small iPinYou run, trained once (bench/_common.small_ipinyou_run)."
    return small_ipinyou_run(WORK, parity_rows=200)

def start_router(run: Path):
    "`rtb-dcn serve` on the run, no feature store, started; (server, bid URL)."
    env = {'RTB_FEATURE_STORE': 'none', 'RTB_BID_LOG': WORK / 'bids.jsonl', 'RTB_TMAX_DEFAULT_MS': 2000, 'RTB_LOG_LEVEL': 'WARNING'}
    srv = router_server(run, health='/healthz', cwd=ROOT, env=env).start()
    return srv, srv.url + '/openrtb2/bid'

def start_trivial():
    "A trivial endpoint (uvicorn, rtb_dcn.servers.no_content_app: 204 for everything), started; (server, URL)."
    srv = uvicorn_server('rtb_dcn.servers:no_content_app', name='trivial').start()
    return srv, srv.url + '/bid'

def pick(s): return {k: s[k] for k in ('target_qps', 'sent', 'offered_qps', 'achieved_qps', 'completed_qps', 'ok', 'failed', 'errors',
                                       'p50_ms', 'p90_ms', 'p99_ms', 'p999_ms', 'max_ms', 'late', 'cap_waits', 'send_lag_p99_ms', 'duration_s')}

async def sink_throughput(sink, events, batch=500):
    await sink.open()
    t = time.perf_counter()
    try:
        await asyncio.gather(*(sink.send(events[i:i + batch]) for i in range(0, len(events), batch)))
    finally: await sink.close()
    return time.perf_counter() - t

def steady_rate(history: Path, users: int) -> float | None:
    "Requests/s once all `users` run: the total-count slope of Locust's stats history (1 s rows), spawn excluded."
    import pandas as pd
    h = pd.read_csv(history)
    h = h[(h['User Count'] >= users) & (h['Total Request Count'] > 0)].drop_duplicates('Timestamp', keep='last')
    if len(h) < 3: return None
    return float((h['Total Request Count'].iloc[-1] - h['Total Request Count'].iloc[0]) / (h['Timestamp'].iloc[-1] - h['Timestamp'].iloc[0]))

def main():
    res = {'command': ' '.join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]), 'when': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
           'cpus': os.cpu_count(), 'load_avg_at_start': os.getloadavg()[0], 'python': sys.version.split()[0]}
    data, run = ensure_run()
    # 1. rate accuracy against the router
    dur = 10 if QUICK else 30
    p, url = start_router(run)
    try:
        replay_stream(data, 'ipinyou', HttpSink(url, concurrency=256, timeout_s=2), qps=50, count=200, loop=True, progress=False)   # warm-up
        s = replay_stream(data, 'ipinyou', HttpSink(url, concurrency=256, timeout_s=2), qps=500, duration=dur, seed=7, loop=True,
                   progress=False, log_path=WORK / 'router_500qps.csv')
        log(summary_line(s))
        res['router_500qps'] = {**pick(s), 'duration': dur, 'rate_error_pct': round(100 * (s['achieved_qps'] / 500 - 1), 3),
                                'within_2pct': abs(s['achieved_qps'] / 500 - 1) <= 0.02, 'load_avg': os.getloadavg()[0]}
    finally: p.stop()
    # 2. replayer capacity against a trivial endpoint
    p, url = start_trivial()
    steps, best = [], None
    try:
        for q in ([500, 1000, 2000] if QUICK else [500, 1000, 2000, 3000, 4000, 6000, 8000, 10000, 12000]):
            s = replay_stream(data, 'ipinyou', HttpSink(url, concurrency=256, timeout_s=2), qps=q, duration=5, loop=True, progress=False)
            ok = abs(s['achieved_qps'] / q - 1) <= 0.02 and s['late'] <= 0.01 * s['sent'] and s['failed'] == 0
            log(f"trivial {q}/s: achieved {s['achieved_qps']}, late {s['late']}, p99 {s['p99_ms']} ms -> {'ok' if ok else 'not sustained'}")
            steps.append({**pick(s), 'sustained': ok})
            if ok: best = q
            elif len(steps) > 1 and not steps[-2]['sustained']: break
        # the same endpoint, same run: Locust's FastHttpUser (rtb-dcn loadtest, a subprocess) at rising offered rates
        from rtb_dcn.loadtest import loadtest
        lsteps, lbest = [], None
        base = url.rsplit('/', 1)[0]
        for q in ([500, 1000] if QUICK else [500, 1000, 2000, 3000, 4000, 6000, 8000, 10000]):
            users = max(8, int(q // 25))          # each user paced at <= 25 req/s (FastHttpUser, constant pacing)
            ls = loadtest(base, 'steady', 'bid', users=users, spawn_rate=users, duration=8, qps=q, out_dir=WORK / 'locust',
                          name=f'trivial_{q}', progress=False)
            got = steady_rate(WORK / 'locust' / f'trivial_{q}_stats_history.csv', users) or 0.0
            ok = abs(got / q - 1) <= 0.02 and not ls.get('failures')
            log(f"locust {q}/s offered, {users} users: {got:.1f} req/s, failures {ls.get('failures')} -> {'ok' if ok else 'not sustained'}")
            lsteps.append({'offered_qps': q, 'users': users, 'requests_per_s': got, 'failures': ls.get('failures'),
                           'p50_ms': ls.get('p50_ms'), 'p99_ms': ls.get('p99_ms'), 'sustained': ok})
            if ok: lbest = q
            elif len(lsteps) > 1 and not lsteps[-2]['sustained']: break
    finally: p.stop()
    res['trivial_endpoint'] = {'steps': steps, 'max_sustained_qps': best, 'criterion': 'achieved within 2% of target, <=1% sends late by >10 ms, no errors',
                               'locust_fasthttpuser': {'steps': lsteps, 'max_sustained_qps': lbest,
                                                       'criterion': 'Locust requests/s (stats-history slope once every user runs) within 2% of the offered rate (users paced), no failures'},
                               'load_avg': os.getloadavg()[0]}
    # 3. stream sinks
    n = 20_000 if QUICK else 50_000
    events = []
    it = request_events(data, 'ipinyou', loop=True)
    while len(events) < n: events += next(it)
    events = events[:n]
    with redis_server() as rs:
        sink = RedisStreamSink(rs.url, 'bench', maxlen=10 * n)
        dt = asyncio.run(sink_throughput(sink, events))
        import redis
        res['redis_streams'] = {'records': n, 'seconds': round(dt, 3), 'records_per_s': round(n / dt), 'acknowledged': sink.stats.acknowledged,
                                'failed': sink.stats.failed, 'read_back': redis.Redis.from_url(rs.url).xlen('bench'), 'batch': 500}
        log('redis streams', res['redis_streams'])
    with moto_server() as moto:
        murl = moto.url
        import boto3
        kc = boto3.client('kinesis', region_name='us-east-1', endpoint_url=murl)
        kc.create_stream(StreamName='bench', ShardCount=4)
        nk = n // 5
        sink = KinesisSink('bench', endpoint_url=murl, threads=1)    # moto loses records under parallel put_records
        dt = asyncio.run(sink_throughput(sink, events[:nk]))
        back = 0
        for sh in kc.list_shards(StreamName='bench')['Shards']:
            itr = kc.get_shard_iterator(StreamName='bench', ShardId=sh['ShardId'], ShardIteratorType='TRIM_HORIZON')['ShardIterator']
            while itr:
                r = kc.get_records(ShardIterator=itr, Limit=10_000); back += len(r['Records'])
                if not r['Records']: break
                itr = r.get('NextShardIterator')
        res['kinesis_moto'] = {'records': nk, 'seconds': round(dt, 3), 'records_per_s': round(nk / dt), 'acknowledged': sink.stats.acknowledged,
                               'failed': sink.stats.failed, 'retried': sink.stats.retried, 'read_back': back, 'shards': 4, 'batch': 500,
                               'note': 'moto server on 127.0.0.1, one put_records at a time (moto drops ~0.3% of records under 8 parallel puts: an emulator race); says nothing about AWS shard limits'}
        log('kinesis', res['kinesis_moto'])
    res['load_avg_at_end'] = os.getloadavg()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    dump_json(OUT, res)
    log(f"wrote {OUT}")

if __name__ == '__main__': main()
