"""Point-in-time store features (rtb_dcn.featurestore), one implementation for training and serving: no leakage on a
hand-made log (numbers written out), the state after a log equals a plain recount (and is what `feature-store load`
writes, in process and in Redis), events counted in Redis equal events counted in process, and over HTTP the real
router, reading Redis filled with the events strictly before each logged request and computing at the request's own
time, uses exactly the training features of that row, and answers the offline model's pCTR for it."""
import json, math
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENTS, run_cli
from rtb_dcn.featurestore import (GLOBAL_KEY, NEVER_S, InProcessStore, PointInTimeAggregator, RedisStore, StoreFeatureConfig,
                                  epoch_seconds, feature_keys, key_columns, point_in_time_features, store_features)


def _hand_log():
    "Seven events of two users on two domains: a tie at 09:15, a window edge at 11:00, a user without a domain."
    t = pd.Timestamp("2013-10-20 09:00:00")
    rows = [("09:00", "u", "d1", 1), ("09:15", "u", "d1", 0), ("09:15", "v", "d1", 1), ("10:59:59.999", "u", None, 1),
            ("11:00", "u", "d2", 0), ("11:00", "v", "d1", 0), ("12:30", "w", "d1", 0)]
    return pd.DataFrame({"timestamp": [t.normalize() + pd.Timedelta(h if h.count(":") == 2 else h + ":00") for h, *_ in rows],
                         "user_id": [r[1] for r in rows], "domain": [r[2] for r in rows], "slotid": [None] * len(rows),
                         "label": [r[3] for r in rows]})


def test_point_in_time_by_hand():
    "Every number of a hand-made log, written out: strictly-before, ties unseen, hour buckets, the 1h window's edge."
    df = _hand_log()
    cfg = StoreFeatureConfig("ipinyou", windows=("1h", "all"), prior=0.2, strength=5.0)
    f = point_in_time_features(df, cfg=cfg, chunk_rows=2)
    ctr = lambda k, n: (k + 5 * 0.2) / (n + 5)
    # user u: 09:00 click, 09:15 no click, 10:59:59.999 click, 11:00 (bucket 11: 1h covers buckets 10 and 11)
    u = f[["user_imps_1h", "user_clicks_1h", "user_imps_all", "user_clicks_all", "user_recency_s"]].to_numpy()
    np.testing.assert_array_equal(u[0], [0, 0, 0, 0, NEVER_S])
    np.testing.assert_array_equal(u[1], [1, 1, 1, 1, 900])                   # sees 09:00
    np.testing.assert_array_equal(u[2], [0, 0, 0, 0, NEVER_S])               # v: never seen
    np.testing.assert_allclose(u[3], [2, 1, 2, 1, 6299.999], rtol=1e-9)     # 10:59:59.999 sees 09:00 and 09:15 (1h: buckets 9, 10)
    np.testing.assert_allclose(u[4], [1, 1, 3, 2, 0.001], atol=1e-6)        # 11:00: 1h = buckets 10, 11 -> only 10:59:59.999
    # (float epoch seconds resolve ~0.24 µs in 2013: the 1 ms recency is 0.99993 ms, the same number in training and serving)
    np.testing.assert_array_equal(u[5], [0, 0, 1, 1, 6300])                  # v at 11:00: its 09:15 click is out of 1h, in all
    np.testing.assert_array_equal(u[6], [0, 0, 0, 0, NEVER_S])
    assert f["user_ctr_all"].iloc[4] == ctr(2, 3) and f["user_ctr_1h"].iloc[5] == ctr(0, 0) == 0.2
    # domain d1: 09:00 (click), 09:15 u (no click) and 09:15 v (click) tie, 11:00 v, 12:30 w
    d = f[["domain_imps_1h", "domain_imps_all", "domain_clicks_all", "domain_recency_s"]].to_numpy()
    np.testing.assert_array_equal(d[1], [1, 1, 1, 900])
    np.testing.assert_array_equal(d[2], [1, 1, 1, 900])                      # the tie: the same as row 1, not each other
    np.testing.assert_array_equal(d[3], [0, 0, 0, NEVER_S])                  # no domain: the never-seen values
    np.testing.assert_array_equal(d[4], [0, 0, 0, NEVER_S])                  # d2: never seen
    np.testing.assert_array_equal(d[5], [0, 3, 2, 6300])                     # 11:00: buckets 10, 11 hold no d1 event
    np.testing.assert_array_equal(d[6], [1, 4, 2, 5400])                     # 12:30: 1h = buckets 11, 12 -> the 11:00 event
    assert f["domain_ctr_all"].iloc[6] == ctr(2, 4) and f["slotid_imps_all"].eq(0).all()


