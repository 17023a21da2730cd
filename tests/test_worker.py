"""`rtb-dcn stream-worker` as a user runs it (subprocess) against real sources on 127.0.0.1: a moto server (Kinesis),
redis-server (Redis Streams) and the tansu broker (Kafka). For each source: the replayer puts N bid requests on the
stream, a worker is SIGKILLed partway, a second one finishes; every request id is in the output (zero lost) and the
duplicates the worker reports are exactly the duplicates in the output."""
import json, os, signal, subprocess, time
from collections import Counter
from pathlib import Path
import pytest
from conftest import ROOT, BIN
from test_stream import replay, _kinesis, AWS_ENV
from rtb_dcn.servers import free_port

N = 400


def _cmd(*args):
    return [str(BIN / "rtb-dcn"), "stream-worker", *map(str, args)]


def _env():
    return {**os.environ, **AWS_ENV, "TF_CPP_MIN_LOG_LEVEL": "2"}


def worker(*args, timeout=120):
    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env())


def _lines(p: Path) -> int:
    try: return p.read_bytes().count(b"\n")
    except FileNotFoundError: return 0


def want_ids(runs, n=N):
    from rtb_dcn.stream import request_events
    return [e.key for c in request_events(runs["data"], "ipinyou", nrows=n) for e in c]


