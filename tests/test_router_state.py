"""Budgets that hold and reloads that reach every worker, against the real router (uvicorn subprocess) and a real
redis-server on 127.0.0.1, over HTTP:

- win notices that lag behind their bids (one worker, in-process state): spend <= budget, because each bid reserves
  its cost until its notice, a loss or expiry;
- two workers sharing the state in Redis (`--state redis`): spend <= budget under concurrent bids, and every win
  notice finds its bid whichever worker receives it (no 404);
- a bid without a notice expires after `notice_window_s`, is counted, and gives its reservation back;
- a duplicate win notice changes nothing and says so (409, `"status": "duplicate"`);
- a reload taken by one of two workers is served by every worker within a bounded time, with no failed request.
"""
import json, shutil, threading, time, uuid
import httpx
import onnx
import pytest
from conftest import unfloored_requests

EPS = 1e-6
BID_CNY = 1.0            # the const bid (CPM, CNY): 0.001 CNY per won imp
TOKEN = "state-test-token"


def _server(start_router, run, redis_url=None, state="local", budget=None, flags=None, **env):
    "The router (flags of `rtb-dcn serve`, RTB_ env) with a const bid of BID_CNY, no feature store; `state` local or redis (own key prefix)."
    e = {"RTB_FEATURE_STORE": "none", "RTB_TMAX_DEFAULT_MS": 2000, "RTB_STRATEGY": "const", "RTB_STRATEGY_PARAM": BID_CNY * 100,
         "RTB_STATE": state, "RTB_STATE_TIMEOUT_MS": 500, "RTB_PACING_WINDOW_S": 1e9, **env}   # one pacing window for the whole test
    if budget is not None: e["RTB_PACING_BUDGET"] = budget
    if state == "redis": e.update(RTB_REDIS_URL=redis_url, RTB_STATE_PREFIX=f"test-{uuid.uuid4().hex[:8]}:")
    return start_router(run, env=e, **(flags or {}))


def _bodies(requests_, tag: str, n: int) -> list[dict]:
    return unfloored_requests(requests_, tag, n, unique=False)


def _bid(url, q, client=None):
    "POST one bid request (a fresh connection unless `client`): (status, the bid or None, no-bid reason)."
    r = (client.post("/openrtb2/bid", json=q) if client else httpx.post(url + "/openrtb2/bid", json=q, timeout=10))
    b = r.json()["seatbid"][0]["bid"][0] if r.status_code == 200 else None
    return r.status_code, b, r.headers.get("X-RTB-No-Bid-Reason")


def _win(url, b, price=None):
    "POST the win notice of bid `b` at its price (or `price`) on a fresh connection."
    rid = b["id"].rsplit(":", 1)[0]
    return httpx.post(url + "/win", json={"id": rid, "impid": b["impid"], "price": b["price"] if price is None else price}, timeout=10)


def test_lagging_win_notices_keep_spend_within_budget(runs, requests_, start_router):
    "One worker: 60 bids before any notice; then every bid wins at its price. Spend <= budget (it was 49x before)."
    budget = 0.005                      # CNY: five bids of BID_CNY CPM
    s = _server(start_router, runs["run"], budget=budget)
    try:
        res = [_bid(s.url, q, s.client) for q in _bodies(requests_, "lag", 60)]
        bids = [b for code, b, _ in res if code == 200]
        assert {why for code, _, why in res if code != 200} <= {"budget"}, res[:5]
        assert bids, "no bid at all"
        wins = [_win(s.url, b) for b in bids]                # the notices arrive after all the bids
        assert [w.status_code for w in wins] == [200] * len(bids), [w.text for w in wins if w.status_code != 200][:3]
        spend = sum(b["price"] for b in bids) / 1000
        assert spend <= budget * (1 + EPS), f"spend {spend} CNY for a budget of {budget} ({len(bids)} bids)"
        assert spend > budget - max(b["price"] for b in bids) / 1000 - EPS   # the budget is used, not starved
        assert abs(wins[-1].json()["spend"] - spend) < 1e-9
        assert s.metric("rtb_no_bids_total", reason="budget") == 60 - len(bids)
    finally:
        s.stop()


def test_two_workers_share_budget_and_open_bids_in_redis(runs, requests_, redis_url, start_router):
    "--workers 2 --state redis: 200 concurrent bids on fresh connections, then their notices: spend <= budget, no 404."
    budget = 0.01                       # CNY: ten bids
    s = _server(start_router, runs["run"], redis_url, state="redis", budget=budget, flags={"workers": 2})
    try:
        reqs, res, lock = _bodies(requests_, "two", 200), [], threading.Lock()
        def work(k):
            for q in reqs[k::8]:
                r = _bid(s.url, q)
                with lock: res.append(r)
        ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in ts: t.start()
        for t in ts: t.join(120)
        assert len(res) == 200 and {code for code, _, _ in res} <= {200, 204}, [r for r in res if r[0] not in (200, 204)][:3]
        assert {why for code, _, why in res if code == 204} <= {"budget"}
        bids = [b for code, b, _ in res if code == 200]
        wins = [_win(s.url, b) for b in bids]
        assert [w.status_code for w in wins] == [200] * len(bids), [(w.status_code, w.text) for w in wins if w.status_code != 200][:3]
        spend = sum(b["price"] for b in bids) / 1000
        assert 0 < spend <= budget * (1 + EPS), f"spend {spend} CNY for a budget of {budget} ({len(bids)} bids)"
        assert max(w.json()["spend"] for w in wins) == pytest.approx(spend)     # the arm's stats are shared too
        pids = {httpx.get(s.url + "/readyz", timeout=10).json()["worker"] for _ in range(60)}
        assert len(pids) == 2, pids                                            # both workers answered
    finally:
        s.stop()


