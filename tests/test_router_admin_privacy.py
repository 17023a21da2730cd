"""Issue 12's rows on the max bid, the admin endpoint and the bid log, against the real router (uvicorn subprocess)
over HTTP: a bare request gets a capped bid, every strategy and arm stays under its max bid, a reload to a run whose
input_spec.json is broken is a 400 naming the file while the old model keeps serving, reload paths stay inside the
artifacts folder and the answers do not tell what exists outside it, the token is checked before the body is read
(and may come from a secret file), and the bid log holds no raw personal data."""
import json, shutil, time
import httpx
import pytest

TOKEN = "admin-token-from-a-file"
AB = """salt: t12
arms:
  - name: lin
    weight: 0.5
    strategy: lin
    param: 300
  - name: big
    weight: 0.5
    strategy: const
    param: 1000000
    max_bid: 2.0
"""
BARE = {"id": "m1", "imp": [{"id": "1"}]}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def arts(runs, tmp_path_factory):
    """An artifacts folder of its own: a copy of the session's run ('good'), runs whose input_spec.json is not a spec,
    links leading out of the folder (to a place that exists and to one that does not), and a place outside it."""
    d = tmp_path_factory.mktemp("priv") / "artifacts"
    shutil.copytree(runs["run"], d / "good")
    for name, content in [("bad_list", "[1, 2]"), ("bad_null", "null"), ("bad_binary", b"\x89PNG\r\n\x1a\n\xff\xfe\x00")]:
        (d / name).mkdir()
        f = d / name / "input_spec.json"
        f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content)
    (d / "bad_dir" / "input_spec.json" / "input_spec.json").mkdir(parents=True)   # FeatureSpec.load(folder) meets a folder
    outside = d.parent / "outside"
    shutil.copytree(runs["run"], outside)              # a valid run, but outside the artifacts folder
    (d / "link_out").symlink_to(outside)
    (d / "link_nowhere").symlink_to(d.parent / "nowhere")
    return d


@pytest.fixture(scope="module")
def server(arts, start_router, tmp_path_factory):
    "The router serving 'good' in two arms (lin 300; const 10,000 CNY with max_bid 2 CNY), the token in a secret file."
    tmp = tmp_path_factory.mktemp("priv_server")
    (tmp / "ab.yaml").write_text(AB)
    (tmp / "token").write_text(TOKEN + "\n")
    s = start_router(arts / "good", env={
        "RTB_ARTIFACTS_DIR": arts, "RTB_ADMIN_TOKEN_FILE": tmp / "token", "RTB_AB_CONFIG": tmp / "ab.yaml",
        "RTB_AB_OVERRIDE_HEADER": "true", "RTB_FEATURE_STORE": "none", "RTB_BID_LOG": tmp / "bids.jsonl",
        "RTB_BID_LOG_SALT": "salt-1", "RTB_TMAX_DEFAULT_MS": 2000, "RTB_SHADING": "none"})
    s.bid_log = tmp / "bids.jsonl"
    yield s
    s.stop()


def _bid(server, body, arm):
    r = server.client.post("/openrtb2/bid", json=body, headers={"X-RTB-Arm": arm})
    assert r.status_code in (200, 204), r.text
    return r, (r.json()["seatbid"][0]["bid"][0]["price"] if r.status_code == 200 else None)


def _serving(server) -> set:
    return {a["run"] for a in server.client.get("/readyz").json()["arms"].values()}


# ---------------------------------------------------------------- max bid
def test_a_bare_request_gets_a_capped_bid(server):
    "Issue 12: a bare request got 144.11 CNY; the model knows nothing of it: at most the low-coverage bid (1/4 of the max)."
    low0 = server.metric("rtb_low_coverage_total", arm="lin")
    r, price = _bid(server, BARE, "lin")
    assert price is None or price <= 0.75, r.json()       # max bid 3 CNY (the market's max price 300 fen), a quarter of it
    r, price = _bid(server, BARE, "big")
    assert price is not None and price <= 0.5, r.text     # the arm's max bid is 2 CNY: a quarter of it
    assert server.metric("rtb_low_coverage_total", arm="lin") == low0 + 1
    assert server.metric("rtb_capped_bids_total", arm="big", cap="low_coverage") >= 1


def test_every_bid_stays_under_the_arms_max_bid(server, requests_):
    prices = [p for q in requests_[:40] for p in [_bid(server, q, "big")[1]] if p is not None]
    assert prices and max(prices) == 2.0, prices[:5]      # const 10,000 CNY, capped at the arm's 2 CNY
    assert server.metric("rtb_capped_bids_total", arm="big", cap="max_bid") >= len([p for p in prices if p == 2.0])
    lin = [p for q in requests_[:40] for p in [_bid(server, q, "lin")[1]] if p is not None]
    assert lin and max(lin) <= 3.0


