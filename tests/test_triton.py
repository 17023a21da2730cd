"""Real NVIDIA Triton (the `tritonserver` 2.51 binary of PyPI `nvidia-pytriton`, CPU, Python backend, in its own
virtualenv `.venv-triton` made by `make venv-triton`) serving the Triton model repository that `rtb_dcn.deploy` writes
for a run: the same pCTR as in-process ONNX Runtime (<= 1e-5) through the router's KServe-v2 scorer, a router scoring
through Triton answering like one scoring in-process, Triton's own 400s becoming ScorerErrors, and a repository whose
config does not match its model caught before and by the server. Skipped, saying why in one line, where the virtualenv
could not be made."""
import asyncio
import numpy as np
import pytest
from conftest import run_cli, assert_router_scores_like_onnx

from rtb_dcn.config import RtbError


@pytest.fixture(scope="module")
def triton_venv():
    from rtb_dcn.deploy import triton_install
    try: return triton_install()
    except RtbError as e: pytest.skip(f"Triton not available: {e}")


@pytest.fixture(scope="module")
def repo(runs, tmp_path_factory):
    "The Python-backend repository of the session's run, under the run folder's name (the router's default model name)."
    from rtb_dcn.deploy import write_triton_repository, check_triton_repository
    out = tmp_path_factory.mktemp("triton_repo")
    check_triton_repository(write_triton_repository(runs["run"], out, name=runs["run"].name, backend="python", max_queue_delay_us=200))
    return out


@pytest.fixture(scope="module")
def triton(triton_venv, repo, server_logs, tmp_path_factory):
    from rtb_dcn.deploy import triton_server
    with triton_server(repo, log=server_logs, workdir=tmp_path_factory.mktemp("triton_work")) as t: yield t


def test_triton_pctr_equals_in_process_onnx(triton, runs, batch):
    from rtb_dcn.scoring import OnnxScorer, make_scorer, KServeScorer
    from rtb_dcn.microbatch import MicroBatcher
    ids, dense = batch
    local = OnnxScorer(runs["run"]).score(ids, dense)
    ks = make_scorer("kserve", runs["run"], url=triton.url, timeout_s=10)
    assert isinstance(ks, KServeScorer) and ks.ready()
    meta = ks.metadata()
    assert meta["platform"] == "python" and [i["name"] for i in meta["inputs"]] == ["cat_ids", "dense"]
    remote = ks.score(ids, dense)                                   # one request of 250 rows
    assert remote.shape == local.shape and np.abs(remote - local).max() <= 1e-5
    singles = np.concatenate([ks.score(ids[i], dense[i]) for i in range(20)])
    assert np.abs(singles - local[:20]).max() <= 1e-5

    async def fan_out():                                            # concurrent single rows: Triton's dynamic batcher
        mb = MicroBatcher(ks, max_batch=1, max_wait_ms=0, max_inflight=8)
        try: return await asyncio.gather(*(mb.score(ids[i], dense[i]) for i in range(64)))
        finally: mb.close()
    got = np.concatenate(asyncio.run(fan_out()))
    assert np.abs(got - local[:64]).max() <= 1e-5
    assert "nv_inference_request_success" in __import__("httpx").get(f"http://127.0.0.1:{triton.metrics_port}/metrics").text
    ks.close()


def test_grpc_scorer_against_triton(triton, runs, batch):
    "The router's KServe-v2 gRPC client against Triton's gRPC endpoint: the same pCTR (Triton answers raw tensors)."
    from rtb_dcn.scoring import OnnxScorer, make_scorer, ScorerError
    ids, dense = batch
    local = OnnxScorer(runs["run"]).score(ids, dense)
    gs = make_scorer("kserve_grpc", runs["run"], url=f"127.0.0.1:{triton.grpc_port}", timeout_s=10)
    assert gs.ready() and gs.metadata()["platform"] == "python"
    assert np.abs(gs.score(ids, dense) - local).max() <= 1e-5
    with pytest.raises(ScorerError, match="batch-size must be <= 256") as e:
        gs.score(np.concatenate([ids, ids]), np.concatenate([dense, dense]))
    assert e.value.reason == "bad_request"
    gs.close()


def test_triton_errors_become_scorer_errors(triton, runs, batch):
    from rtb_dcn.scoring import KServeScorer, ScorerError
    ids, dense = batch
    ks = KServeScorer(triton.url, runs["run"].name, timeout_s=10)
    big_ids, big_dense = np.concatenate([ids, ids]), np.concatenate([dense, dense])     # 500 rows > max_batch_size 256
    with pytest.raises(ScorerError, match="HTTP 400: .*batch-size must be <= 256") as e: ks.score(big_ids, big_dense)
    assert e.value.reason == "bad_request"
    with pytest.raises(ScorerError, match="HTTP 4") as e: KServeScorer(triton.url, "nope", timeout_s=10).score(ids[:1], dense[:1])
    assert not KServeScorer(triton.url, "nope", timeout_s=10).ready()


def test_router_scores_through_triton(triton, runs, requests_, start_router):
    "The router with RTB_SCORER=kserve pointed at Triton: the same pCTR and decisions as the router scoring in-process."
    assert_router_scores_like_onnx(start_router, runs["run"], requests_[:40], triton.url)


def test_mismatched_repository_is_caught(triton_venv, runs, tmp_path):
    "A config whose dense width differs from the model: refused by check_triton_repository, and Triton never gets ready."
    from rtb_dcn.deploy import write_triton_repository, check_triton_repository, triton_server
    d = write_triton_repository(runs["run"], tmp_path / "repo", backend="python")
    cfg = d / "config.pbtxt"
    n_dense = next(t for t in check_triton_repository(d)["inputs"] if t[0] == "dense")[2][0]
    cfg.write_text(cfg.read_text().replace(f"dims: [ {n_dense} ]", f"dims: [ {n_dense + 1} ]"))
    with pytest.raises(RtbError, match=f"input dense is TYPE_FP32 \\[{n_dense + 1}\\]; expected TYPE_FP32 \\[{n_dense}\\]"):
        check_triton_repository(d)
    with pytest.raises(RtbError, match="tritonserver: exited with code") as e:   # the model refuses to load; --exit-on-error
        triton_server(tmp_path / "repo", log=tmp_path / "triton.log", workdir=tmp_path / "work", timeout_s=60).start()
    assert "failed to load all models" in str(e.value)
    assert f"dense: config says TYPE_FP32 [{n_dense + 1}]; expected TYPE_FP32 [{n_dense}] as in model.onnx" in (tmp_path / "triton.log").read_text()


@pytest.mark.slow
def test_export_triton_cli(runs, tmp_path):
    "`rtb-dcn export --run RUN --triton DIR` writes the repository (onnxruntime platform) next to the export."
    from rtb_dcn.deploy import check_triton_repository
    import shutil
    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    r = run_cli("export", "--run", run, "--parity-rows", 200, "--quiet", "--triton", tmp_path / "triton")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "triton:" in r.stdout
    cfg = check_triton_repository(tmp_path / "triton" / "rtb_dcn")
    assert cfg["platform"] == "onnxruntime_onnx" and cfg["max_batch_size"] == 256
    (run / "model.onnx").unlink()
    from rtb_dcn.deploy import write_triton_repository
    with pytest.raises(RtbError, match="model.onnx is missing"): write_triton_repository(run, tmp_path / "t2")
