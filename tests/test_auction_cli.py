"`rtb-dcn auction-replay` as a user meets it: one JSON object, a table for several strategies/budgets, one-line errors (exit 2)."
import json
import pytest
from conftest import run_cli
from rtb_dcn.units import cost_to_cpm


@pytest.fixture(scope="module")
def camp(samples):
    d = samples / "ipinyou" / "rtbarbitrage-1458"
    return d / "1458.train.txt", d / "1458.test.txt"


def test_json_one_object(camp):
    tr, te = camp
    r = run_cli("auction-replay", "--train", tr, "--test", te, "--format", "yzp", "--strategy", "lin", "--param", "75",
                "--budget-prop", "16", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for k in ("bids", "imps", "clicks", "spend", "win_rate", "ecpm", "ecpc", "profit", "ctr"):
        assert k in d, k
    assert (d["strategy"], d["param"], d["budget_prop"], d["tuned"]) == ("lin", 75.0, 16.0, False)
    assert 0 < d["imps"] <= d["bids"] <= 80_000 and 0 <= d["clicks"] <= 51
    assert abs(d["win_rate"] - d["imps"] / d["bids"]) < 1e-12
    assert cost_to_cpm(d["spend"]) >= 5425163 / 16   # the budget was reached (spend in fen; 5425163: the test log's total CPM cost)
    assert "auction-replay:" in r.stderr


def test_tuned_table(camp, tmp_path):
    tr, te = camp
    out = tmp_path / "t.csv"
    r = run_cli("auction-replay", "--train", tr, "--test", te, "--strategy", "const,lin,ortb1", "--budget-prop", "16,64", "--out", out)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("auction-replay: 3 strategy(ies) x 2 budget(s) on 1458.test.txt (80,000 auctions, 51 clicks)")
    assert "ecpc" in r.stdout and "ortb1" in r.stdout
    assert len(out.read_text().strip().splitlines()) == 1 + 6
    r = run_cli("auction-replay", "--train", tr, "--test", te, "--strategy", "const,lin", "--budget-prop", "16", "--json")
    rows = json.loads(r.stdout)["results"]
    assert [x["strategy"] for x in rows] == ["const", "lin"] and all(x["tuned"] for x in rows)


def test_errors_are_one_line(camp, tmp_path, samples):
    tr, te = camp
    neg = tmp_path / "neg.txt"; neg.write_text("0\t50\t0.001\t0\n1\t-3\t0.002\t0\n")
    big = tmp_path / "big.txt"; big.write_text("0\t50\t0.001\t0\n1\t30\t1.5\t0\n")
    crit = samples / "criteo" / "criteo_sample.txt"
    for args, msg in [(("--strategy", "gbdt"), "strategy: 'gbdt' is unknown; expected one of const, rand, lin, ortb1, ortb2, truth"),
                      (("--budget-prop", "0"), "budget_prop: 0 is invalid; expected a proportion > 0"),
                      (("--budget-prop", "-4"), "budget_prop: -4 is invalid"),
                      (("--test", neg), "neg.txt: market_price: row 2: -3 is negative"),
                      (("--test", big), "big.txt: pctr: row 2: 1.5 is outside [0, 1]"),
                      (("--train", crit, "--test", crit, "--format", "criteo"), "no market-price column"),
                      (("--format", "csv"), "format: 'csv' is not a replay format")]:
        base = {"--train": tr, "--test": te, "--strategy": "lin", "--param": "75"}
        kv = dict(zip(args[::2], args[1::2]))
        argv = [x for k, v in {**base, **kv}.items() for x in (k, v)]
        r = run_cli("auction-replay", *argv)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and msg in r.stderr, (args, r.stderr)
