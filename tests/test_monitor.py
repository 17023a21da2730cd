"""`rtb-dcn monitor baseline | check | quality` end to end on iPinYou-shaped logs: the issue's three acceptance cases
(no drift on the same distribution; two shifted features + one new category named exactly; a 70% CTR drop raises
the calibration violation), the exit statuses, and bad input (violations or one-line errors, never a traceback)."""
import json
import numpy as np
import pytest
from conftest import run_cli
from rtb_dcn.data import SCHEMAS
from rtb_dcn.monitor import EXIT_VIOLATIONS, clicks_to_detect

COL = {c: i for i, c in enumerate(SCHEMAS['ipinyou'].raw)}


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    "A 60k-row log (the baseline window), its baseline, and a 40k-row window resampled from it (same distribution)."
    from rtb_dcn.synth import write_synth
    d = tmp_path_factory.mktemp("monitor")
    write_synth(d / "train.txt", "ipinyou", rows=60_000, seed=3, progress=False)
    r = run_cli("monitor", "baseline", "--data", d / "train.txt", "--format", "ipinyou", "--out", d / "base")
    assert r.returncode == 0, r.stderr
    lines = (d / "train.txt").read_text().splitlines()
    pctr = (d / "train.txt.pctr").read_text().splitlines()
    idx = np.sort(np.random.default_rng(7).choice(len(lines), 40_000, replace=False))
    return dict(dir=d, base=d / "base", lines=[lines[i].split("\t") for i in idx], pctr=[pctr[i] for i in idx])


def write(path, rows, pctr=None):
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    if pctr is not None: path.with_name(path.name + ".pctr").write_text("".join(p + "\n" for p in pctr))
    return path


def check(logs, path, *extra):
    out = path.with_suffix(".out")
    r = run_cli("monitor", "check", "--baseline", logs["base"], "--data", path, "--format", "ipinyou", "--out", out, *extra)
    assert "Traceback" not in r.stderr, r.stderr
    v = json.loads((out / "constraint_violations.json").read_text())["violations"] if (out / "constraint_violations.json").exists() else None
    return r, v


def test_baseline_files_are_model_monitor_schema(logs):
    st = json.loads((logs["base"] / "statistics.json").read_text())
    co = json.loads((logs["base"] / "constraints.json").read_text())
    assert st["dataset"]["item_count"] == 60_000
    f = {x["name"]: x for x in st["features"]}
    kll = f["market_price"]["numerical_statistics"]["distribution"]["kll"]
    assert len(kll["buckets"]) == 10 and kll["sketch"]["parameters"]["k"] == 2048
    assert sum(len(l) * 2 ** i for i, l in enumerate(kll["sketch"]["data"])) == 60_000
    assert f["adexchange"]["inferred_type"] == "String"
    assert co["monitoring_config"]["distribution_constraints"]["comparison_method"] == "Simple"
    assert {"completeness", "inferred_type"} <= set(co["features"][0])


