"""The router's other scoring backends and feature-store loading as a user runs them, over HTTP: `rtb-dcn feature-store load`
(subprocess) fills the in-process JSON store and Redis; the same OpenRTB requests are then answered by routers scoring
with in-process ONNX Runtime, the TF SavedModel, and the KServe-v2 model server (`rtb-dcn model-server`, a separate
process), and every backend gives the same pCTR and the same bid/no-bid decision."""
import json
import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def features_json(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "features.json"
    r = run_cli("feature-store", "load", "--data", runs["data"], "--format", "ipinyou", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.stat().st_size > 0 and "features:" in r.stdout and "keys" in r.stdout
    return out


@pytest.fixture(scope="module")
def model_server(runs, start_model_server):
    with start_model_server(runs["run"]) as ms: yield ms.url


def _answers(server, reqs):
    "(status, pCTR or None, price or None) of each request."
    out = []
    for q in reqs:
        r = server.client.post("/openrtb2/bid", json=q)
        assert r.status_code in (200, 204), r.text
        if r.status_code == 200:
            b = r.json()["seatbid"][0]["bid"][0]
            out.append((200, b["ext"]["pctr"], b["price"]))
        else: out.append((204, None, None))
    return out


def test_backends_agree_over_http(runs, requests_, features_json, model_server, start_router):
    "ONNX Runtime, TF SavedModel and the remote KServe-v2 model server: same pCTRs (<= 1e-5), same decisions."
    reqs = requests_[:60]
    base = {"RTB_FEATURE_STORE": "inprocess", "RTB_FEATURE_STORE_PATH": features_json,
            "RTB_BID_LOG": "off", "RTB_STRATEGY": "lin", "RTB_STRATEGY_PARAM": 300, "RTB_TMAX_DEFAULT_MS": 5000}
    answers = {}
    for name, extra in (("onnx", {"RTB_SCORER": "onnx"}), ("tf", {"RTB_SCORER": "tf"}),
                        ("kserve", {"RTB_SCORER": "kserve", "RTB_SCORER_URL": model_server})):
        with start_router(runs["run"], env={**base, **extra}) as s:
            ready = s.client.get("/readyz").json()
            assert ready["status"] == "ready", ready
            answers[name] = _answers(s, reqs)
            assert s.metric("rtb_requests_total") >= len(reqs)
    ref = answers["onnx"]
    assert any(st == 200 for st, _, _ in ref), "no bids at all: the comparison would be empty"
    for name in ("tf", "kserve"):
        for (st0, p0, pr0), (st1, p1, pr1) in zip(ref, answers[name]):
            assert st0 == st1, name
            if st0 == 200: assert abs(p0 - p1) <= 1e-5 and abs(pr0 - pr1) <= 0.011, (name, p0, p1, pr0, pr1)


def test_features_load_into_redis_then_served(runs, requests_, redis_server, features_json, start_router, tmp_path):
    """`rtb-dcn feature-store load --store redis` fills Redis; a router reading Redis looks up, per request, the counts of
    that user and that domain in the log (as its bid log records them): the same as a router reading the JSON store,
    and not the defaults a router without a store uses."""
    import redis
    from rtb_dcn.data import read_dataset
    url = redis_server.url.replace("/0", "/3")
    r = run_cli("feature-store", "load", "--data", runs["data"], "--format", "ipinyou", "--store", "redis", "--redis-url", url, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert redis.Redis.from_url(url).dbsize() > 0
    reqs = requests_[100:140]
    stores = {"json": {"RTB_FEATURE_STORE": "inprocess", "RTB_FEATURE_STORE_PATH": features_json},
              "redis": {"RTB_FEATURE_STORE": "redis", "RTB_REDIS_URL": url, "RTB_REDIS_TIMEOUT_MS": 2000},
              "none": {"RTB_FEATURE_STORE": "none"}}
    feats = {}
    for name, extra in stores.items():
        log = tmp_path / f"bids-{name}.jsonl"
        with start_router(runs["run"], env={"RTB_BID_LOG": log, "RTB_TMAX_DEFAULT_MS": 5000, **extra}) as s:
            assert s.client.get("/readyz").json()["status"] == "ready"
            _answers(s, reqs)
            assert s.metric("rtb_feature_fallbacks_total") == 0
        feats[name] = {e["request_id"]: e["features"] for e in map(json.loads, log.read_text().splitlines())}
        assert set(feats[name]) == {q["id"] for q in reqs}, name
    # what the log holds, counted here with pandas: rows per user and per domain
    df = read_dataset(runs["data"], "ipinyou")
    users, domains = df.user_id.astype(str).value_counts(), df.domain.astype(str).value_counts()
    seen = 0
    for q in reqs:
        got = feats["redis"][q["id"]]
        assert got == feats["json"][q["id"]]
        uid, dom = q["user"]["id"], q.get("site", {}).get("domain")
        assert got["user_imps"] == users.get(uid, 0) and got.get("domain_imps", 0) == domains.get(dom, 0), (uid, dom, got)
        assert feats["none"][q["id"]]["user_imps"] == feats["none"][q["id"]].get("domain_imps", 0) == 0
        seen += got["user_imps"] > 0
    assert seen >= len(reqs) // 2, f"only {seen} of {len(reqs)} requests have a user seen in the log: the check would be weak"
    assert feats["redis"] != feats["none"]


def test_features_load_bad_input_is_one_line(tmp_path):
    r = run_cli("feature-store", "load", "--data", tmp_path / "missing.txt", "--format", "ipinyou", "--out", tmp_path / "f.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_router_scores_over_kserve_grpc(runs, requests_, start_model_server, start_router):
    "RTB_SCORER=kserve_grpc: the router scores through `rtb-dcn model-server --grpc-port` with the same pCTRs as in-process."
    from rtb_dcn.servers import free_port
    reqs = requests_[200:240]
    base = {"RTB_FEATURE_STORE": "none", "RTB_BID_LOG": "off", "RTB_STRATEGY": "lin", "RTB_STRATEGY_PARAM": 300, "RTB_TMAX_DEFAULT_MS": 5000,
            "RTB_SCORER_TIMEOUT_MS": 2000}
    gport = free_port()
    answers = {}
    with start_model_server(runs["run"], grpc_port=gport):
        for name, extra in (("onnx", {"RTB_SCORER": "onnx"}), ("grpc", {"RTB_SCORER": "kserve_grpc", "RTB_SCORER_URL": f"127.0.0.1:{gport}"})):
            with start_router(runs["run"], env={**base, **extra}) as s:
                assert s.client.get("/readyz").json()["status"] == "ready"
                answers[name] = _answers(s, reqs)
    assert any(st == 200 for st, _, _ in answers["onnx"])
    for (st0, p0, _), (st1, p1, _) in zip(answers["onnx"], answers["grpc"]):
        assert st0 == st1 and (st0 != 200 or abs(p0 - p1) <= 1e-6), (p0, p1)