@pytest.mark.parametrize("state", ["local", "redis"])
def test_open_bids_expire_after_the_notice_window(state, runs, requests_, redis_url, start_router):
    "Budget for three bids, notice window 1 s: the 4th bid waits for the budget; after 1 s the three expire (counted)."
    s = _server(start_router, runs["run"], redis_url, state=state, budget=0.003, RTB_NOTICE_WINDOW_S=1, RTB_RELOAD_POLL_S=0.2)
    try:
        reqs = _bodies(requests_, f"exp-{state}", 5)
        res = [_bid(s.url, q, s.client) for q in reqs[:4]]
        assert [(code, why) for code, _, why in res] == [(200, None)] * 3 + [(204, "budget")], res
        time.sleep(1.8)                                      # the background task expires them (every 0.2 s)
        assert s.metric("rtb_bids_expired_total", arm="default") == 3
        assert _bid(s.url, reqs[4], s.client)[0] == 200      # their reservations are free again
        late = _win(s.url, res[0][1])
        assert (late.status_code, late.json()["status"]) == (409, "expired"), late.text
        assert s.metric("rtb_wins_total") == 0
    finally:
        s.stop()


@pytest.mark.parametrize("state", ["local", "redis"])
def test_a_duplicate_win_notice_changes_nothing(state, runs, requests_, redis_url, start_router):
    s = _server(start_router, runs["run"], redis_url, state=state, budget=1.0)
    try:
        code, b, _ = _bid(s.url, _bodies(requests_, f"dup-{state}", 1)[0], s.client)
        assert code == 200
        first = _win(s.url, b, price=b["price"] / 2)
        assert first.status_code == 200 and first.json()["wins"] == 1, first.text
        for price in (b["price"] / 2, b["price"] / 4):                    # the same notice, or one with another price
            again = _win(s.url, b, price=price)
            assert again.status_code == 409 and again.json()["status"] == "duplicate", again.text
            assert "duplicate notice changes nothing" in again.json()["error"]
        assert s.metric("rtb_wins_total") == 1
        assert s.metric("rtb_spend_total") == pytest.approx(b["price"] / 2 / 1000)
        assert _win(s.url, {"id": "nope:1", "impid": "1", "price": 1.0}).status_code == 404
    finally:
        s.stop()


def _versioned_copy(run, dst, version: str):
    "A copy of run folder `run` at `dst` whose model version (input_spec.json, model.onnx) is `version`: a new export."
    shutil.copytree(run, dst)
    spec = json.loads((dst / "input_spec.json").read_text())
    spec.setdefault("extra", {})["model_version"] = version
    (dst / "input_spec.json").write_text(json.dumps(spec))
    m = onnx.load(dst / "model.onnx")               # the model carries its version too (the scorer checks they agree)
    for kv in m.metadata_props:
        if kv.key == "model_version": kv.value = version
    onnx.save(m, dst / "model.onnx")
    return dst


@pytest.mark.parametrize("state", ["redis", "local"])
def test_a_reload_reaches_every_worker(state, runs, requests_, redis_url, start_router, tmp_path):
    "Two workers under load; one takes POST /admin/reload: within 3 s every worker serves the new version, no request fails."
    art = tmp_path / "artifacts"
    _versioned_copy(runs["run"], art / "ipy_v1", "v1-reload-test")
    _versioned_copy(runs["run"], art / "ipy_v2", "v2-reload-test")
    flags = {"workers": 2, **({"per_worker_state": True} if state == "local" else {})}
    s = _server(start_router, art / "ipy_v1", redis_url, state=state, RTB_ADMIN_TOKEN=TOKEN, RTB_ARTIFACTS_DIR=art,
                RTB_RELOAD_POLL_S=0.5, flags=flags)
    def versions(n):
        "(worker pid, model version) of `n` /readyz answers, each on a fresh connection."
        out = []
        for _ in range(n):
            r = httpx.get(s.url + "/readyz", timeout=10).json()
            out.append((r["worker"], r["arms"]["default"]["model_version"]))
        return out
    stop, res, lock = threading.Event(), [], threading.Lock()
    def load(k):
        for q in _bodies(requests_, f"reload-{state}-{k}", 10_000):
            if stop.is_set(): break
            try: code = _bid(s.url, q)[0]
            except httpx.HTTPError as e: code = repr(e)
            with lock: res.append(code)
    try:
        before = versions(60)
        assert {v for _, v in before} == {"v1-reload-test"} and len({p for p, _ in before}) == 2, before
        ts = [threading.Thread(target=load, args=(k,)) for k in range(3)]
        for t in ts: t.start()
        time.sleep(0.5)
        r = httpx.post(s.url + "/admin/reload", json={"run": "ipy_v2"}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert r.status_code == 200, r.text
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:                   # bounded: every worker follows within reload_poll_s + a load
            seen = versions(10)
            if {v for _, v in seen} == {"v2-reload-test"}: break
            time.sleep(0.1)
        after = versions(60)
        assert {v for _, v in after} == {"v2-reload-test"} and len({p for p, _ in after}) == 2, after
        time.sleep(0.5)
        stop.set()
        for t in ts: t.join(60)
        bad = [c for c in res if c not in (200, 204)]
        assert len(res) > 30 and not bad, (len(res), bad[:5])
    finally:
        stop.set()
        s.stop()
