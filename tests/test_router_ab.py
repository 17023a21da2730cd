"""A/B arms and budget pacing of the router, driven over HTTP against the real server (uvicorn subprocess on
127.0.0.1): two arms from a YAML config, each with its own run folder and strategy; `ext.arm` of every bid is the
arm the splitter assigns; the X-RTB-Arm override header only counts when settings enable it; a campaign whose
pacing budget the win notices have spent gets 204 `budget`."""
import pytest
from rtb_dcn.units import PRICE_SCALE, to_price_units

PRICE = {"a": 5.0, "b": 7.77}      # const bids of the arms (CNY CPM): the price tells the arm too (max_bid 10 CNY: uncapped)


@pytest.fixture(scope="module")
def ab(runs, tmp_path_factory):
    "The session's small trained + exported iPinYou run and its copy as two arms, the A/B YAML, requests without floors."
    from rtb_dcn.data import read_dataset
    from rtb_dcn.openrtb import row_to_bid_request
    d = tmp_path_factory.mktemp("ab_runs")
    cfg = d / "ab.yaml"
    cfg.write_text(f"""salt: test-ab-salt
arms:
  - {{name: a, weight: 0.5, run: {runs['run']}, strategy: const, param: {to_price_units(PRICE['a'], PRICE_SCALE['ipinyou']):g}, campaign: ca, max_bid: 10}}
  - {{name: b, weight: 0.5, run: {runs['run2']}, strategy: const, param: {to_price_units(PRICE['b'], PRICE_SCALE['ipinyou']):g}, campaign: cb, max_bid: 10}}
""")
    reqs = []
    for row in read_dataset(runs["data"], "ipinyou", nrows=300).to_dict("records"):
        q = row_to_bid_request(row, "ipinyou")
        for k in ("bidfloor", "bidfloorcur"): q["imp"][0].pop(k, None)
        reqs.append(q)
    return {"run": runs["run"], "run_b": runs["run2"], "config": cfg, "requests": reqs, "dir": d}


def _expected_arms(ab) -> list[str]:
    from rtb_dcn.ab import Splitter, load_ab_config
    from rtb_dcn.openrtb import parse_bid_request
    sp = Splitter(load_ab_config(ab["config"]))
    return [sp.assign_request(parse_bid_request(q)).name for q in ab["requests"]]


def _server(ab, start_router, tmp_path, **env):
    base = {"RTB_AB_CONFIG": ab["config"], "RTB_FEATURE_STORE": "none", "RTB_BID_LOG": tmp_path / "bids.jsonl",
            "RTB_TMAX_DEFAULT_MS": 2000}
    return start_router(env={**base, **env})


def test_arms_follow_the_splitter_and_the_header_is_ignored_by_default(ab, start_router, tmp_path):
    expected = _expected_arms(ab)
    assert 0.3 < expected.count("a") / len(expected) < 0.7          # both arms get traffic
    s = _server(ab, start_router, tmp_path)
    try:
        ready = s.client.get("/readyz").json()
        assert ready["status"] == "ready"
        assert ready["arms"]["a"]["run"] == str(ab["run"]) and ready["arms"]["b"]["run"] == str(ab["run_b"])
        seen = {"a": 0, "b": 0}
        for q, arm in zip(ab["requests"], expected):
            other = "b" if arm == "a" else "a"
            r = s.client.post("/openrtb2/bid", json=q, headers={"X-RTB-Arm": other})   # disabled: ignored
            assert r.status_code == 200, (r.status_code, r.headers.get("X-RTB-No-Bid-Reason"), r.text[:200])
            b = r.json()["seatbid"][0]["bid"][0]
            assert (b["ext"]["arm"], b["price"]) == (arm, PRICE[arm])
            seen[arm] += 1
        # sticky: the same user lands in the same arm again
        again = s.client.post("/openrtb2/bid", json={**ab["requests"][0], "id": "again-1"}).json()
        assert again["seatbid"][0]["bid"][0]["ext"]["arm"] == expected[0]
        seen[expected[0]] += 1
        for arm in ("a", "b"):
            assert s.metric("rtb_requests_total", arm=arm) == seen[arm]
            assert s.metric("rtb_bids_total", arm=arm) == seen[arm]
    finally:
        s.stop()


def test_override_header_when_enabled(ab, start_router, tmp_path):
    expected = _expected_arms(ab)
    s = _server(ab, start_router, tmp_path, RTB_AB_OVERRIDE_HEADER="true")
    try:
        for q, arm in list(zip(ab["requests"], expected))[:40]:
            other = "b" if arm == "a" else "a"
            b = s.client.post("/openrtb2/bid", json=q, headers={"X-RTB-Arm": other}).json()["seatbid"][0]["bid"][0]
            assert (b["ext"]["arm"], b["price"]) == (other, PRICE[other])
            b = s.client.post("/openrtb2/bid", json=q).json()["seatbid"][0]["bid"][0]     # no header: the splitter
            assert b["ext"]["arm"] == arm
        r = s.client.post("/openrtb2/bid", json=ab["requests"][0], headers={"X-RTB-Arm": "nope"})
        assert r.status_code == 400 and r.json()["error"].startswith("X-RTB-Arm: 'nope' is not an arm"), r.text
        assert "Traceback" not in r.text
    finally:
        s.stop()


def test_budget_pacing_after_wins(ab, start_router, tmp_path):
    "Budget 0.05 CNY per window, const bid 10 CNY CPM (0.01 CNY per won imp): after 5 wins every bid is 204 `budget`."
    s = start_router(ab["run"], env={"RTB_FEATURE_STORE": "none", "RTB_BID_LOG": tmp_path / "bids.jsonl",
                     "RTB_TMAX_DEFAULT_MS": 2000, "RTB_STRATEGY": "const", "RTB_STRATEGY_PARAM": 1000,
                     "RTB_PACING_BUDGET": 0.05, "RTB_PACING_WINDOW_S": 3600, "RTB_MAX_BID": 10})
    try:
        reqs = iter(ab["requests"])
        for k in range(5):
            q = next(reqs)
            r = s.client.post("/openrtb2/bid", json=q)
            assert r.status_code == 200, (k, r.headers.get("X-RTB-No-Bid-Reason"))
            b = r.json()["seatbid"][0]["bid"][0]
            assert b["price"] == 10.0
            w = s.client.post("/win", json={"id": q["id"], "impid": b["impid"], "price": b["price"]})
            assert w.status_code == 200 and w.json()["wins"] == k + 1, w.text
        assert abs(w.json()["spend"] - 0.05) < 1e-9 and abs(w.json()["ecpm"] - 10.0) < 1e-9
        before = s.metric("rtb_no_bids_total", reason="budget")
        for _ in range(10):
            r = s.client.post("/openrtb2/bid", json=next(reqs))
            assert (r.status_code, r.headers.get("X-RTB-No-Bid-Reason")) == (204, "budget")
        assert s.metric("rtb_no_bids_total", reason="budget") == before + 10
        # a win notice for an unknown bid does not spend anything
        assert s.client.post("/win", json={"id": "nope", "price": 1}).status_code == 404
    finally:
        s.stop()
