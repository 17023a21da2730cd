"`rtb-dcn ab-report` as a user runs it: a bid log + exchange events from a replayed A/B, and bad input as one line."
import json
import zlib
import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def ab_logs(tmp_path_factory):
    """A/B on a synthetic iPinYou log: users split by the Splitter, `const` (arm a) against `lin` (arm b) replayed
    under half the budget each, written as the router's bid log and the exchange's events."""
    from rtb_dcn.synth import write_synth
    from rtb_dcn.data import read_dataset
    from rtb_dcn.bidding import MarketStats, make_strategy
    from rtb_dcn.experiments import experiment_log, ab_outcomes, two_arms, write_logs
    d = tmp_path_factory.mktemp("ab")
    write_synth(d / "syn.txt", "ipinyou", rows=30_000, seed=3, progress=False)
    raw = read_dataset(d / "syn.txt", "ipinyou")
    log = experiment_log(raw, raw.true_pctr)
    stats = MarketStats.fit(log.pctr, log.market_price, log.click)
    frame = ab_outcomes(log, {"a": make_strategy("const", 80, stats), "b": make_strategy("lin", 200, stats)}, two_arms("t"))
    write_logs(frame, d / "bids.jsonl", d / "events.jsonl")
    return d, frame


def test_ab_report_writes_json_and_markdown(ab_logs, tmp_path):
    d, frame = ab_logs
    r = run_cli("ab-report", "--bid-log", d / "bids.jsonl", "--events", d / "events.jsonl", "--weights", "a=0.5,b=0.5",
                "--n-boot", 200, "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("ab-report: 2 arm(s), 30,000 decisions") and "winner b" in last, last
    assert "join: 0 duplicate decisions, 0 events for unknown impressions, 0 events refused" in last, last
    assert "| a |" in r.stdout and "| b |" in r.stdout            # the arm table
    rep = json.loads((tmp_path / "rep" / "ab_report.json").read_text())
    arms = {a["arm"]: a for a in rep["arms"]}
    for arm, g in frame.groupby("arm"):
        assert (arms[arm]["requests"], arms[arm]["imps"], arms[arm]["clicks"]) == (len(g), int(g.won.sum()), int(g.clicked.sum()))
        assert arms[arm]["ctr_low"] <= arms[arm]["ctr"] <= arms[arm]["ctr_high"]
        assert arms[arm]["ecpc_low"] <= arms[arm]["ecpc"] <= arms[arm]["ecpc_high"]
    assert rep["srm"]["unit"] == "users" and not rep["srm"]["mismatch"]
    assert rep["srm"]["observed"] == [frame[frame.arm == a].user.nunique() for a in ("a", "b")]
    # every win is in both files: applied once, the copy counted as a duplicate, nothing unknown
    assert rep["counts"]["win"]["applied"] == rep["counts"]["win"]["duplicate"] == int(frame.won.sum())
    assert rep["counts"]["win"]["unknown"] == rep["counts"]["click"]["unknown"] == 0
    assert {t["metric"] for t in rep["tests"]} == {"win_rate", "ctr", "clicks_per_request", "ecpm", "ecpc", "spend_per_request"}
    md = (tmp_path / "rep" / "ab_report.md").read_text()
    assert "Sample ratio** (users per arm)" in md and "winner **b**" in md


def test_ab_report_bid_log_only_and_json(ab_logs):
    "Without events, the router's win lines alone give the impressions (no clicks); --json prints the report."
    d, frame = ab_logs
    r = run_cli("ab-report", "--bid-log", d / "bids.jsonl", "--n-boot", 100, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert sum(a["imps"] for a in rep["arms"]) == int(frame.won.sum())
    assert sum(a["clicks"] for a in rep["arms"]) == 0
    assert rep["weights"] is None and rep["srm"]["weights"] == [0.5, 0.5]
    assert r.stderr.strip().splitlines()[-1].startswith("ab-report: ")


def test_ab_report_srm_flags_a_lopsided_log(ab_logs, tmp_path):
    "Arm b's users thinned to 80% of a's: the SRM check says MISMATCH (users counted)."
    d, frame = ab_logs
    keep = []
    for line in open(d / "bids.jsonl"):
        rec = json.loads(line)
        if rec["arm"] == "b" and rec["status"] != "win" and zlib.crc32(rec["user"].encode()) % 5 == 0: continue
        keep.append(line)
    (tmp_path / "thin.jsonl").write_text("".join(keep))
    r = run_cli("ab-report", "--bid-log", tmp_path / "thin.jsonl", "--events", d / "events.jsonl", "--n-boot", 100,
                "--weights", "a=0.5,b=0.5", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["srm"]["mismatch"] and rep["srm"]["p_value"] < 1e-6
    assert rep["counts"]["win"]["unknown"] > 0          # the thinned bids' wins: counted as unknown, not dropped


def _one_line_error(r, *parts):
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for p in parts: assert p in err, err


def test_ab_report_bad_input(ab_logs, tmp_path):
    d, _ = ab_logs
    bids = str(d / "bids.jsonl")
    _one_line_error(run_cli("ab-report", "--bid-log", tmp_path / "missing.jsonl"), "missing.jsonl: no such file")
    _one_line_error(run_cli("ab-report"), "--bid-log: missing")
    _one_line_error(run_cli("ab-report", "--bid-log", bids, "--events", tmp_path / "nope.jsonl"), "nope.jsonl: no such file")
    _one_line_error(run_cli("ab-report", "--bid-log", bids, "--weights", "a=0.5,c=0.5"), "weights: arm 'c' is not in the bid log")
    _one_line_error(run_cli("ab-report", "--bid-log", bids, "--weights", "a=0.5"), "weights: no weight for arm 'b'")
    _one_line_error(run_cli("ab-report", "--bid-log", bids, "--weights", "a=half,b=0.5"), "--weights: 'a=half' is invalid")
    _one_line_error(run_cli("ab-report", "--bid-log", bids, "--control", "z"), "control: 'z' is not an arm")
    _one_line_error(run_cli("ab-report", "--bid-log", bids, "--metric", "ecpc"), "metric: 'ecpc' is invalid")
    lines = open(bids).read().splitlines()[:5]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:3] + ['{"ts": 1, "request_id": "x", oops'] + lines[3:]) + "\n")
    _one_line_error(run_cli("ab-report", "--bid-log", f"{bids},{bad}"), "bad.jsonl:4: not valid JSON")
    rec = json.loads(lines[0]); rec["status"] = "won"
    bad.write_text(json.dumps(rec) + "\n")
    _one_line_error(run_cli("ab-report", "--bid-log", bad), "bad.jsonl:1: status: 'won' is invalid")
    rec = json.loads(lines[0]); rec["status"], rec["price"] = "bid", "cheap"
    bad.write_text(json.dumps(rec) + "\n")
    _one_line_error(run_cli("ab-report", "--bid-log", bad), "bad.jsonl:1: price: 'cheap' is invalid")
    rec = json.loads(lines[0]); del rec["request_id"]
    bad.write_text(json.dumps(rec) + "\n")
    _one_line_error(run_cli("ab-report", "--bid-log", bad), "bad.jsonl:1: request_id missing")