def test_same_distribution_has_no_violation(logs):
    r, v = check(logs, write(logs["dir"] / "same.txt", logs["lines"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert v == []


def test_same_log_by_day_windows_has_no_drift(logs):
    r, v = check(logs, logs["dir"] / "train.txt", "--window", "1d")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("2013-10-") >= 3 and v == []


def test_two_shifted_features_and_a_new_category_are_named_exactly(logs):
    rows = [list(r) for r in logs["lines"]]
    regions = sorted({r[COL["region"]] for r in rows})
    rare = min(regions, key=[r[COL["region"]] for r in rows].count)
    for i, r in enumerate(rows):
        r[COL["payprice"]] = str(int(r[COL["payprice"]]) * 3 // 2 + 20)   # market price shifted
        if i % 4 == 0: r[COL["region"]] = rare                           # a quarter of the traffic moved to a rare region
        if i % 5 == 0: r[COL["adexchange"]] = "9"                        # a new ad exchange
    r, v = check(logs, write(logs["dir"] / "shifted.txt", rows))
    assert r.returncode == EXIT_VIOLATIONS, r.stdout + r.stderr
    assert {x["feature_name"] for x in v} == {"market_price", "region", "adexchange"}
    assert {x["constraint_check_type"] for x in v if x["feature_name"] == "adexchange"} >= {"categorical_values_check"}
    assert {x["feature_name"] for x in v if x["constraint_check_type"] == "baseline_drift_check"} >= {"market_price", "region"}
    assert [x["feature_name"] for x in v if x["constraint_check_type"] == "categorical_values_check"] == ["adexchange"]
    assert "'9'" in next(x["description"] for x in v if x["constraint_check_type"] == "categorical_values_check")
    assert "market_price" in r.stdout


def quality(logs, path, *extra):
    out = path.with_suffix(".q")
    r = run_cli("monitor", "quality", "--data", path, "--format", "ipinyou", "--out", out, *extra)
    assert "Traceback" not in r.stderr, r.stderr
    return r, json.loads((out / "constraint_violations.json").read_text())["violations"]


def test_ctr_drop_raises_the_calibration_violation(logs):
    r, v = quality(logs, write(logs["dir"] / "q_same.txt", logs["lines"], logs["pctr"]))
    assert r.returncode == 0 and v == [], r.stdout + r.stderr
    rows = [list(x) for x in logs["lines"]]
    clicked = [i for i, x in enumerate(rows) if x[0] == "1"]
    expected = sum(map(float, logs["pctr"]))
    assert expected >= clicks_to_detect(0.7)        # enough clicks for a 70% drop to be seen (the notebook's rule)
    for j, i in enumerate(clicked):
        if j % 10 < 7: rows[i][0] = "0"                                   # 70% of the clicks lost
    r, v = quality(logs, write(logs["dir"] / "q_drop.txt", rows, logs["pctr"]))
    assert r.returncode == EXIT_VIOLATIONS, r.stdout + r.stderr
    assert [(x["metric_name"], x["constraint_check_type"]) for x in v] == [("calibration", "GreaterThanThreshold")]


def test_bad_input_is_one_line_or_a_violation(logs, tmp_path):
    # a baseline folder with a malformed file: one line, exit 2
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "statistics.json").write_text("{not json")
    (tmp_path / "b" / "constraints.json").write_text("{}")
    r = run_cli("monitor", "check", "--baseline", tmp_path / "b", "--data", logs["dir"] / "train.txt", "--format", "ipinyou", "--out", tmp_path / "o")
    assert r.returncode == 2 and "not valid JSON" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    # columns that differ from the baseline's: missing/extra column violations, not a crash
    from rtb_dcn.synth import write_synth
    write_synth(tmp_path / "avazu.txt", "avazu", rows=2_000, seed=1, progress=False)
    r = run_cli("monitor", "check", "--baseline", logs["base"], "--data", tmp_path / "avazu.txt", "--format", "avazu", "--out", tmp_path / "o2")
    assert r.returncode == EXIT_VIOLATIONS and "Traceback" not in r.stderr, r.stderr
    v = json.loads((tmp_path / "o2" / "constraint_violations.json").read_text())["violations"]
    kinds = {x["constraint_check_type"] for x in v}
    assert {"missing_column_check", "extra_column_check"} <= kinds
    assert any(x["feature_name"] == "market_price" and x["constraint_check_type"] == "missing_column_check" for x in v)
    # a non-numeric value in a numeric column: a data_type_check violation naming the column
    rows = [list(x) for x in logs["lines"][::8]]   # 5,000 rows spread over the days
    rows[10][COL["slotprice"]] = "abc"
    r, v = check(logs, write(tmp_path / "typo.txt", rows))
    assert r.returncode == EXIT_VIOLATIONS, r.stdout + r.stderr
    assert [(x["feature_name"], x["constraint_check_type"]) for x in v] == [("slotprice", "data_type_check")]
    # a time window on a log without timestamps: one line
    write_synth(tmp_path / "criteo.txt", "criteo", rows=1_000, seed=1, progress=False)
    r = run_cli("monitor", "baseline", "--data", tmp_path / "criteo.txt", "--format", "criteo", "--out", tmp_path / "cb")
    assert r.returncode == 0, r.stderr
    r = run_cli("monitor", "check", "--baseline", tmp_path / "cb", "--data", tmp_path / "criteo.txt", "--format", "criteo",
                "--out", tmp_path / "co", "--window", "1h")
    assert r.returncode == 2 and "needs timestamps" in r.stderr, r.stderr
    r = run_cli("monitor", "check", "--baseline", tmp_path / "cb", "--data", tmp_path / "criteo.txt", "--format", "criteo",
                "--out", tmp_path / "co", "--window-rows", "500")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def runbook_run(tmp_path_factory):
    """The model the monitoring runbook's router serves in the test: DCN_test (2 epochs) trained on the training window
    (the days before the last) of the runbook's own synthetic log (60,000 rows, seed 42: the same file it writes)."""
    from rtb_dcn.data import read_dataset
    from rtb_dcn.run import train_frame
    from rtb_dcn.synth import write_synth
    from rtb_dcn.train import load_experiment
    from conftest import EXPERIMENTS
    d = tmp_path_factory.mktemp("runbook_run")
    write_synth(d / "ipy.txt", "ipinyou", rows=60_000, seed=42, progress=False)
    log = read_dataset(d / "ipy.txt", "ipinyou")
    day = log.timestamp.dt.floor("D")
    cfg = load_experiment(EXPERIMENTS / "dcn_criteo.yaml", "DCN_test", format="ipinyou", epochs=2)
    return train_frame(log[day < day.max()], cfg, d / "run", parity_rows=200).path


def test_monitoring_runbook_quick(tmp_path, runbook_run):
    """The demo's monitoring runbook (nbs/reports/monitoring.ipynb), quick, into a temporary folder: both streams replayed
    through a router process, its bid log checked per window; the conclusions hold."""
    import papermill as pm
    from conftest import ROOT
    out = tmp_path / "report"
    pm.execute_notebook(str(ROOT / "nbs" / "reports" / "monitoring.ipynb"), str(tmp_path / "monitoring.ipynb"), cwd=str(ROOT),
                        parameters=dict(quick=True, report_dir=str(out), synth_rows=60_000, far_windows=100, run_dir=str(runbook_run)),
                        progress_bar=False, kernel_name="python3")
    res = json.loads((out / "monitoring.json").read_text())
    assert res["replayed_per_stream"] == 10_000 and all(n >= 9_900 for n in res["decisions"].values()), res["decisions"]   # every 2nd row
    assert res["unshifted_violations"] == 0 and res["named_exactly"] and res["violations_before_shift"] == []
    assert res["shifted_drift_features"] == ["adexchange", "region", "slotprice"] and res["cli_exit_status"] == EXIT_VIOLATIONS
    assert res["calibration_violations_shifted"] >= 1 and res["false_alarm"]["rate"] <= 0.01
    alarms = {a["stream"]: a for a in res["alarms"]}
    assert (alarms["unshifted"]["DriftViolations"], alarms["shifted"]["DriftViolations"]) == ("OK", "ALARM")
    assert (alarms["unshifted"]["CalibrationHigh"], alarms["shifted"]["CalibrationHigh"]) == ("OK", "ALARM")
    assert (alarms["unshifted"]["RtbCalibrationOutOfBand"], alarms["shifted"]["RtbCalibrationOutOfBand"]) == ("OK", "ALARM")
    assert alarms["shifted"]["RtbHighErrorRate"] == "OK"
    for f in ("monitoring.md", "psi_per_window.png", "calibration_per_window.png", "baseline/statistics.json", "shifted/bids.jsonl",
              "shifted/constraint_violations.json", "shifted/quality/statistics.json", "shifted/cli/constraint_violations.json"):
        assert (out / f).stat().st_size > 0, f


def test_quality_of_a_run_scored_log(runs, tmp_path):
    "`monitor quality --run`: the log scored through a trained run's model.onnx (the same scoring `rtb-dcn evaluate` uses)."
    r = run_cli("monitor", "quality", "--data", runs["data"], "--format", "ipinyou", "--run", runs["run"], "--out", tmp_path / "q")
    assert r.returncode in (0, EXIT_VIOLATIONS) and "Traceback" not in r.stderr, r.stderr
    st = json.loads((tmp_path / "q" / "statistics.json").read_text())
    m = st["binary_classification_metrics"]
    assert st["dataset"]["item_count"] == 20_000 and 0.5 < m["auc"]["value"] < 1 and m["calibration"]["value"] > 0
    from rtb_dcn.evaluate import evaluate_run
    ref = evaluate_run(runs["run"], runs["data"], "ipinyou")
    assert m["auc"]["value"] == pytest.approx(ref["auc"], abs=2e-3) and m["logloss"]["value"] == pytest.approx(ref["logloss"], rel=1e-6)
    r = run_cli("monitor", "quality", "--data", runs["data"], "--format", "ipinyou", "--run", runs["broken"], "--out", tmp_path / "q2")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
