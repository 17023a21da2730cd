"""The bidding router as a user runs it: a real uvicorn server (subprocess) and a real redis-server on 127.0.0.1,
driven over HTTP. Every failure behaviour of the router issue is a test here: 400s naming the field, 413, tmax ->
204, Redis down under load -> defaults + degraded + counted, then recovery; scorer down -> 204 counted; reload under
load -> zero failed requests, broken run refused, 403 without the token."""
import json, threading, time
import httpx
import pytest

TOKEN = "test-token-1"


@pytest.fixture(scope="session")
def server(runs, redis_server, start_router, tmp_path_factory):
    "The router on the run, with the Redis feature store filled from the log, an admin token and a 4 KiB body limit."
    from rtb_dcn.featurestore import RedisStore, load_features
    load_features(runs["data"], "ipinyou", RedisStore(redis_server.url, timeout_ms=2000))
    tmp = tmp_path_factory.mktemp("router_server")
    s = start_router(runs["run"], env={"RTB_FEATURE_STORE": "redis", "RTB_REDIS_URL": redis_server.url,
                     "RTB_REDIS_TIMEOUT_MS": 20, "RTB_ADMIN_TOKEN": TOKEN, "RTB_MAX_BODY_BYTES": 4096, "RTB_ARTIFACTS_DIR": runs["dir"],
                     "RTB_BID_LOG": tmp / "bids.jsonl", "RTB_BID_LOG_MAX_BYTES": 200_000, "RTB_STRATEGY": "lin",
                     "RTB_STRATEGY_PARAM": 300, "RTB_TMAX_DEFAULT_MS": 2000})
    s.bid_log = tmp / "bids.jsonl"
    yield s
    s.stop()


def _load(server, reqs, n_threads=4, per_thread=100, stop=None, pause=0.0):
    "Bounded load from threads; returns the list of (status, no-bid reason or error)."
    out, lock = [], threading.Lock()
    def work(k):
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for i in range(per_thread):
                if stop is not None and stop.is_set(): break
                q = reqs[(k * per_thread + i) % len(reqs)]
                try:
                    r = c.post("/openrtb2/bid", json=q)
                    res = (r.status_code, r.headers.get("X-RTB-No-Bid-Reason") or (r.text[:200] if r.status_code not in (200, 204) else None))
                except httpx.HTTPError as e: res = (0, repr(e))
                with lock: out.append(res)
                if pause: time.sleep(pause)
    ts = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in ts: t.start()
    return ts, out


def test_bids_respect_the_floor(server, requests_):
    n_bid = 0
    for q in requests_[:200]:
        r = server.client.post("/openrtb2/bid", json=q)
        assert r.status_code in (200, 204), r.text
        if r.status_code == 204:
            assert r.headers["X-RTB-No-Bid-Reason"] in ("below_floor", "zero_bid", "budget"); continue
        n_bid += 1
        b = r.json()["seatbid"][0]["bid"][0]
        assert b["price"] >= q["imp"][0].get("bidfloor", 0) and b["impid"] == "1" and r.json()["id"] == q["id"]
        assert 0 <= b["ext"]["pctr"] <= 1 and b["ext"]["arm"] == "default"
    assert n_bid > 100
    q = {**requests_[0], "imp": [{**requests_[0]["imp"][0], "bidfloor": 1e6}]}
    r = server.client.post("/openrtb2/bid", json=q)
    assert (r.status_code, r.headers["X-RTB-No-Bid-Reason"]) == (204, "below_floor")
    # unknown fields are ignored
    r = server.client.post("/openrtb2/bid", json={**requests_[1], "regs": {"coppa": 0}, "source": {"fd": 1}})
    assert r.status_code in (200, 204)
    time.sleep(0.3)
    lines = [json.loads(l) for l in server.bid_log.read_text().splitlines()[-50:]]
    assert {"request_id", "arm", "pctr", "record", "features", "status"} <= set(lines[-1])