# ---------------------------------------------------------------- admin endpoint
def test_the_token_is_checked_before_the_body(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = server.client.post("/admin/reload", content=b"{not json", headers={**headers, "content-type": "application/json"})
        assert r.status_code == 403, (headers, r.text)
    r = server.client.post("/admin/reload", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"].startswith("body: not valid JSON"), r.text
    r = server.client.post("/admin/reload", json={"run": "good", "extra": 1}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"].startswith("extra:"), r.text


@pytest.mark.parametrize("run", ["bad_list", "bad_null", "bad_dir", "bad_binary"])
def test_a_reload_to_a_broken_input_spec_is_refused_and_the_old_model_serves(server, arts, run, requests_):
    before = _serving(server)
    r = server.client.post("/admin/reload", json={"run": run}, headers=AUTH)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert f"{run}/input_spec.json" in err and "still serving" in err and "\n" not in err, err
    assert _serving(server) == before == {str(arts / "good")}
    assert all(_bid(server, q, "lin")[0].status_code in (200, 204) for q in requests_[:5])


def test_reload_paths_stay_inside_the_artifacts_folder(server, arts, runs):
    before = _serving(server)
    def refused(run):
        r = server.client.post("/admin/reload", json={"run": run}, headers=AUTH)
        assert r.status_code == 400, (run, r.text)
        assert str(arts.parent) not in r.json()["error"] or run.startswith(str(arts.parent)), r.text
        return r.json()["error"].replace(repr(run), "RUN")
    outside = str(arts.parent / "outside")                       # a valid run folder, outside
    for run in ("../../../../tmp/x", "../outside", "good/../../outside", outside, "/tmp", str(runs["run"]), "link_out"):
        refused(run)
    # the answers do not tell what exists outside: an existing and a missing place get the same message
    assert refused(outside) == refused(str(arts.parent / "nowhere"))
    assert refused("/tmp") == refused("/no/such/folder")
    assert refused("../outside") == refused("../nowhere")
    assert refused("link_out") == refused("link_nowhere")
    assert _serving(server) == before
    # inside the folder: a name, 'artifacts/<name>' and the absolute path all load
    for run in ("good", "artifacts/good", str(arts / "good")):
        r = server.client.post("/admin/reload", json={"run": run}, headers=AUTH)
        assert r.status_code == 200, (run, r.text)
    assert _serving(server) == before
    assert server.metric("rtb_reloads_total", result="refused") >= 11


def test_a_token_on_the_command_line_is_warned_about(runs, start_router):
    s = start_router(runs["run"], admin_token="on-the-command-line", env={"RTB_FEATURE_STORE": "none"})
    try:
        r = s.client.post("/admin/reload", content=b"x", headers={"Authorization": "Bearer on-the-command-line"})
        assert r.status_code == 400                                   # it works, and
        log = s.log.read_text()
        assert "admin_token: passed on the command line" in log, log[-2000:]   # it warns
    finally: s.stop()


# ---------------------------------------------------------------- bid log
def test_the_bid_log_holds_no_raw_personal_data(server, requests_):
    from rtb_dcn.observability import Redactor
    q = json.loads(json.dumps(requests_[3]))
    q["id"] = "priv-log-1"
    q["device"] = {**q.get("device", {}), "ip": "203.0.113.77", "ua": "Mozilla/5.0 (X11) SecretBrowser/9.1"}
    q["site"] = {**q.get("site", {}), "page": "https://pub.example/article/7?token=SECRET123&mail=a%40b.c#frag"}
    q["user"] = {"id": "user-4242", "keywords": "kw-alpha,kw-beta"}
    v6 = {**json.loads(json.dumps(q)), "id": "priv-log-2", "device": {**q["device"], "ip": "2001:db8:85a3:1234:5678::7"}}
    for body in (q, v6): _bid(server, body, "lin")
    lines = []
    for _ in range(50):
        lines = [l for l in server.bid_log.read_text().splitlines() if '"priv-log-' in l]
        if len(lines) == 2: break
        time.sleep(0.1)
    assert len(lines) == 2, lines
    for raw in ("203.0.113.77", "2001:db8:85a3:1234", "SecretBrowser", "SECRET123", "token", "mail", "frag",
                "user-4242", "kw-alpha", "kw-beta"):
        assert not any(raw in l for l in lines), raw
    one, two = (json.loads(l) for l in lines)
    assert one["record"]["IP"] == "203.0.113.0" and two["record"]["IP"] == "2001:db8:85a3::"
    assert one["record"]["url"] == "https://pub.example/article/7" and one["record"]["usertag"] is None
    assert one["user"] == two["user"] == Redactor("salt-1")({"user": "user-4242"})["user"]   # joinable, not readable
    assert 0 <= one["coverage"] <= 1 and one["features"] is not None and one["status"] in ("bid", "no_bid")
