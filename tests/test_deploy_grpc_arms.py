"""gRPC selectable per A/B arm: one router (`rtb-dcn serve`, a subprocess on 127.0.0.1) whose A/B config has an arm
scoring in process (ONNX Runtime, the settings' scorer) and an arm scoring through `rtb-dcn model-server --grpc-port`
(KServe-v2 gRPC, another subprocess) gives the same pCTR for the same request on both arms (<= 1e-5); the answers and
the router's metrics name the arm; only the gRPC arm reaches the model server. A bad per-arm scorer is one line naming
the arm and the field, exit 2."""
import pytest
import yaml
from conftest import run_cli, unfloored_requests

N = 30
BASE = {"RTB_FEATURE_STORE": "none", "RTB_BID_LOG": "off", "RTB_STRATEGY": "lin", "RTB_STRATEGY_PARAM": 300,
        "RTB_TMAX_DEFAULT_MS": 5000, "RTB_SCORER_TIMEOUT_MS": 2000, "RTB_AB_OVERRIDE_HEADER": "true"}


def _ab(path, arms) -> str:
    path.write_text(yaml.safe_dump({"salt": "grpc-arms", "arms": arms}))
    return str(path)


def test_router_arm_in_process_and_arm_over_grpc(runs, requests_, start_model_server, start_router, tmp_path):
    from rtb_dcn.servers import free_port
    gport = free_port()
    ab = _ab(tmp_path / "ab.yaml", [{"name": "local", "weight": 1, "run": str(runs["run"])},
                                    {"name": "grpc", "weight": 1, "run": str(runs["run"]), "scorer": "kserve_grpc",
                                     "scorer_url": f"127.0.0.1:{gport}"}])
    reqs = unfloored_requests(requests_, "grpc-arm", N)
    with start_model_server(runs["run"], grpc_port=gport) as ms, start_router(runs["run"], env={**BASE, "RTB_AB_CONFIG": ab}) as s:
        ready = s.client.get("/readyz").json()
        assert ready["status"] == "ready" and set(ready["arms"]) == {"local", "grpc"}, ready
        answers, scored = {}, {}
        for arm in ("local", "grpc"):
            before = ms.metric("rtb_model_requests_total")
            out = []
            for q in reqs:
                r = s.client.post("/openrtb2/bid", json=q, headers={"X-RTB-Arm": arm})
                assert r.status_code in (200, 204), r.text
                if r.status_code == 200:
                    b = r.json()["seatbid"][0]["bid"][0]
                    assert b["ext"]["arm"] == arm, b["ext"]
                    out.append(b["ext"]["pctr"])
                else: out.append(None)
            answers[arm], scored[arm] = out, ms.metric("rtb_model_requests_total") - before
        assert s.metric("rtb_requests_total", arm="local") == N and s.metric("rtb_requests_total", arm="grpc") == N
        assert s.metric("rtb_bids_total", arm="grpc") == sum(p is not None for p in answers["grpc"])
    assert scored == {"local": 0, "grpc": N}, scored          # only the gRPC arm calls the model server, once per request
    assert sum(p is not None for p in answers["local"]) >= N // 2, answers["local"]
    for p0, p1 in zip(answers["local"], answers["grpc"]):
        assert (p0 is None) == (p1 is None) and (p0 is None or abs(p0 - p1) <= 1e-5), (p0, p1)


@pytest.mark.parametrize("arm, msg", [
    ({"scorer": "grpc"}, "arms.1.scorer: 'grpc' is invalid for arm 'remote'; Input should be 'onnx', 'tf', 'kserve', 'kserve_grpc' or 'sagemaker'"),
    ({"scorer": "kserve_grpc"}, "scorer_url: not set for arm 'remote' (scorer kserve_grpc); expected its host:port"),
])
def test_bad_arm_scorer_is_one_line_exit_2(runs, tmp_path, arm, msg):
    ab = _ab(tmp_path / "ab.yaml", [{"name": "local", "weight": 1}, {"name": "remote", "weight": 1, **arm}])
    r = run_cli("serve", "--run", runs["run"], "--host", "127.0.0.1", "--port", 9, env={"RTB_AB_CONFIG": ab}, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    errors = [l for l in r.stderr.splitlines() if "error" in l.lower()]
    assert "Traceback" not in r.stderr and len(errors) == 1 and msg in errors[0], r.stderr[-2000:]