@pytest.mark.parametrize("body,field", [
    (b'{"id": "x", "imp": [', "body: not valid JSON"),
    (b'[1, 2]', "body"),
    (json.dumps({"imp": [{"id": "1"}]}).encode(), "id: is missing"),
    (json.dumps({"id": "x"}).encode(), "imp: is missing"),
    (json.dumps({"id": "x", "imp": []}).encode(), "imp: list is invalid"),
    (json.dumps({"id": 12, "imp": [{"id": "1"}]}).encode(), "id: 12 is invalid"),
    (json.dumps({"id": "x", "imp": [{"id": "1"}], "tmax": -5}).encode(), "tmax: -5 is invalid"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "bidfloor": -1}]}).encode(), "imp.0.bidfloor: -1 is invalid"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "bidfloor": "cheap"}]}).encode(), "imp.0.bidfloor: 'cheap' is invalid"),
    (b'{"id": "x", "imp": [{"id": "1", "bidfloor": NaN}]}', "imp.0.bidfloor"),
    (json.dumps({"id": "x", "imp": [{"id": "1", "banner": {"w": "wide"}}]}).encode(), "imp.0.banner.w"),
    (json.dumps({"id": "x", "imp": [{"id": "1"}], "device": {"geo": []}}).encode(), "device.geo"),
], ids=["malformed", "array", "no-id", "no-imp", "empty-imp", "id-type", "neg-tmax", "neg-floor", "floor-type",
        "nan-floor", "banner-type", "geo-type"])