def test_one_state_for_training_and_the_store(samples, tmp_path, redis_url):
    """On the real iPinYou sample: the state after point_in_time_features = a plain recount = what `rtb-dcn feature-store
    load` writes to the JSON store and to Redis; served from it at any later time, it gives the features of a row at that time."""
    import redis
    path = samples / "ipinyou/drsa-2259/train.log.txt"
    from rtb_dcn.data import read_dataset
    df = read_dataset(path, "ipinyou")
    cfg = StoreFeatureConfig("ipinyou", prior=5 / 8355)
    agg = PointInTimeAggregator(cfg)
    point_in_time_features(df, agg=agg, chunk_rows=999)
    state = agg.store_items()
    # the recount, row by row
    t = epoch_seconds(df["timestamp"]); b = np.floor(t / 3600).astype(int); last_b = b.max()
    ref = {}
    for i, row in enumerate(df.to_dict("records")):
        for key in feature_keys(row, row["user_id"], "ipinyou"):
            v = ref.setdefault(key, {"imps": 0.0, "clicks": 0.0, "last_ts": -math.inf})
            v["imps"] += 1; v["clicks"] += row["label"]; v["last_ts"] = max(v["last_ts"], t[i])
            if b[i] >= last_b - 24:
                v[f"i:{b[i]}"] = v.get(f"i:{b[i]}", 0.0) + 1
                if row["label"]: v[f"c:{b[i]}"] = v.get(f"c:{b[i]}", 0.0) + 1
    ref[GLOBAL_KEY] = {"imps": 8355.0, "clicks": 5.0, "last_ts": float(t.max())}
    assert state == ref
    out = tmp_path / "f.json"
    r = run_cli("feature-store", "load", "--data", path, "--format", "ipinyou", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert InProcessStore.load(out)._d == state
    url = redis_url.rsplit("/", 1)[0] + "/6"
    redis.Redis.from_url(url).flushdb()
    r = run_cli("feature-store", "load", "--data", path, "--format", "ipinyou", "--store", "redis", "--redis-url", url, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    rs = RedisStore(url, timeout_ms=2000)
    assert rs.get(list(state)) == state
    # a request one hour after the log ends, for the last row's keys: the features a row at that time would get in training
    later = df.iloc[[-1]].assign(timestamp=df.timestamp.max() + pd.Timedelta("1h"), label=0)
    f = point_in_time_features(pd.concat([df, later], ignore_index=True), cfg=cfg).iloc[-1].to_dict()
    keys = [k[0] for k in key_columns(later, "ipinyou").values() if k[0] is not None]
    assert store_features(rs.get(keys), keys, cfg, float(epoch_seconds(later["timestamp"])[0])) == f
    rs.close()


def test_events_in_redis_equal_in_process(redis_url):
    "add_event on Redis (atomic script, one MULTI) and in process: the same values, the same features, the state of the longer log."
    df = _hand_log()
    cfg = StoreFeatureConfig("ipinyou", windows=("1h", "24h", "all"), prior=0.2)
    head, tail = df.iloc[:3], df.iloc[3:]                                    # the tail holds a click and a tie
    whole = PointInTimeAggregator(cfg).absorb(df).store_items()
    mem = InProcessStore(json.loads(json.dumps(PointInTimeAggregator(cfg).absorb(head).store_items())))
    rs = RedisStore(redis_url.rsplit("/", 1)[0] + "/7", timeout_ms=2000)
    rs.client.flushdb()
    rs.put(PointInTimeAggregator(cfg).absorb(head).store_items())
    ts, keys = epoch_seconds(tail["timestamp"]), key_columns(tail, "ipinyou")
    for i in range(len(tail)):
        ks = [k[i] for k in keys.values() if k[i] is not None]
        for st in (mem, rs):
            st.add_event(ks, float(ts[i]), imps=1, clicks=0, keep=cfg.keep)      # the win notice
            if tail["label"].iloc[i]: st.add_event(ks, float(ts[i]), imps=0, clicks=1, keep=cfg.keep)   # its click
    assert rs.get(list(whole)) == mem.get(list(whole)) == whole
    now = float(ts[-1]) + 60
    for ks in (["user:u", "domain:d1"], ["user:w", "domain:d2"]):
        assert store_features(rs.get(ks), ks, cfg, now) == store_features(whole, ks, cfg, now)
    rs.close()


@pytest.fixture(scope="module")
def sf_run(tmp_path_factory):
    "A DCN_test run trained with store features (1 epoch) on 12,000 synthetic iPinYou-shaped rows, exported; its log and features."
    from rtb_dcn.data import read_dataset
    from rtb_dcn.run import train_frame
    from rtb_dcn.synth import write_synth
    from rtb_dcn.train import load_experiment, with_store_features
    d = tmp_path_factory.mktemp("sf_run")
    write_synth(d / "ipy.txt", "ipinyou", rows=12000, seed=11, progress=False)
    df = read_dataset(d / "ipy.txt", "ipinyou")
    cfg = load_experiment(EXPERIMENTS / "dcn_ipinyou.yaml", "DCN_test", epochs=1, store_features=True)
    run = train_frame(df, cfg, d / "run", parity_rows=300)
    frame, scfg = with_store_features(df, cfg)
    return {"run": run, "df": df, "frame": frame, "cfg": scfg}


def test_router_uses_the_training_features_over_http(sf_run, redis_url, start_router, tmp_path):
    """For 20 logged requests (12 of users seen before): Redis holds the state of the events strictly before the request,
    the router (feature_time=request) reads it at the request's ext.rtb_dcn.ts; its bid log's features equal the training
    features of that row (1e-9 relative), and its pCTR the offline model's on the training row (1e-5)."""
    import redis
    from rtb_dcn.openrtb import row_to_bid_request
    run, df, frame, cfg = sf_run["run"], sf_run["df"], sf_run["frame"], sf_run["cfg"]
    assert StoreFeatureConfig.of_spec(run.spec) == cfg                           # the run carries the config training used
    assert [f.name for f in run.spec.dense_fields][1:] == cfg.names
    t = epoch_seconds(df["timestamp"])
    rng = np.random.default_rng(0)
    late = np.arange(len(df) // 3, len(df))
    seen = late[frame["user_imps_all"].to_numpy()[late] > 0]
    rows = np.r_[rng.choice(seen, 12, replace=False), rng.choice(late, 8, replace=False)]
    url = redis_url.rsplit("/", 1)[0] + "/8"
    r = redis.Redis.from_url(url)
    log = tmp_path / "bids.jsonl"
    env = {"RTB_FEATURE_STORE": "redis", "RTB_REDIS_URL": url, "RTB_REDIS_TIMEOUT_MS": 2000, "RTB_FEATURE_TIME": "request",
           "RTB_TMAX_DEFAULT_MS": 5000, "RTB_BID_LOG": log, "RTB_STRATEGY": "lin", "RTB_STRATEGY_PARAM": 300}
    store = RedisStore(url, timeout_ms=2000)
    answered = {}
    with start_router(run.path, env=env) as s:
        for i in rows:
            r.flushdb()
            store.put(PointInTimeAggregator(cfg).absorb(df[t < t[i]]).store_items())
            q = row_to_bid_request(df.iloc[i].to_dict(), "ipinyou")
            assert q["ext"]["rtb_dcn"]["ts"] == t[i]
            resp = s.client.post("/openrtb2/bid", json=q)
            assert resp.status_code in (200, 204), resp.text
            answered[q["id"]] = (i, resp.json()["seatbid"][0]["bid"][0]["ext"]["pctr"] if resp.status_code == 200 else None)
        assert s.metric("rtb_feature_fallbacks_total") == 0
    store.close()
    entries = {e["request_id"]: e for e in map(json.loads, log.read_text().splitlines()) if "features" in e}
    assert set(entries) == set(answered)
    offline = run.score(frame.iloc[rows])
    pctr_of = dict(zip(rows.tolist(), offline.tolist()))
    users_seen = 0
    for rid, (i, resp_pctr) in answered.items():
        got, want = entries[rid]["features"], frame.iloc[i][cfg.names].to_dict()
        assert set(got) == set(want), rid
        for k in want: assert math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-12), (rid, k, got[k], want[k])
        users_seen += got["user_imps_all"] > 0
        assert abs(entries[rid]["pctr"] - pctr_of[i]) <= 1e-5, (rid, entries[rid]["pctr"], pctr_of[i])
        if resp_pctr is not None: assert abs(resp_pctr - pctr_of[i]) <= 1e-5
    assert users_seen >= 12
    assert any(p is not None for _, p in answered.values()), "no bid at all: the response pCTR was never checked"
    # the features matter to the model: the same rows with the never-seen values score differently
    blank = frame.iloc[rows].copy()
    for k in cfg.names: blank[k] = cfg.never_s if k.endswith("_recency_s") else cfg.prior if "_ctr_" in k else 0.0
    assert np.abs(run.score(blank) - offline).max() > 1e-4
