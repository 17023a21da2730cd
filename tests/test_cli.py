"The `rtb-dcn` console script as a user meets it: listing, help, errors as one line with exit status 2."
from conftest import run_cli


def test_help_lists_subcommands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("synth", "inspect-data", "demo"):
        assert cmd in r.stdout


def test_each_subcommand_has_help():
    from rtb_dcn.cli import COMMANDS
    for cmd in COMMANDS:
        r = run_cli(cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "usage: rtb-dcn " + cmd in r.stdout, (cmd, r.stdout)


def test_unknown_command_is_one_line():
    r = run_cli("trian")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown command 'trian'" in r.stderr


def test_missing_run_is_the_same_one_line_for_every_command(tmp_path, samples):
    "Every command that takes --run finds it through rtb_dcn.run.Run: one rule, one line listing where it looked."
    crit = samples / "criteo" / "criteo_sample.txt"
    ipy = samples / "ipinyou" / "drsa-2259" / "test.log.txt"
    cases = [
        ("export", "--run", "no_such_run"),
        ("evaluate", "--run", "no_such_run", "--data", crit),
        ("viz", "--run", "no_such_run", "--data", crit),
        ("auction-replay", "--train", ipy, "--test", ipy, "--format", "ipinyou", "--run", "no_such_run"),
        ("model-server", "--run", "no_such_run"),
        ("serve", "--run", "no_such_run"),
        ("stream-worker", "--source", "file", "--path", ipy, "--output", "file", "--out", tmp_path / "o.jsonl", "--run", "no_such_run"),
    ]
    for args in cases:
        r = run_cli(*args, env={"RTB_ARTIFACTS_DIR": str(tmp_path)})
        assert r.returncode == 2, (args, r.stderr[-2000:])
        last = r.stderr.strip().splitlines()[-1]
        assert "run: 'no_such_run' is not a folder (looked in " in last and str(tmp_path / "no_such_run") in last, (args, last)
        assert "Traceback" not in r.stderr, (args, r.stderr[-2000:])
