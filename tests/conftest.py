import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes; run with --runslow (make test-slow)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"): return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-slow)")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)


@pytest.fixture(scope="session")
def samples() -> Path:
    from rtb_dcn.config import load_settings
    return load_settings().samples()


def run_cli(*args, timeout=600, cwd=ROOT, env=None):
    "Run the installed `rtb-dcn` console script; returns CompletedProcess with text output."
    e = {**os.environ, **(env or {})}
    return subprocess.run([str(BIN / "rtb-dcn"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=e)
