"""Win, click and conversion feedback, and the Redis state's faults, against the real router (uvicorn subprocess) and
a real redis-server on 127.0.0.1, over HTTP:

- a win then a click is counted once per arm (/metrics counters and gauges, the /click answer, the bid log's lines),
  with `--state local` (one worker) and `--state redis --workers 2` (the notices reach any worker);
- refused events change nothing and say why: a duplicate click 409, a click before its win 400, on a lost bid 400, on
  an unknown id 404, after `click_window_s` 409 expired; a negative win price 400 naming `price`;
- Redis down with `state_fallback nobid`: no bids (204 state_unavailable) and /readyz degraded, bidding resumes when
  it returns; with `state_fallback local`: bids go on from the in-process book, and once Redis returns its journal
  is replayed so that every notice reaches its bid from any worker and no spend is counted twice.
"""
import json, os, signal, time, uuid
import httpx
import pytest
from conftest import unfloored_requests

BID_CNY = 1.0            # the const bid (CPM, CNY): 0.001 CNY per imp won at the bid


def _server(start_router, run, state, redis_url=None, flags=None, **env):
    "The router with a const bid of BID_CNY, no feature store; `state` local (one worker) or redis (two workers, own key prefix)."
    e = {"RTB_FEATURE_STORE": "none", "RTB_TMAX_DEFAULT_MS": 2000, "RTB_STRATEGY": "const", "RTB_STRATEGY_PARAM": BID_CNY * 100,
         "RTB_STATE": state, "RTB_STATE_TIMEOUT_MS": 500, "RTB_PACING_WINDOW_S": 1e9, "RTB_PACING_BUDGET": 1.0, "RTB_RELOAD_POLL_S": 0.2, **env}
    f = dict(flags or {})
    if state == "redis":
        e.setdefault("RTB_STATE_PREFIX", f"fb-{uuid.uuid4().hex[:8]}:"); e["RTB_REDIS_URL"] = redis_url
        f.setdefault("workers", 2)
    return start_router(run, env=e, **f)


def _bodies(requests_, tag: str, n: int) -> list[dict]:
    return unfloored_requests(requests_, tag, n, unique=True)


def _post(s, path, body, fresh=True):
    "POST on a fresh connection (any worker may answer) or on the server's kept-alive client (one worker)."
    return httpx.post(s.url + path, json=body, timeout=10) if fresh else s.client.post(path, json=body)


def _bids(s, requests_, tag, n, fresh=True):
    "Bid on `n` requests: the bids (each with its request id under 'rid'); every request must be bid on."
    out = []
    for q in _bodies(requests_, tag, n):
        r = _post(s, "/openrtb2/bid", q, fresh)
        assert r.status_code == 200, (r.status_code, r.headers.get("X-RTB-No-Bid-Reason"), r.text[:200])
        out.append({**r.json()["seatbid"][0]["bid"][0], "rid": q["id"]})
    return out


def _ref(b, **kw): return {"id": b["rid"], "impid": b["impid"], **kw}