def test_bad_requests_are_400_naming_the_field(server, body, field):
    before = server.metric("rtb_errors_total", type="bad_request")
    r = server.client.post("/openrtb2/bid", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(field), r.json()
    assert "Traceback" not in r.text
    assert server.metric("rtb_errors_total", type="bad_request") == before + 1


def test_body_over_limit_is_413(server, requests_):
    big = {**requests_[0], "ext": {"pad": "x" * 5000}}
    r = server.client.post("/openrtb2/bid", json=big)
    assert r.status_code == 413 and "at most 4096 bytes" in r.json()["error"]
    def chunks():   # no Content-Length: chunked transfer, cut off while streaming
        for _ in range(10): yield b" " * 1000
    r = server.client.post("/openrtb2/bid", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert server.metric("rtb_errors_total", type="body_too_large") >= 2
    assert server.client.post("/openrtb2/bid", json=requests_[0]).status_code in (200, 204)   # still serving


def test_tmax_too_small_is_204_with_reason(server, requests_):
    before = server.metric("rtb_no_bids_total", reason="tmax")
    for q in requests_[:5]:
        r = server.client.post("/openrtb2/bid", json={**q, "tmax": 1})
        assert (r.status_code, r.headers["X-RTB-No-Bid-Reason"]) == (204, "tmax")
    assert server.metric("rtb_no_bids_total", reason="tmax") == before + 5
    assert server.client.post("/openrtb2/bid", json={**requests_[0], "tmax": 500}).status_code in (200, 204)


def test_predict_win_health_metrics_docs(server, requests_):
    from rtb_dcn.openrtb import bid_request_to_record
    recs = [bid_request_to_record(q, fmt="ipinyou") for q in requests_[:4]]
    r = server.client.post("/predict", json={"records": recs})
    assert r.status_code == 200 and len(r.json()["pctr"]) == 4
    assert server.client.post("/predict", json={"records": [{"nope": 1}]}).status_code == 400
    bid = next(r.json() for q in requests_[200:] if (r := server.client.post("/openrtb2/bid", json=q)).status_code == 200)
    b = bid["seatbid"][0]["bid"][0]
    w = server.client.post("/win", json={"id": bid["id"], "impid": b["impid"], "price": b["price"]})
    assert w.status_code == 200 and w.json()["wins"] >= 1 and 0 < w.json()["win_rate"] <= 1 and w.json()["ecpm"] > 0
    assert server.client.post("/win", json={"id": "nope", "price": 1}).status_code == 404
    assert server.client.get("/healthz").json() == {"status": "ok"}
    assert server.client.get("/readyz").json()["status"] == "ready"
    m = server.client.get("/metrics").text
    for name in ("rtb_stage_seconds_bucket", "rtb_pctr_bucket", "rtb_bid_price_bucket", "rtb_requests_total", "rtb_bids_total"):
        assert name in m, name
    for stage in ("parse", "features", "score", "bid", "total"): assert f'stage="{stage}"' in m
    assert "/openrtb2/bid" in server.client.get("/openapi.json").json()["paths"]
    assert server.client.get("/docs").status_code == 200


def test_redis_down_under_load_then_recovers(server, redis_server, requests_):
    stop = threading.Event()
    ts, out = _load(server, requests_, n_threads=3, per_thread=400, stop=stop, pause=0.005)
    time.sleep(0.5)
    redis_server.kill()                     # a crash: no shutdown, the router's pooled connections break
    try:
        time.sleep(1.5)
        ready = server.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded" and ready.json()["feature_store"]["ok"] is False
        assert server.metric("rtb_feature_fallbacks_total") > 0
        assert server.metric("rtb_feature_store_degraded") == 1
    finally:
        redis_server.start()                # back on the same port, empty (the session's other tests use it too)
    time.sleep(1.5)
    stop.set()
    for t in ts: t.join(60)
    bad = [o for o in out if o[0] not in (200, 204)]
    assert not bad, bad[:5]
    assert len(out) > 100 and sum(o[0] == 200 for o in out) > 50
    assert server.client.get("/readyz").json()["status"] == "ready"       # recovered without a restart
    f0 = server.metric("rtb_feature_fallbacks_total")
    for q in requests_[:20]: assert server.client.post("/openrtb2/bid", json=q).status_code in (200, 204)
    assert server.metric("rtb_feature_fallbacks_total") == f0


def test_reload_under_load(server, runs, requests_):
    run0 = server.client.get("/readyz").json()["arms"]["default"]["run"]
    assert server.client.post("/admin/reload", json={"run": str(runs["run2"])}).status_code == 403
    assert server.client.post("/admin/reload", json={"run": str(runs["run2"])}, headers={"Authorization": "Bearer wrong"}).status_code == 403
    stop = threading.Event()
    ts, out = _load(server, requests_, n_threads=3, per_thread=300, stop=stop, pause=0.002)
    time.sleep(0.5)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = server.client.post("/admin/reload", json={"run": str(runs["run2"])}, headers=auth)
    assert r.status_code == 200, r.text
    assert server.client.get("/readyz").json()["arms"]["default"]["run"] == str(runs["run2"])
    r = server.client.post("/admin/reload", json={"run": str(runs["broken"])}, headers=auth)
    assert r.status_code == 400 and "still serving" in r.json()["error"], r.text
    r = server.client.post("/admin/reload", json={"run": str(runs["dir"] / "missing")}, headers=auth)
    assert r.status_code == 400
    time.sleep(0.5)
    r = server.client.post("/admin/reload", json={"run": run0}, headers=auth)
    assert r.status_code == 200
    time.sleep(0.5)
    stop.set()
    for t in ts: t.join(60)
    bad = [o for o in out if o[0] not in (200, 204)]
    assert not bad, bad[:5]
    assert len(out) > 100
    assert server.client.get("/readyz").json()["arms"]["default"]["run"] == run0
    assert server.metric("rtb_reloads_total", result="refused") >= 2 and server.metric("rtb_reloads_total", result="ok") >= 2


def test_scorer_failure_is_204_counted(runs, requests_, start_router, tmp_path):
    "A router scoring through a remote KServe-v2 model server: the model server dies -> 204 no-bids, counted, no 5xx."
    from rtb_dcn.model_server import create_model_server, ServerThread
    ms = ServerThread(create_model_server(runs["run"])).start()
    s = start_router(runs["run"], env={"RTB_SCORER": "kserve", "RTB_SCORER_URL": ms.url, "RTB_SCORER_TIMEOUT_MS": 500,
                     "RTB_FEATURE_STORE": "none", "RTB_MICRO_BATCHING": "false", "RTB_BID_LOG": tmp_path / "b.jsonl",
                     "RTB_TMAX_DEFAULT_MS": 2000})
    try:
        codes = [s.client.post("/openrtb2/bid", json=q).status_code for q in requests_[:20]]
        assert 200 in codes and set(codes) <= {200, 204}
        ms.stop()
        time.sleep(0.3)
        res = [s.client.post("/openrtb2/bid", json=q) for q in requests_[:10]]
        assert [r.status_code for r in res] == [204] * 10
        assert all(r.headers["X-RTB-No-Bid-Reason"].startswith("scorer_") for r in res)
        assert s.metric("rtb_no_bids_total", reason="scorer_unavailable") + s.metric("rtb_no_bids_total", reason="scorer_timeout") == 10
        assert s.metric("rtb_errors_total") >= 10
        assert s.client.post("/predict", json={"records": [{}]}).status_code in (400, 503)
    finally:
        s.stop(); ms.stop()
