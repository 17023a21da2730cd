"`rtb-dcn inspect-data` as a user meets it: table + one-line summary, --json, one-line errors with exit status 2."
import json
from conftest import run_cli


def test_inspect_data_criteo_sample(samples, tmp_path):
    out = tmp_path / "criteo.json"
    r = run_cli("inspect-data", samples / "criteo" / "criteo_sample.txt", "--format", "criteo", "--json", out)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert "200 rows, 49 clicks (label rate 0.2450)" in last and "0 bad lines skipped" in last
    assert "categorical" in r.stdout and "missing_rate" in r.stdout
    d = json.loads(out.read_text())
    assert (d["rows"], d["positives"], d["format"]) == (200, 49, "criteo")


def test_inspect_data_ipinyou_nrows(samples):
    r = run_cli("inspect-data", samples / "ipinyou" / "drsa-2259" / "test.log.txt", "--format", "ipinyou", "--nrows", "1000")
    assert r.returncode == 0, r.stderr
    assert "1,000 rows, 0 clicks" in r.stdout.strip().splitlines()[-1]


def test_inspect_data_skip_counts_bad_lines(samples, tmp_path):
    lines = (samples / "criteo" / "criteo_sample.txt").read_text().splitlines(keepends=True)
    lines[5] = lines[5].split(",", 1)[1]
    p = tmp_path / "bad.csv"; p.write_text("".join(lines))
    r = run_cli("inspect-data", p, "--format", "criteo")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "bad.csv: line 6: found 39 comma-separated fields; expected 40" in r.stderr
    r = run_cli("inspect-data", p, "--format", "criteo", "--on-bad-lines", "skip")
    assert r.returncode == 0, r.stderr
    assert "199 rows" in r.stdout and "1 bad lines skipped" in r.stdout


def test_inspect_data_errors_are_one_line(tmp_path):
    for args, msg in [((tmp_path / "nope.txt", "--format", "criteo"), "no such file"),
                      ((tmp_path, "--format", "criteo"), "not a file"),
                      ((tmp_path / "x.txt", "--format", "kdd"), "format: 'kdd'"),
                      ((tmp_path / "x.txt",), "--format: missing")]:
        (tmp_path / "x.txt").write_text("1\t2\n")
        r = run_cli("inspect-data", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and msg in r.stderr, (args, r.stderr)
