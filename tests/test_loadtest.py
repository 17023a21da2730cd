"""`rtb-dcn loadtest` as a user runs it (subprocess, headless Locust in its own process) against the real router
(`rtb-dcn serve` / uvicorn subprocess on 127.0.0.1, two A/B arms, the override header on), then the
latency/throughput runbook rendered with papermill from the CSVs it wrote (mode csv). Bad input: one line, exit 2."""
import json
from pathlib import Path
import pytest
from conftest import ROOT, run_cli


def cli(command, *args, timeout=120):
    "`rtb-dcn <command> ...` (subprocess)."
    return run_cli(command, *args, timeout=timeout)


@pytest.fixture(scope="module")
def router(runs, start_router, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loadtest_router")
    ab = tmp / "ab.yaml"
    ab.write_text(f"salt: lt\narms:\n  - name: control\n    weight: 0.5\n    run: {runs['run']}\n"
                  f"  - name: treatment\n    weight: 0.5\n    run: {runs['run2']}\n")
    with start_router(runs["run"], env={"RTB_FEATURE_STORE": "none", "RTB_BID_LOG": tmp / "bids.jsonl", "RTB_TMAX_DEFAULT_MS": 2000,
                                        "RTB_AB_CONFIG": ab, "RTB_AB_OVERRIDE_HEADER": "true"}) as s:
        yield s


def _stats(prefix):
    import csv
    with open(f"{prefix}_stats.csv", newline="") as f: return {r["Name"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def csvs(router, runs, tmp_path_factory):
    "Locust runs (steady, malformed, ab) and two replay levels against the router, all in one folder."
    d = tmp_path_factory.mktemp("lt_csv")
    common = ["--target", router.url, "--data", runs["data"], "--format", "ipinyou", "--rows", 400, "--out-dir", d, "--quiet"]
    out = {}
    for scen, extra in (("steady", ["--users", 4, "--qps", 40, "--duration", 5]),
                        ("malformed", ["--users", 4, "--qps", 40, "--duration", 4, "--malformed-share", 0.3]),
                        ("ab", ["--users", 2, "--qps", 20, "--duration", 3])):
        r = cli("loadtest", "--scenario", scen, "--name", f"locust_router_{scen}", *common, *extra)
        assert r.returncode == 0, r.stdout + r.stderr[-2000:]
        out[scen] = (r.stdout.strip().splitlines()[-1], d / f"locust_router_{scen}")
    for q in (20, 40):
        r = cli("replay", "--data", runs["data"], "--format", "ipinyou", "--target", router.url + "/openrtb2/bid", "--qps", q,
                "--duration", 1.5, "--loop", "--timeout-ms", 5000, "--summary-json", d / f"replay_router_{q}.json", "--quiet")
        assert r.returncode == 0, r.stderr[-2000:]
    return d, out


def test_locust_csvs_against_the_router(csvs):
    d, out = csvs
    for scen, (line, prefix) in out.items():
        assert line.startswith(f"loadtest {scen} bid -> "), line
        for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", "_exceptions.csv", "_status.json", "_locust.json"):
            assert Path(f"{prefix}{suffix}").is_file(), (scen, suffix)
        agg = _stats(prefix)["Aggregated"]
        assert int(agg["Request Count"]) > 0, (scen, agg)
        status = json.loads(Path(f"{prefix}_status.json").read_text())
        assert not [c for st in status.values() for c in st if c.startswith("5") or c == "0"], (scen, status)   # no 5xx, no timeouts
        summ = json.loads(Path(f"{prefix}_locust.json").read_text())
        assert summ["requests"] == int(agg["Request Count"]) == sum(n for st in status.values() for n in st.values()), (scen, summ)
    # steady: every answer a bid (200) or a no-bid (204), no failure
    p = out["steady"][1]
    assert int(_stats(p)["Aggregated"]["Failure Count"]) == 0, Path(f"{p}_failures.csv").read_text()
    assert set(json.loads(Path(f"{p}_status.json").read_text())["bid"]) <= {"200", "204"}
    # malformed: the bad requests got 400 (counted as successes), the good ones 200/204; nothing failed
    p = out["malformed"][1]
    st, status = _stats(p), json.loads(Path(f"{p}_status.json").read_text())
    bad = {k: v for k, v in status.items() if "malformed" in k}
    assert sum(n for v in bad.values() for n in v.values()) > 5 and all(set(v) == {"400"} for v in bad.values()), status
    assert all(int(st[k]["Failure Count"]) == 0 for k in bad), st
    assert int(st["Aggregated"]["Failure Count"]) == 0, Path(f"{p}_failures.csv").read_text()
    # ab: both arms asked for through the override header, every bid from the arm asked for
    p = out["ab"][1]
    st = _stats(p)
    assert {"bid [arm control]", "bid [arm treatment]"} <= set(st), set(st)
    assert int(st["Aggregated"]["Failure Count"]) == 0, Path(f"{p}_failures.csv").read_text()


def test_report_renders_from_the_csvs(csvs, tmp_path):
    import papermill as pm
    d, _ = csvs
    rep = tmp_path / "report"
    pm.execute_notebook(str(ROOT / "nbs" / "reports" / "latency_throughput.ipynb"), str(tmp_path / "lt.ipynb"), cwd=str(ROOT),
                        kernel_name="python3", progress_bar=False,
                        parameters={"mode": "csv", "csv_dir": str(d), "report_dir": str(rep), "quick": True})
    for png in ("latency_vs_qps.png", "throughput.png", "error_rates.png", "rate_accuracy.png", "locust_history.png"):
        assert (rep / png).stat().st_size > 1000, png
    levels = (rep / "replay_levels.csv").read_text().splitlines()
    assert len(levels) == 3 and all(l.startswith("router,") for l in levels[1:]), levels
    runs_csv = (rep / "locust_runs.csv").read_text()
    assert runs_csv.count("\n") == 4 and "malformed" in runs_csv, runs_csv


@pytest.mark.parametrize("args, msg", [
    (["--scenario", "soak"], "scenario: 'soak' is not supported; expected one of steady, burst, ab, malformed"),
    (["--endpoint", "grpc"], "endpoint: 'grpc' is not supported; expected one of bid, predict, kserve"),
    (["--duration", 0], "duration: 0.0 is invalid; expected seconds > 0"),
    (["--target", "http://127.0.0.1:9"], "target: http://127.0.0.1:9 is unreachable"),
    (["--malformed-share", 2], "malformed_share: 2.0 is invalid"),
])
def test_bad_input_is_one_line_exit_2(args, msg):
    r = cli("loadtest", *args, "--quiet", timeout=60)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert msg in err and len(err.splitlines()) == 1, err
