"""SageMaker's serving contract as the container runs it: `rtb-dcn sagemaker-serve serve` (the BYOC image's entrypoint) as
a real subprocess answers GET /ping and POST /invocations (JSON and CSV); the router's SageMakerScorer, a real boto3
`sagemaker-runtime` client whose endpoint URL points at it, gets in-process ONNX Runtime's pCTR; a router configured with
RTB_SCORER=sagemaker (and boto3's AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME) answers like one scoring in-process."""
import numpy as np
import pytest

AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def container(runs, server_logs):
    "The SageMaker entrypoint on a free port of 127.0.0.1 (in the image: 0.0.0.0:8080), healthy when /ping answers."
    from rtb_dcn.servers import Server, free_port, rtb_dcn_exe
    port = free_port()
    with Server("sagemaker-serve", [rtb_dcn_exe(), "sagemaker-serve", "serve", "--host", "127.0.0.1", "--port", port],
                port, health="/ping", env={"SM_MODEL_DIR": runs["run"]}, log=server_logs, timeout_s=120) as s:
        yield s


def test_ping_and_invocations_json_and_csv(container, runs, batch):
    from rtb_dcn.scoring import OnnxScorer, kserve_request, kserve_pctr
    ids, dense = batch
    local = OnnxScorer(runs["run"]).score(ids, dense)
    c = container.client
    assert c.get("/ping").status_code == 200
    r = c.post("/invocations", json=kserve_request(ids, dense))
    assert r.status_code == 200 and np.array_equal(kserve_pctr(r.content, len(ids)), local)
    csv = "".join(",".join(map(str, [*ids[i].tolist(), *dense[i].tolist()])) + "\n" for i in range(len(ids)))
    r = c.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert np.array_equal(np.array(r.text.split(), np.float32), local)
    r = c.post("/invocations", content=csv, headers={"content-type": "text/csv", "accept": "application/json"})
    assert np.array_equal(np.array(r.json()["predictions"], np.float32), local)
    r = c.post("/invocations", content="1,2\n", headers={"content-type": "text/csv"})
    assert r.status_code == 400 and r.json()["error"].startswith("line 1: 2 values; expected ")
    assert c.post("/invocations", content=b"\x93NUMPY", headers={"content-type": "application/x-npy"}).status_code == 415


def test_sagemaker_scorer_over_http(container, runs, batch):
    "The real boto3 client (SigV4-signed, botocore-validated) talks to the container through an endpoint URL override."
    from rtb_dcn.scoring import OnnxScorer, SageMakerScorer, ScorerError, make_scorer
    import os
    ids, dense = batch
    local = OnnxScorer(runs["run"]).score(ids, dense)
    old = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        sm = make_scorer("sagemaker", endpoint="rtb-dcn-prod", region="us-east-1", endpoint_url=container.url, timeout_s=5)
        assert isinstance(sm, SageMakerScorer)
        assert np.array_equal(sm.score(ids, dense), local)
        assert np.array_equal(np.concatenate([sm.score(ids[i], dense[i]) for i in range(5)]), local[:5])
        with pytest.raises(ScorerError) as e:                                   # the container's 400 -> a typed error
            sm.score(ids[:1], np.hstack([dense[:1], dense[:1]]))
        assert e.value.reason == "bad_request" and "ModelError: Received client error (400) from primary" in str(e.value)
        assert "inputs[1].shape" in str(e.value)
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def test_router_scores_through_the_sagemaker_contract(container, runs, requests_, start_router):
    reqs = requests_[:30]
    base = {"RTB_FEATURE_STORE": "none", "RTB_BID_LOG": "off", "RTB_STRATEGY": "lin", "RTB_STRATEGY_PARAM": 300,
            "RTB_TMAX_DEFAULT_MS": 5000, "RTB_SCORER_TIMEOUT_MS": 2000}
    answers = {}
    for name, extra in (("onnx", {"RTB_SCORER": "onnx"}),
                        ("sagemaker", {"RTB_SCORER": "sagemaker", "RTB_SCORER_URL": "rtb-dcn-prod",
                                       "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": container.url, **AWS_ENV})):
        with start_router(runs["run"], env={**base, **extra}) as s:
            assert s.client.get("/readyz").json()["status"] == "ready"
            out = []
            for q in reqs:
                r = s.client.post("/openrtb2/bid", json=q)
                assert r.status_code in (200, 204), r.text
                out.append(r.json()["seatbid"][0]["bid"][0]["ext"]["pctr"] if r.status_code == 200 else None)
            answers[name] = out
    assert any(p is not None for p in answers["onnx"])
    assert answers["sagemaker"] == answers["onnx"]
