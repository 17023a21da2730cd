"""Real third-party KServe-v2 software against the project's pieces:
- KServe's `ModelServer` (PyPI kserve 0.21, its own virtualenv `.venv-kserve`, `make venv-kserve`) serving the run's
  model.onnx through `rtb_dcn.deploy.KSERVE_MODEL`: the router's KServe scorer gets in-process ONNX Runtime's pCTR, a
  router scoring through it answers like one scoring in-process, and KServe's 400/404 become ScorerErrors;
- `tritonclient` (Triton's reference client, installed with nvidia-pytriton in `.venv-triton`) against the project's
  own `rtb-dcn model-server`: health, metadata and inference over HTTP and gRPC, as a protocol-conformance check.
Skipped, saying why in one line, where a virtualenv could not be made."""
import json, subprocess
import numpy as np
import pytest
from conftest import assert_router_scores_like_onnx

from rtb_dcn.config import RtbError


@pytest.fixture(scope="module")
def kserve(runs, server_logs, tmp_path_factory):
    from rtb_dcn.deploy import kserve_server, kserve_python
    try: kserve_python()
    except RtbError as e: pytest.skip(f"KServe not available: {e}")
    with kserve_server(runs["run"], log=server_logs, workdir=tmp_path_factory.mktemp("kserve_work")) as k: yield k


def test_kserve_model_server_pctr_equals_in_process_onnx(kserve, runs, batch):
    from rtb_dcn.scoring import OnnxScorer, make_scorer, ScorerError
    ids, dense = batch
    local = OnnxScorer(runs["run"]).score(ids, dense)
    ks = make_scorer("kserve", runs["run"], url=kserve.url, timeout_s=10)
    assert ks.ready()
    assert np.abs(ks.score(ids, dense) - local).max() <= 1e-5
    assert np.abs(np.concatenate([ks.score(ids[i], dense[i]) for i in range(10)]) - local[:10]).max() <= 1e-5
    w = dense.shape[1]
    with pytest.raises(ScorerError, match=rf"HTTP 400: dense.shape: \[2, {2 * w}\] is invalid; expected \[n, {w}\]") as e:
        ks.score(ids[:2], np.hstack([dense[:2], dense[:2]]))
    assert e.value.reason == "bad_request"
    with pytest.raises(ScorerError, match="HTTP 404") as e:
        make_scorer("kserve", url=kserve.url, model="nope", timeout_s=10).score(ids[:1], dense[:1])
    ks.close()


def test_grpc_scorer_against_kserve(kserve, runs, batch):
    "The router's KServe-v2 gRPC client against KServe's gRPC endpoint (typed fp32_contents answers)."
    from rtb_dcn.scoring import OnnxScorer, make_scorer, ScorerError
    ids, dense = batch
    local = OnnxScorer(runs["run"]).score(ids, dense)
    gs = make_scorer("kserve_grpc", runs["run"], url=f"127.0.0.1:{kserve.grpc_port}", timeout_s=10)
    assert gs.ready()
    assert np.abs(gs.score(ids, dense) - local).max() <= 1e-5
    with pytest.raises(ScorerError) as e: gs.score(ids[:2], np.hstack([dense[:2], dense[:2]]))
    assert "dense.shape" in str(e.value)
    gs.close()


@pytest.mark.slow   # the router path over KServe-v2 REST is the quick suite's test_triton.py::test_router_scores_through_triton
def test_router_scores_through_kserve(kserve, runs, requests_, start_router):
    "The router with RTB_SCORER=kserve pointed at KServe's ModelServer: the same pCTR and decisions as in-process."
    assert_router_scores_like_onnx(start_router, runs["run"], requests_[:40], kserve.url)


TRITONCLIENT_HTTP = r'''
import json, sys
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
url, model, npz = sys.argv[1:4]
d = np.load(npz)
c = httpclient.InferenceServerClient(url)
out = {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready(model),
       "metadata": c.get_model_metadata(model)}
inputs = [httpclient.InferInput("cat_ids", list(d["ids"].shape), "INT64"), httpclient.InferInput("dense", list(d["dense"].shape), "FP32")]
inputs[0].set_data_from_numpy(d["ids"], binary_data=False)
inputs[1].set_data_from_numpy(d["dense"], binary_data=False)
r = c.infer(model, inputs, outputs=[httpclient.InferRequestedOutput("pctr", binary_data=False)], request_id="r-1")
out["pctr"] = r.as_numpy("pctr").ravel().tolist()
out["response"] = {k: v for k, v in r.get_response().items() if k != "outputs"}
try: c.infer("nope", inputs); out["unknown"] = None
except InferenceServerException as e: out["unknown"] = e.message()
if len(sys.argv) > 4:                               # the gRPC endpoint too
    import tritonclient.grpc as grpcclient
    g = grpcclient.InferenceServerClient(sys.argv[4])
    out["grpc_ready"] = [g.is_server_live(), g.is_server_ready(), g.is_model_ready(model)]
    out["grpc_metadata"] = g.get_model_metadata(model, as_json=True)
    gin = [grpcclient.InferInput("cat_ids", list(d["ids"].shape), "INT64"), grpcclient.InferInput("dense", list(d["dense"].shape), "FP32")]
    gin[0].set_data_from_numpy(d["ids"]); gin[1].set_data_from_numpy(d["dense"])
    out["grpc_pctr"] = g.infer(model, gin, outputs=[grpcclient.InferRequestedOutput("pctr")]).as_numpy("pctr").ravel().tolist()
    try: g.infer("nope", gin); out["grpc_unknown"] = None
    except InferenceServerException as e: out["grpc_unknown"] = e.status() + " " + e.message()
print(json.dumps(out))
'''


def test_tritonclient_against_own_model_server(runs, batch, start_model_server, tmp_path):
    "Triton's reference HTTP client talks to `rtb-dcn model-server`: health, metadata, inference equal to in-process ONNX."
    from rtb_dcn.deploy import triton_install
    from rtb_dcn.scoring import OnnxScorer
    try: py = triton_install()["venv"] / "bin" / "python"
    except RtbError as e: pytest.skip(f"tritonclient not available: {e}")
    ids, dense = batch
    np.savez(tmp_path / "batch.npz", ids=ids[:50], dense=dense[:50])
    (tmp_path / "client.py").write_text(TRITONCLIENT_HTTP)
    name = runs["run"].name
    from rtb_dcn.servers import free_port
    gport = free_port()
    with start_model_server(runs["run"], grpc_port=gport) as ms:
        r = subprocess.run([str(py), str(tmp_path / "client.py"), ms.url.removeprefix("http://"), name, str(tmp_path / "batch.npz"),
                            f"127.0.0.1:{gport}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert (out["live"], out["ready"], out["model_ready"]) == (True, True, True)
    assert out["metadata"]["name"] == name and [i["name"] for i in out["metadata"]["inputs"]] == ["cat_ids", "dense"]
    assert out["response"]["id"] == "r-1" and out["response"]["model_name"] == name
    np.testing.assert_allclose(out["pctr"], OnnxScorer(runs["run"]).score(ids[:50], dense[:50]), atol=1e-6)
    assert "is not served here" in out["unknown"]
    assert out["grpc_ready"] == [True, True, True] and out["grpc_metadata"]["name"] == name
    np.testing.assert_allclose(out["grpc_pctr"], OnnxScorer(runs["run"]).score(ids[:50], dense[:50]), atol=1e-6)
    assert out["grpc_unknown"].startswith("StatusCode.NOT_FOUND") and "is not served here" in out["grpc_unknown"]