@pytest.mark.parametrize("state", ["local", "redis"])
def test_wins_and_clicks_are_counted_once_per_arm(state, runs, requests_, redis_url, start_router, tmp_path):
    log = tmp_path / "bids.jsonl"
    s = _server(start_router, runs["run"], state, redis_url, flags={"bid_log": log}, RTB_CLICK_WINDOW_S=2)
    try:
        bids = _bids(s, requests_, f"fb-{state}", 6)
        won, clicked = bids[:4], bids[:2]
        for b in won:
            w = _post(s, "/win", _ref(b, price=b["price"] / 2))
            assert w.status_code == 200 and w.json()["pctr"] == b["ext"]["pctr"], w.text
        for b in clicked:                          # right after the wins: well inside the 2 s click window
            c = _post(s, "/click", _ref(b, ts=123))                      # extra fields are ignored
            assert c.status_code == 200 and c.json()["status"] == "click", c.text
        c = c.json()
        pctrs = [b["ext"]["pctr"] for b in won]
        # the /click answer: the arm's online numbers after it (shared by the two workers with the Redis state)
        assert (c["arm"], c["campaign"], c["bids"], c["wins"], c["clicks"]) == ("default", "default", 6, 4, 2), c
        assert c["ctr"] == pytest.approx(0.5) and c["win_rate"] == pytest.approx(4 / 6)
        assert c["spend"] == pytest.approx(sum(b["price"] for b in won) / 2 / 1000)
        assert c["ecpc"] == pytest.approx(c["spend"] / 2) and c["ecpm"] == pytest.approx(c["spend"] / 4 * 1000)
        assert c["mean_pctr"] == pytest.approx(sum(pctrs) / 4, rel=1e-6) and c["calibration"] == pytest.approx(c["mean_pctr"] / 0.5)

        def counted():
            arm = {"arm": "default", "campaign": "default"}
            return {n: s.metric(n, **arm) for n in ("rtb_wins_total", "rtb_clicks_total", "rtb_conversions_total", "rtb_spend_total",
                                                   "rtb_won_pctr_total", "rtb_online_ctr", "rtb_online_win_rate")}
        before = counted()
        assert before["rtb_wins_total"] == 4 and before["rtb_clicks_total"] == 2 and before["rtb_conversions_total"] == 0
        assert before["rtb_spend_total"] == pytest.approx(c["spend"]) and before["rtb_won_pctr_total"] == pytest.approx(sum(pctrs), rel=1e-6)
        assert before["rtb_online_ctr"] == pytest.approx(0.5) and before["rtb_online_win_rate"] == pytest.approx(4 / 6)
        assert s.metric("rtb_pacing_budget", campaign="default") == pytest.approx(1.0)
        assert s.metric("rtb_pacing_spent", campaign="default") == pytest.approx(c["spend"])

        # refused events: each says why and changes nothing
        dup = _post(s, "/click", _ref(clicked[0]))
        assert (dup.status_code, dup.json()["status"]) == (409, "duplicate"), dup.text
        early = _post(s, "/click", _ref(bids[4]))                         # bid on, no win notice yet
        assert early.status_code == 400 and early.json()["error"].startswith("id: ") and "before its win" in early.json()["error"], early.text
        assert _post(s, "/loss", _ref(bids[5])).status_code == 200
        lost = _post(s, "/click", _ref(bids[5]))
        assert (lost.status_code, lost.json()["status"]) == (400, "lost"), lost.text
        unknown = _post(s, "/click", {"id": "never-bid", "impid": "1"})
        assert unknown.status_code == 404 and unknown.json()["error"].startswith("id: "), unknown.text
        neg = _post(s, "/win", _ref(bids[4], price=-0.5))
        assert neg.status_code == 400 and neg.json()["error"].startswith("price: -0.5"), neg.text
        above = _post(s, "/win", _ref(bids[4], price=bids[4]["price"] * 2))
        assert above.status_code == 400 and above.json()["error"].startswith("price: "), above.text
        bad = _post(s, "/click", _ref(bids[0], type="view"))
        assert bad.status_code == 400 and bad.json()["error"].startswith("type: "), bad.text
        time.sleep(2.3)                                                   # the click window (2 s) of the four wins ends
        late = _post(s, "/click", _ref(won[3]))
        assert (late.status_code, late.json()["status"]) == (409, "expired") and "click_window_s" in late.json()["error"], late.text
        after = counted()
        assert {k: after[k] for k in after if k.endswith("_total")} == {k: before[k] for k in before if k.endswith("_total")}
        assert s.metric("rtb_notices_refused_total", notice="click") == 5

        # a conversion is its own event, counted once
        last = _bids(s, requests_, f"fbc-{state}", 1)[0]
        assert _post(s, "/win", _ref(last, price=last["price"])).status_code == 200
        conv = _post(s, "/click", _ref(last, type="conversion"))
        assert (conv.status_code, conv.json()["conversions"], conv.json()["clicks"]) == (200, 1, 2), conv.text
        assert _post(s, "/click", _ref(last, type="conversion")).status_code == 409
        assert s.metric("rtb_conversions_total") == 1
    finally:
        s.stop()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    wins = [x for x in lines if x["status"] == "win"]
    clicks = [x for x in lines if x["status"] == "click"]
    assert len(wins) == 5 and len(clicks) == 2 and sum(x["status"] == "conversion" for x in lines) == 1
    by_id = {b["rid"]: b for b in won}
    for x in clicks:
        assert set(x) >= {"ts", "request_id", "imp_id", "arm", "status", "pctr"}
        assert (x["arm"], x["pctr"]) == ("default", by_id[x["request_id"]]["ext"]["pctr"])
    assert all(x["pctr"] is not None and x["price_paid"] >= 0 for x in wins)
    bid_lines = [x for x in lines if x["status"] == "bid"]
    assert len(bid_lines) == 7 and set(bid_lines[0]) >= {"request_id", "imp_id", "arm", "pctr", "price"}


def _ready(s, fresh=False):
    r = (httpx.get(s.url + "/readyz", timeout=10) if fresh else s.client.get("/readyz"))
    return r.json()


