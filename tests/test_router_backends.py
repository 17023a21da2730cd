"""The router's other scoring backends and feature-store loading as a user runs them, over HTTP: `rtb-dcn features load`
(subprocess) fills the in-process JSON store and Redis; the same OpenRTB requests are then answered by routers scoring
with in-process ONNX Runtime, the TF SavedModel, and the KServe-v2 model server (`rtb-dcn model-server`, a separate
process), and every backend gives the same pCTR and the same bid/no-bid decision."""
import os, subprocess, time
import httpx
import pytest
from conftest import run_cli, ROOT, BIN
from test_router import runs, requests_, redis_server, Server, _free_port   # noqa: F401  (session fixtures)


@pytest.fixture(scope="module")
def features_json(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "features.json"
    r = run_cli("features", "load", "--data", runs["data"], "--format", "ipinyou", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.stat().st_size > 0 and "features:" in r.stdout and "keys" in r.stdout
    return out


@pytest.fixture(scope="module")
def model_server(runs, tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("ms") / "model-server.log", "w")
    p = subprocess.Popen([str(BIN / "rtb-dcn"), "model-server", "--run", str(runs["run"]), "--host", "127.0.0.1", "--port", str(port)],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 90:
        assert p.poll() is None, open(log.name).read()[-2000:]
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200: break
        except httpx.HTTPError: time.sleep(0.2)
    else: raise AssertionError("model server did not start in 90 s")
    yield url
    p.terminate(); p.wait(15); log.close()


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


def test_backends_agree_over_http(runs, requests_, features_json, model_server, tmp_path):
    "ONNX Runtime, TF SavedModel and the remote KServe-v2 model server: same pCTRs (<= 1e-5), same decisions."
    reqs = requests_[:60]
    base = {"RTB_RUN_DIR": runs["run"], "RTB_FEATURE_STORE": "inprocess", "RTB_FEATURE_STORE_PATH": features_json,
            "RTB_BID_LOG": "off", "RTB_STRATEGY": "lin", "RTB_STRATEGY_PARAM": 300, "RTB_TMAX_DEFAULT_MS": 5000}
    answers = {}
    for name, extra in (("onnx", {"RTB_SCORER": "onnx"}), ("tf", {"RTB_SCORER": "tf"}),
                        ("kserve", {"RTB_SCORER": "kserve", "RTB_SCORER_URL": model_server})):
        s = Server({**base, **extra}, tmp_path)
        try:
            ready = s.client.get("/readyz").json()
            assert ready["status"] == "ready", ready
            answers[name] = _answers(s, reqs)
            assert s.metric("rtb_requests_total") >= len(reqs)
        finally: s.stop()
    ref = answers["onnx"]
    assert any(st == 200 for st, _, _ in ref), "no bids at all: the comparison would be empty"
    for name in ("tf", "kserve"):
        for (st0, p0, pr0), (st1, p1, pr1) in zip(ref, answers[name]):
            assert st0 == st1, name
            if st0 == 200: assert abs(p0 - p1) <= 1e-5 and abs(pr0 - pr1) <= 0.011, (name, p0, p1, pr0, pr1)


def test_features_load_into_redis_then_served(runs, requests_, redis_server, features_json, tmp_path):
    "`rtb-dcn features load --store redis` fills Redis; a router reading Redis answers like one reading the JSON store."
    r = run_cli("features", "load", "--data", runs["data"], "--format", "ipinyou", "--store", "redis",
                "--redis-url", redis_server.url.replace("/0", "/3"), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    import redis
    assert redis.Redis.from_url(redis_server.url.replace("/0", "/3")).dbsize() > 0
    reqs = requests_[100:140]
    base = {"RTB_RUN_DIR": runs["run"], "RTB_BID_LOG": "off", "RTB_TMAX_DEFAULT_MS": 5000}
    out = {}
    for name, extra in (("json", {"RTB_FEATURE_STORE": "inprocess", "RTB_FEATURE_STORE_PATH": features_json}),
                        ("redis", {"RTB_FEATURE_STORE": "redis", "RTB_REDIS_URL": redis_server.url.replace("/0", "/3"),
                                   "RTB_REDIS_TIMEOUT_MS": 2000})):
        s = Server({**base, **extra}, tmp_path)
        try:
            assert s.client.get("/readyz").json()["status"] == "ready"
            out[name] = _answers(s, reqs)
            assert s.metric("rtb_feature_fallbacks_total") == 0
        finally: s.stop()
    assert out["json"] == out["redis"]


def test_features_load_bad_input_is_one_line(tmp_path):
    r = run_cli("features", "load", "--data", tmp_path / "missing.txt", "--format", "ipinyou", "--out", tmp_path / "f.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
