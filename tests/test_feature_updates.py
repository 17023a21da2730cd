"""Win and click notices update the feature store (settings.feature_updates), against the real router (uvicorn
subprocess) and real redis-servers on 127.0.0.1, over HTTP:

- bid -> win -> click: each store key of the won imp (user, domain, slot) and `__global__` get +1 impression (total, the
  hour bucket of the request's feature time, `last_ts`) and +1 click (total, the same bucket); a duplicate win or
  click, a conversion, an unwon bid change nothing; with `--state local` (one worker) and `--state redis --workers 2`;
- with two workers, a notice answered by the worker that did not make the bid still updates the bid's keys (the keys
  travel with the bid in Redis);
- a feature store that is down does not fail the notice: 200, the failure counted in rtb_feature_updates_total;
- online = offline: logged rows replayed through the router (bid, win, click when the row clicked) into a store filled
  with the other rows leave it equal to the offline point-in-time state of all the rows.
"""
import json, math, time, uuid
import httpx
import pytest
from rtb_dcn.bidflow import imp_records
from rtb_dcn.openrtb import BidRequest
from rtb_dcn.run import Run

BID_CNY = 1.0
BUCKET_S = 3600


def _server(start_router, run, state, store_url, flags=None, **env):
    "The router with a const bid, the feature store in Redis at `store_url`, the request's ts as the feature time."
    e = {"RTB_FEATURE_STORE": "redis", "RTB_REDIS_URL": store_url, "RTB_REDIS_TIMEOUT_MS": 500, "RTB_FEATURE_TIME": "request",
         "RTB_TMAX_DEFAULT_MS": 3000, "RTB_STRATEGY": "const", "RTB_STRATEGY_PARAM": BID_CNY * 100, "RTB_STATE": state,
         "RTB_STATE_TIMEOUT_MS": 500, "RTB_RELOAD_POLL_S": 0.2, **env}
    f = dict(flags or {})
    if state == "redis":      # the bid book next to the store (settings.redis_url), under its own key prefix
        e.setdefault("RTB_STATE_PREFIX", f"fu-{uuid.uuid4().hex[:8]}:")
        f.setdefault("workers", 2)
    return start_router(run, env=e, **f)


def _bodies(requests_, tag, idx):
    "The logged requests `idx` with unique ids and no floors."
    out = []
    for i in idx:
        q = json.loads(json.dumps(requests_[i]))
        q["id"] = f"{tag}-{i}-{uuid.uuid4().hex[:6]}"
        for imp in q["imp"]:
            imp.pop("bidfloor", None); imp.pop("bidfloorcur", None)
        out.append(q)
    return out


def _store(url):
    import redis
    return redis.Redis.from_url(url, decode_responses=True)


def _values(rd, keys) -> dict:
    return {k: {f: float(v) for f, v in rd.hgetall(f"rtb:f:{k}").items()} for k in keys}


