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