def kill_and_restart(src_args, runs, tmp_path, n=N, idle_s=3):
    "Worker 1 is SIGKILLed once the output has >= n/3 lines; worker 2 resumes. Returns (summary 2, responses, lines at the kill)."
    out, summ = tmp_path / "out.jsonl", tmp_path / "summary.json"
    common = [*src_args, "--run", runs["run"], "--feature-store", "none", "--tmax-ms", 5000, "--out", out,
              "--batch", 8, "--concurrency", 4, "--checkpoint-every-s", 0.1, "--quiet"]
    log1 = open(tmp_path / "worker1.log", "w")
    p = subprocess.Popen(_cmd(*common, "--idle-timeout-s", 60), cwd=ROOT, env=_env(), stdout=log1, stderr=subprocess.STDOUT)
    try:
        t0 = time.time()
        while _lines(out) < n // 3:
            assert p.poll() is None, (tmp_path / "worker1.log").read_text()[-3000:]
            assert time.time() - t0 < 120, "worker 1 wrote nothing in 120 s"
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None: p.kill(); p.wait()
        log1.close()
    at_kill = _lines(out)
    assert at_kill < n, f"worker 1 finished ({at_kill} lines) before it was killed: nothing was tested"
    r = worker(*common, "--idle-timeout-s", idle_s, "--summary-json", summ)
    assert r.returncode == 0, r.stderr[-3000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("stream-worker: ") and "duplicates" in line and str(summ) in line, r.stdout
    s = json.loads(summ.read_text())
    print(f"\n{src_args[1]}: worker 1 killed at {at_kill} output lines; worker 2: {line}")
    resp = [json.loads(x) for x in out.read_text().splitlines()]      # every line parses: a torn last line was repaired
    return s, resp, at_kill


def check(s, resp, runs, n=N, extra_ids=()):
    ids = Counter(r["id"] for r in resp)
    missing = set(want_ids(runs, n)) | set(extra_ids)
    missing -= set(ids)
    assert not missing, f"{len(missing)} request(s) lost, e.g. {sorted(missing)[:3]}"
    assert set(ids) == set(want_ids(runs, n)) | set(extra_ids)
    assert s["duplicates"] == sum(ids.values()) - len(ids), (s["duplicates"], sum(ids.values()), len(ids))
    assert s["output_before"] + s["consumed"] == len(resp), s
    total = len(set(ids))
    if s["resumed"]: assert s["consumed"] <= total, s                 # started from a checkpoint
    else: assert s["duplicates"] == s["output_before"], s             # killed before its first checkpoint: all redone
    bids = [r for r in resp if r["status"] == 200]
    assert len(bids) > n // 10, Counter(r["status"] for r in resp)
    assert all(0 < r["pctr"] < 1 and r["price"] > 0 and r["arm"] == "default" and r["response"]["id"] == r["id"] for r in bids)
    assert all(r["status"] in (200, 204, 400) for r in resp)
    assert all(r["reason"] for r in resp if r["status"] == 204)
    assert s["bids"] + s["no_bids"] + s["errors"] == s["consumed"] and s["scored"] == s["bids"] + s["no_bids"]
    return ids


# ---------------------------------------------------------------- Kinesis (moto server)
def test_kinesis_worker_killed_and_restarted(moto_url, runs, tmp_path):
    kc = _kinesis(moto_url)
    kc.create_stream(StreamName="wbids", ShardCount=2)
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "kinesis", "--stream", "wbids", "--endpoint-url", moto_url,
               "--qps", 5000, "--count", N, "--concurrency", 1, "--quiet")      # moto loses records under parallel puts
    assert r.returncode == 0, r.stderr[-2000:]
    s, resp, at_kill = kill_and_restart(["--source", "kinesis", "--stream", "wbids", "--endpoint-url", moto_url], runs, tmp_path)
    check(s, resp, runs)
    ck = json.loads((tmp_path / "out.jsonl.checkpoint.json").read_text())
    assert ck["source"] == "kinesis:wbids" and len(ck["shards"]) == 2, ck
    assert {r["position"].split("/")[0] for r in resp} == set(ck["shards"])
    # a third run: nothing new, nothing redone
    r = worker("--source", "kinesis", "--stream", "wbids", "--endpoint-url", moto_url, "--run", runs["run"], "--out", tmp_path / "out.jsonl",
               "--idle-timeout-s", 1, "--quiet", "--summary-json", tmp_path / "s3.json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "s3.json").read_text())["consumed"] == 0


# ---------------------------------------------------------------- Redis Streams
def test_redis_worker_killed_and_restarted(redis_url, runs, tmp_path):
    import redis
    url = redis_url
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "redis", "--redis-url", url, "--stream", "wbids",
               "--qps", 5000, "--count", N, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    rc = redis.Redis.from_url(url)
    rc.xadd("wbids", {"key": "bad-1", "body": b'{"id": "bad-1", "imp": [{"id": "1", "bidfloor": -1}]}'})   # a malformed request
    rc.xadd("wbids", {"key": "bad-2", "body": b"not json at all"})
    s, resp, _ = kill_and_restart(["--source", "redis", "--redis-url", url, "--stream", "wbids", "--group", "g1"], runs, tmp_path)
    check(s, resp, runs, extra_ids=("bad-1", "bad-2"))
    bad = {r["id"]: r for r in resp if r["status"] == 400}
    assert set(bad) == {"bad-1", "bad-2"}, bad
    assert bad["bad-1"]["error"].startswith("imp.0.bidfloor: -1 is invalid") and bad["bad-2"]["error"].startswith("body: not valid JSON"), bad
    assert s["errors"] == sum(1 for r in resp[s["output_before"]:] if r["status"] == 400) and s["error_kinds"].get("http_400") == s["errors"]
    assert rc.xpending("wbids", "g1")["pending"] == 0                   # everything acknowledged


# ---------------------------------------------------------------- Kafka (tansu)
def test_kafka_worker_killed_and_restarted(kafka_bootstrap, runs, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for f in a.create_topics([NewTopic("wbids", 2, 1)]).values(): f.result(10)
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "kafka", "--bootstrap", kafka_bootstrap, "--stream", "wbids",
               "--qps", 5000, "--count", N, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    s, resp, _ = kill_and_restart(["--source", "kafka", "--bootstrap", kafka_bootstrap, "--stream", "wbids", "--group", "g1"], runs, tmp_path)
    check(s, resp, runs)
    r = worker("--source", "kafka", "--bootstrap", kafka_bootstrap, "--stream", "nope", "--run", runs["run"], "--out", tmp_path / "x.jsonl")
    assert r.returncode == 2 and "kafka topic: 'nope' does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---------------------------------------------------------------- bad input
def test_bad_input_is_one_line_exit_2(moto_url, redis_url, runs, tmp_path):
    out = ["--run", runs["run"], "--out", tmp_path / "o.jsonl"]
    cases = [(["--source", "sqs", *out], "source: 'sqs' is not a known source; expected one of kinesis, kafka, redis, file"),
             (["--source", "kinesis", "--stream", "nope", "--endpoint-url", moto_url, *out], "kinesis stream: 'nope' does not exist"),
             (["--source", "redis", "--redis-url", redis_url, "--stream", "nope", *out],
              "redis stream: 'nope' does not exist"),
             (["--source", "redis", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", *out], "is unreachable"),
             (["--source", "file", "--path", tmp_path / "none.jsonl", *out], "path: "),
             (["--source", "file", "--path", runs["data"], "--target", f"http://127.0.0.1:{free_port()}/openrtb2/bid", *out], "is unreachable"),
             (["--source", "file", "--path", runs["data"], "--output", "s3", *out], "output: 's3' is not a known output"),
             (["--source", "file", "--path", runs["data"]], "out: missing")]
    for args, msg in cases:
        r = worker(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
