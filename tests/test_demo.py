"The main job (`rtb-dcn demo`, what `make demo` runs) end to end on the embedded default, small sizes."
import csv
from conftest import run_cli


def test_demo_quick_writes_report(tmp_path):
    r = run_cli("demo", "--quick", "--report-dir", tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "runbook(s) executed" in r.stdout
    out = tmp_path / "data_summary"
    for f in ("data_summary.ipynb", "datasets.csv", "columns.csv", "synthetic.csv", "samples.png", "synthetic.png"):
        assert (out / f).stat().st_size > 0, f
    rows = {r["dataset"]: r for r in csv.DictReader(open(out / "datasets.csv"))}
    assert rows["criteo"]["rows"] == "200" and rows["criteo"]["clicks"] == "49"
    assert rows["ipinyou-2259-train"]["rows"] == "8355" and rows["ipinyou-2259-train"]["clicks"] == "5"
    syn = list(csv.DictReader(open(out / "synthetic.csv")))
    assert {s["format"] for s in syn} == {"criteo", "ipinyou"}
    for s in syn:  # the planted crosses matter: the oracle beats a first-order LR
        assert float(s["oracle_logloss"]) < float(s["lr_first_order_logloss"])


def test_demo_unknown_runbook_is_one_line(tmp_path):
    r = run_cli("demo", "--only", "nope", "--report-dir", tmp_path)
    assert r.returncode == 2
    assert "runbook: 'nope' not found" in r.stderr and "Traceback" not in r.stderr