def _wait(cond, timeout_s=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond(): return True
        time.sleep(0.1)
    return False


def test_redis_down_with_fallback_nobid_stops_bidding_until_it_returns(runs, requests_, redis_server, start_router):
    s = _server(start_router, runs["run"], "redis", redis_server.url, RTB_STATE_FALLBACK="nobid")
    try:
        assert len(_bids(s, requests_, "nb-pre", 3)) == 3
        redis_server.kill()                                  # a crash: connections refused
        try:
            res = [_post(s, "/openrtb2/bid", q) for q in _bodies(requests_, "nb-down", 12)]
            assert {(r.status_code, r.headers.get("X-RTB-No-Bid-Reason")) for r in res} == {(204, "state_unavailable")}
            for _ in range(6):                                   # whichever worker answers
                r = _ready(s, fresh=True)
                assert (r["status"], r["state"]["ok"], r["state"]["fallback"]) == ("degraded", False, "nobid"), r
            assert s.metric("rtb_no_bids_total", reason="state_unavailable") == 12
            assert s.metric("rtb_state_degraded") == 1
        finally:
            redis_server.start()                             # back on the same port, empty
        assert _wait(lambda: all(_ready(s, fresh=True)["status"] == "ready" for _ in range(6))), _ready(s)
        assert len(_bids(s, requests_, "nb-back", 6)) == 6   # bidding resumes on both workers, no restart
    finally:
        s.stop()


def test_redis_down_with_fallback_local_bids_on_and_counts_spend_once(runs, requests_, redis_server, start_router):
    import redis
    prefix = f"fbl-{uuid.uuid4().hex[:8]}:"
    s = _server(start_router, runs["run"], "redis", redis_server.url, RTB_STATE_FALLBACK="local", RTB_STATE_PREFIX=prefix)
    paid = []                                                # the clearing price of every win the router accepted
    def win(b, fresh=True, price=None):
        p = b["price"] / 2 if price is None else price
        r = _post(s, "/win", _ref(b, price=p), fresh)
        if r.status_code == 200: paid.append(p)
        return r
    try:
        pre = _bids(s, requests_, "fl-pre", 4)
        assert [win(b).status_code for b in pre[:2]] == [200, 200]
        os.kill(redis_server.proc.pid, signal.SIGSTOP)       # Redis hangs: every call times out (its data stays)
        try:
            during = _bids(s, requests_, "fl-down", 8, fresh=False)     # one worker (one kept-alive connection) bids on
            r = _ready(s)
            assert (r["status"], r["state"]["ok"], r["state"]["down"], r["state"]["fallback"]) == ("degraded", False, True, "local"), r
            assert [win(b, fresh=False).status_code for b in during[:3]] == [200] * 3
            c = _post(s, "/click", _ref(during[0]), fresh=False)
            assert (c.status_code, c.json()["clicks"]) == (200, 1), c.text
            assert _post(s, "/loss", _ref(during[7]), fresh=False).status_code == 200
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert _wait(lambda: all(_ready(s, fresh=True)["status"] == "ready" for _ in range(6))), _ready(s)
        # the fallback book was replayed: its bids' notices reach them from any worker, each counted once
        assert [win(b).status_code for b in during[3:7] + pre[2:]] == [200] * 6
        dup = [win(b).status_code for b in during[:3] + pre[:2]]
        assert dup == [409] * 5, dup
        assert _post(s, "/click", _ref(during[0])).json()["status"] == "duplicate"
        assert _post(s, "/click", _ref(during[1])).status_code == 200
        assert _post(s, "/win", _ref(during[7], price=0.1)).json()["status"] == "lost"
        spend = sum(paid) / 1000
        rd = redis.Redis.from_url(redis_server.url, decode_responses=True)
        st = rd.hgetall(f"{prefix}stats:default:default")
        assert (int(st["wins"]), int(st["clicks"])) == (len(paid), 2), st
        assert float(st["spend"]) == pytest.approx(spend, rel=1e-9)             # Redis: every win once
        assert s.metric("rtb_spend_total") == pytest.approx(spend, rel=1e-9)    # the workers' counters: every win once
        assert s.metric("rtb_wins_total") == len(paid) == 11
        w = int(time.time() // 1e9)                                              # the one pacing window of this test
        assert float(rd.hget(f"{prefix}book:default:{w}", "spent")) == pytest.approx(spend * 100, rel=1e-9)   # fen
        assert s.metric("rtb_pacing_spent", campaign="default") == pytest.approx(spend, rel=1e-9)
        rd.close()
    finally:
        s.stop()
