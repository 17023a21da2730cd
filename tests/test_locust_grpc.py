"""Locust against a KServe-v2 gRPC model server: `rtb-dcn loadtest --endpoint kserve_grpc` (headless Locust in its own
process; the locustfile's `KServeGrpcUser` calls `ModelInfer` through the router's own gRPC client and fires Locust's
request events) against a real `rtb-dcn model-server --grpc-port` on 127.0.0.1, 2 users for a few seconds: requests, no
failures, every call seen by the model server; the server killed mid-run: the calls after it are counted failures and
Locust ends normally; a target that is not host:port is one line, exit 2."""
import csv, json, subprocess
import pytest
from conftest import BIN, ROOT, run_cli


def _args(runs, target, out, name, duration=4):
    return ["loadtest", "--target", target, "--endpoint", "kserve_grpc", "--run", runs["run"], "--data", runs["data"],
            "--format", "ipinyou", "--rows", 200, "--users", 2, "--spawn-rate", 2, "--qps", 40, "--duration", duration,
            "--out-dir", out, "--name", name, "--quiet"]


def test_locust_grpc_against_the_model_server(runs, start_model_server, tmp_path):
    from rtb_dcn.servers import free_port
    gport = free_port()
    with start_model_server(runs["run"], grpc_port=gport) as ms:
        r = run_cli(*_args(runs, f"127.0.0.1:{gport}", tmp_path, "grpc"), timeout=180)
        served = ms.metric("rtb_model_requests_total")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert r.stdout.startswith(f"loadtest steady kserve_grpc -> grpc://127.0.0.1:{gport}/inference.GRPCInferenceService/ModelInfer: ")
    summ = json.loads((tmp_path / "grpc_locust.json").read_text())
    n = summ["requests"]
    assert n > 20 and summ["failures"] == 0, summ
    assert summ["status"] == {"kserve_grpc": {"OK": n}}, summ["status"]
    assert n <= served <= n + 2, (n, served)              # each call reached the server (one may be cut off at the stop)
    with open(tmp_path / "grpc_stats.csv", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    assert rows["kserve_grpc"]["Type"] == "grpc" and int(rows["kserve_grpc"]["Request Count"]) == n


def test_locust_grpc_server_down_mid_run_is_counted(runs, start_model_server, tmp_path):
    import time
    from rtb_dcn.servers import free_port
    gport = free_port()
    ms = start_model_server(runs["run"], grpc_port=gport)
    p = subprocess.Popen([str(BIN / "rtb-dcn"), *map(str, _args(runs, f"127.0.0.1:{gport}", tmp_path, "down", duration=5))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        t0 = time.monotonic()
        while ms.metric("rtb_model_requests_total") < 10:           # Locust is sending: now the server goes away
            assert p.poll() is None and time.monotonic() - t0 < 60, "Locust never reached the model server"
            time.sleep(0.2)
        ms.kill()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None: p.kill()
        ms.stop()
    assert p.returncode == 0, out + err[-2000:]
    summ = json.loads((tmp_path / "down_locust.json").read_text())
    st = summ["status"]["kserve_grpc"]
    assert st.get("OK", 0) >= 10 and summ["failures"] > 0 and summ["failures"] == summ["requests"] - st["OK"], summ["status"]
    assert set(st) - {"OK"} <= {"unavailable", "timeout", "closed"}, st
    assert "UNAVAILABLE" in (tmp_path / "down_failures.csv").read_text()
    assert "Traceback" not in (tmp_path / "down_locust.log").read_text()


@pytest.mark.parametrize("target, msg", [
    ("http://127.0.0.1:8501", "target: 'http://127.0.0.1:8501' is invalid; expected host:port (or grpc://host:port)"),
    ("127.0.0.1:9", "target: grpc://127.0.0.1:9 is unreachable"),
])
def test_locust_grpc_bad_target_is_one_line_exit_2(runs, tmp_path, target, msg):
    r = run_cli(*_args(runs, target, tmp_path, "bad"), timeout=60)
    err = r.stderr.strip()
    assert r.returncode == 2 and msg in err and len(err.splitlines()) == 1, (r.returncode, err)
