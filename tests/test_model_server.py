"""`rtb-dcn model-server` as a real subprocess on 127.0.0.1: KServe v2 health/metadata/infer over HTTP, the same
pCTR as in-process ONNX Runtime through `KServeScorer`, 400 for malformed bodies, 404 for unknown models, a clean
one-line error for a broken run folder, and a scorer that fails fast once the server is gone."""
import json, time
import numpy as np
import pytest
from conftest import EXPERIMENTS, run_cli

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, samples):
    "A tiny exported Criteo run: experiment DCN_test trained on the 200-row sample (SavedModel + ONNX)."
    pytest.importorskip("tensorflow")
    from rtb_dcn.data import read_dataset
    from rtb_dcn.run import train_frame
    from rtb_dcn.train import load_experiment
    df = read_dataset(samples / "criteo" / "criteo_sample.txt", "criteo")
    cfg = load_experiment(EXPERIMENTS / "dcn_criteo.yaml", "DCN_test")
    return train_frame(df, cfg, tmp_path_factory.mktemp("runs") / "criteo_tiny", parity_rows=500).path


@pytest.fixture(scope="module")
def server(run_dir, start_model_server):
    "`rtb-dcn model-server` on a free port (rtb_dcn.servers.Server); stopped afterwards."
    with start_model_server(run_dir, max_wait_ms=1) as ms: yield ms


@pytest.fixture(scope="module")
def batch(run_dir):
    from rtb_dcn.export import parity_inputs
    from rtb_dcn.features import FeatureSpec
    ids, dense, _ = parity_inputs(FeatureSpec.load(run_dir), rows=300, seed=3)
    return ids, dense


def test_health_and_metadata(server):
    url = server.url
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/criteo_tiny/ready", "/v2"):
        assert httpx.get(url + path).status_code == 200, path
    meta = httpx.get(f"{url}/v2/models/criteo_tiny").json()
    assert meta["name"] == "criteo_tiny" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "cat_ids", "datatype": "INT64", "shape": [-1, 26]},
                              {"name": "dense", "datatype": "FP32", "shape": [-1, 13]}]
    assert meta["outputs"] == [{"name": "pctr", "datatype": "FP32", "shape": [-1, 1]}]


def test_kserve_scorer_matches_in_process_onnx(server, run_dir, batch):
    from rtb_dcn.scoring import KServeScorer, OnnxScorer, make_scorer
    from rtb_dcn.microbatch import MicroBatcher
    import asyncio
    url = server.url
    ids, dense = batch
    local = OnnxScorer(run_dir).score(ids, dense)
    remote = make_scorer("kserve", run_dir, url=url, timeout_s=5)
    assert isinstance(remote, KServeScorer) and remote.ready()
    np.testing.assert_array_equal(remote.score(ids, dense), local)                  # one request of 300 rows
    singles = np.concatenate([remote.score(ids[i], dense[i]) for i in range(20)])  # keep-alive single rows
    np.testing.assert_allclose(singles, local[:20], atol=1e-6)

    async def fan_out():
        mb = MicroBatcher(remote, max_batch=16, max_wait_ms=2, max_inflight=4)
        try: return await asyncio.gather(*(mb.score(ids[i], dense[i]) for i in range(64))), mb.stats()
        finally: mb.close()
    res, st = asyncio.run(fan_out())
    np.testing.assert_allclose(np.concatenate(res), local[:64], atol=1e-6)
    assert st["requests"] == 64 and st["batches"] < 64
    remote.close()


def test_malformed_bodies_get_400_naming_the_field(server, batch):
    from rtb_dcn.scoring import kserve_request
    url = server.url
    ids, dense = batch
    infer = f"{url}/v2/models/criteo_tiny/infer"
    good = kserve_request(ids[:2], dense[:2])

    def changed(i, **kv):
        b = json.loads(json.dumps(good))
        b["inputs"][i].update(kv)
        return b
    cases = [
        (b"{not json", "body: not valid JSON"),
        (json.dumps({"inputs": []}).encode(), "inputs: []"),
        (json.dumps(changed(0, name="ids")).encode(), "inputs[0].name: 'ids' is not an input"),
        (json.dumps(changed(0, datatype="FP32")).encode(), "inputs[0].datatype: 'FP32' is invalid for cat_ids; expected INT64"),
        (json.dumps(changed(1, shape=[2, 12])).encode(), "inputs[1].shape: [2, 12] is invalid for dense; expected [n, 13]"),
        (json.dumps(changed(1, data=[0.5] * 3)).encode(), "inputs[1].data: 3 values for shape [2, 13]; expected 26 numbers"),
        (json.dumps(changed(0, data=["a"] * 52)).encode(), "inputs[0].data: non-numeric values"),
        (json.dumps(changed(0, data=[-1] * 52)).encode(), "cat_ids.data: id -1 at row 0, column 0 is outside"),
        (json.dumps({"inputs": good["inputs"][1:]}).encode(), "inputs: cat_ids is missing"),
        (json.dumps({**good, "outputs": [{"name": "logits"}]}).encode(), "outputs:"),
    ]
    for body, msg in cases:
        r = httpx.post(infer, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (msg, r.status_code, r.text)
        assert msg in r.json()["error"], (msg, r.text)
        assert "Traceback" not in r.text


def test_unknown_model_is_404(server, batch):
    from rtb_dcn.scoring import kserve_request, KServeScorer, ScorerError
    url = server.url
    ids, dense = batch
    r = httpx.post(f"{url}/v2/models/nope/infer", json=kserve_request(ids[:1], dense[:1]))
    assert r.status_code == 404 and r.json() == {"error": "model 'nope' is not served here; expected 'criteo_tiny'"}
    assert httpx.get(f"{url}/v2/models/nope").status_code == 404
    assert httpx.post(f"{url}/v2/models/criteo_tiny/versions/0/infer", json=kserve_request(ids[:1], dense[:1])).status_code == 404
    with pytest.raises(ScorerError, match="HTTP 404"):
        KServeScorer(url, "nope", timeout_s=5).score(ids[:1], dense[:1])


def test_broken_run_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    from rtb_dcn.servers import free_port
    r = run_cli("model-server", "--run", tmp_path / "empty", "--port", free_port(), timeout=60)
    assert r.returncode == 2, r.stderr
    assert "model.onnx is missing; expected an exported run folder" in r.stderr
    assert "Traceback" not in r.stderr


def test_scorer_fails_fast_once_the_server_is_gone(run_dir, batch, start_model_server):
    "A server stopped between calls: the pooled connection and fresh connects both end in a quick ScorerError."
    from rtb_dcn.scoring import KServeScorer, ScorerError
    ids, dense = batch
    with start_model_server(run_dir) as ms:
        ks = KServeScorer(ms.url, "criteo_tiny", timeout_s=0.5)
        assert ks.ready() and ks.score(ids[:2], dense[:2]).shape == (2,)
    for _ in range(2):
        t0 = time.monotonic()
        with pytest.raises(ScorerError) as e:
            ks.score(ids[:2], dense[:2])
        assert e.value.reason in ("unavailable", "timeout")
        assert time.monotonic() - t0 < 1.5