def _wait(cond, timeout_s=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond(): return True
        time.sleep(0.05)
    return cond()


def _ref(b, **kw): return {"id": b["rid"], "impid": b["impid"], **kw}


def _bid(client, q):
    r = client.post("/openrtb2/bid", json=q)
    assert r.status_code == 200, (r.status_code, r.headers.get("X-RTB-No-Bid-Reason"), r.text[:200])
    return {**r.json()["seatbid"][0]["bid"][0], "rid": q["id"]}


def _pick(requests_, n):
    "`n` logged requests of distinct users, all within 12 h (so no update prunes another's bucket)."
    seen, out = set(), []
    t0 = requests_[0]["ext"]["rtb_dcn"]["ts"]
    for i, q in enumerate(requests_):
        u, t = q["user"]["id"], q["ext"]["rtb_dcn"]["ts"]
        if u in seen or abs(t - t0) > 12 * 3600: continue
        seen.add(u); out.append(i)
        if len(out) == n: return out
    raise AssertionError(f"only {len(out)} requests of distinct users within 12 h")


def _expect(before, events):
    "The store values after `events` [(keys, ts, imps, clicks)] added to `before` by hand (the offline rule: a row's click in its row's bucket)."
    want = json.loads(json.dumps(before))
    for keys, ts, imps, clicks in events:
        b = math.floor(ts / BUCKET_S)
        for k in [*keys, "__global__"]:
            v = want.setdefault(k, {})
            v["imps"] = v.get("imps", 0.0) + imps
            v["clicks"] = v.get("clicks", 0.0) + clicks
            if k != "__global__":
                if imps: v[f"i:{b}"] = v.get(f"i:{b}", 0.0) + imps
                if clicks: v[f"c:{b}"] = v.get(f"c:{b}", 0.0) + clicks
            if imps: v["last_ts"] = max(v.get("last_ts", -1.0), ts)
    return want


@pytest.mark.parametrize("state", ["local", "redis"])
def test_wins_and_clicks_reach_the_store_once(state, runs, requests_, redis_url, start_router):
    store_url = redis_url.rsplit("/", 1)[0] + ("/10" if state == "local" else "/11")
    rd = _store(store_url); rd.flushdb()
    qs = _bodies(requests_, f"fu-{state}", _pick(requests_, 4))
    # a user seen before, in a bucket 2 h before its request (kept: 24 buckets)
    t_first = qs[0]["ext"]["rtb_dcn"]["ts"]
    b_old = math.floor(t_first / BUCKET_S) - 2
    rd.hset(f"rtb:f:user:{qs[0]['user']['id']}", mapping={"imps": 5, "clicks": 1, "last_ts": t_first - 7200, f"i:{b_old}": 5, f"c:{b_old}": 1})
    keys = [imp_records(BidRequest.model_validate(q), Run(runs["run"]).spec)[1][0] for q in qs]   # what the router books
    assert [sorted(k.split(":", 1)[0] for k in ks) for ks in keys] == [["domain", "slotid", "user"]] * 4, keys
    before = _values(rd, sorted({k for ks in keys for k in ks} | {"__global__"}))
    s = _server(start_router, runs["run"], state, store_url)
    try:
        bids = [_bid(s.client, q) for q in qs]
        post = lambda path, body: httpx.post(s.url + path, json=body, timeout=10)   # fresh connections: any worker
        assert [post("/win", _ref(b, price=b["price"] / 2)).status_code for b in bids[:3]] == [200] * 3
        assert [post("/click", _ref(b)).json()["status"] for b in bids[:2]] == ["click"] * 2
        # duplicates, a conversion, a click on the unwon bid: nothing more reaches the store
        assert [post("/win", _ref(b, price=b["price"] / 2)).status_code for b in bids[:3]] == [409] * 3
        assert [post("/click", _ref(b)).status_code for b in bids[:2]] == [409] * 2
        assert post("/click", _ref(bids[0], type="conversion")).status_code == 200
        assert post("/click", _ref(bids[3])).status_code == 400
        assert _wait(lambda: s.metric("rtb_feature_updates_total", result="ok") >= 5)
        time.sleep(0.3)
        assert s.metric("rtb_feature_updates_total", event="imp", result="ok") == 3
        assert s.metric("rtb_feature_updates_total", event="click", result="ok") == 2
        assert s.metric("rtb_feature_updates_total", result="error") == 0
    finally:
        s.stop()
    ts = [q["ext"]["rtb_dcn"]["ts"] for q in qs]
    want = _expect(before, [(keys[i], ts[i], 1.0, 0.0) for i in range(3)] + [(keys[i], ts[i], 0.0, 1.0) for i in range(2)])
    want = {k: v for k, v in want.items() if v}
    got = _values(rd, sorted(k[len("rtb:f:"):] for k in rd.keys("rtb:f:*")))
    assert got == want                                  # exactly the won imps' events; the unwon bid's keys untouched
    u0 = keys[0][0]
    assert (got[u0]["imps"], got[u0]["clicks"], got[u0][f"i:{b_old}"]) == (6.0, 2.0, 5.0)
    b0 = math.floor(ts[0] / BUCKET_S)
    assert (got[u0][f"i:{b0}"], got[u0][f"c:{b0}"], got[u0]["last_ts"]) == (1.0, 1.0, ts[0])
    assert (got["__global__"]["imps"], got["__global__"]["clicks"]) == (3.0, 2.0)
    rd.close()


def test_a_notice_at_the_other_worker_updates_the_bid_keys(runs, requests_, redis_url, start_router):
    store_url = redis_url.rsplit("/", 1)[0] + "/12"
    rd = _store(store_url); rd.flushdb()
    qs = _bodies(requests_, "fu-x", _pick(requests_, 3))
    s = _server(start_router, runs["run"], "redis", store_url)
    try:
        bidder = s.client.get("/readyz").json()["worker"]            # the kept-alive connection: one worker bids
        bids = [_bid(s.client, q) for q in qs]
        other = None
        for _ in range(100):                                        # a connection to the other worker
            c = httpx.Client(base_url=s.url, timeout=10)
            if c.get("/readyz").json()["worker"] != bidder: other = c; break
            c.close()
        assert other is not None, "no connection reached the second worker"
        for b in bids:
            assert other.post("/win", json=_ref(b, price=b["price"])).status_code == 200
        assert other.post("/click", json=_ref(bids[0])).json()["status"] == "click"
        users = [f"user:{q['user']['id']}" for q in qs]
        count = lambda k, f: float(rd.hget(f"rtb:f:{k}", f) or 0)
        assert _wait(lambda: all(count(u, "imps") == 1 for u in users) and count(users[0], "clicks") == 1), \
            {u: rd.hgetall(f"rtb:f:{u}") for u in users}
        for u, q in zip(users, qs):
            v = rd.hgetall(f"rtb:f:{u}")
            b = math.floor(q["ext"]["rtb_dcn"]["ts"] / BUCKET_S)
            assert float(v[f"i:{b}"]) == 1 and float(v["last_ts"]) == q["ext"]["rtb_dcn"]["ts"], v
        assert float(rd.hget("rtb:f:__global__", "imps")) == 3 and float(rd.hget("rtb:f:__global__", "clicks")) == 1
        other.close()
    finally:
        s.stop()
    rd.close()


def test_a_store_outage_does_not_fail_the_notice(runs, requests_, start_router, server_logs):
    from rtb_dcn.servers import redis_server
    store = redis_server(log=server_logs, name="redis-store").start()
    try:
        s = _server(start_router, runs["run"], "local", store.url)
        try:
            bids = [_bid(s.client, q) for q in _bodies(requests_, "fu-down", _pick(requests_, 3))]
            store.kill()                                             # the store crashes: connections refused
            assert s.client.post("/win", json=_ref(bids[0], price=bids[0]["price"])).status_code == 200
            c = s.client.post("/click", json=_ref(bids[0]))
            assert (c.status_code, c.json()["clicks"]) == (200, 1), c.text
            assert _wait(lambda: s.metric("rtb_feature_updates_total", result="error") == 2)
            assert s.metric("rtb_wins_total") == 1 and s.metric("rtb_clicks_total") == 1
            store.start()                                            # back (empty): the next win reaches it
            assert s.client.post("/win", json=_ref(bids[1], price=bids[1]["price"])).status_code == 200
            assert _wait(lambda: s.metric("rtb_feature_updates_total", event="imp", result="ok") == 1)
            assert float(_store(store.url).hget("rtb:f:__global__", "imps")) == 1
        finally:
            s.stop()
    finally:
        store.stop()


def test_the_online_store_equals_the_offline_state(runs, requests_, redis_url, start_router):
    """Logged rows replayed as the exchange plays them (bid, win, the click when the row clicked; any of two workers),
    into a store filled with the other rows: the store ends equal, key by key and bucket by bucket, to the offline
    point-in-time state (PointInTimeAggregator, the one that makes the training features) of all the rows."""
    import numpy as np
    from rtb_dcn.data import read_dataset
    from rtb_dcn.featurestore import PointInTimeAggregator, RedisStore, StoreFeatureConfig
    df = read_dataset(runs["data"], "ipinyou", nrows=len(requests_))      # requests_[i] is row i
    clicked = np.flatnonzero(df["label"].to_numpy()).tolist()
    assert len(clicked) >= 2, clicked
    online = sorted(set(range(80, 120)) | set(clicked))
    offline = [i for i in range(len(df)) if i not in set(online)]
    cfg = StoreFeatureConfig("ipinyou")
    store_url = redis_url.rsplit("/", 1)[0] + "/13"
    rs = RedisStore(store_url, timeout_ms=2000)
    rs.client.flushdb()
    rs.put(PointInTimeAggregator(cfg).absorb(df.iloc[offline]).store_items())
    s = _server(start_router, runs["run"], "redis", store_url)
    try:
        for i, q in zip(online, _bodies(requests_, "fu-oo", online)):
            b = _bid(s.client, q)
            assert httpx.post(s.url + "/win", json=_ref(b, price=b["price"]), timeout=10).status_code == 200
            if df["label"].iloc[i]:
                assert httpx.post(s.url + "/click", json=_ref(b), timeout=10).json()["status"] == "click"
        n = len(online) + len(clicked)
        assert _wait(lambda: s.metric("rtb_feature_updates_total", result="ok") == n), s.metric("rtb_feature_updates_total")
    finally:
        s.stop()
    want = PointInTimeAggregator(cfg).absorb(df).store_items()
    assert len(rs.client.keys("rtb:f:*")) == len(want)
    assert rs.get(sorted(want)) == want
    rs.close()
