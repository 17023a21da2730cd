"""Guards of `rtb-dcn serve` as a user meets them: `--workers > 1` without a shared store is refused with one line
(open bids, win stats and budgets would be per process), and a body over the size limit gets its 413 even from a
client that is still writing it (Python's urllib sends the whole body before it reads the answer)."""
import http.client, urllib.error, urllib.request
import pytest
from conftest import run_cli
from rtb_dcn.servers import free_port


def test_serve_refuses_several_workers_without_a_shared_store(tmp_path):
    r = run_cli("serve", "--run", tmp_path, "--workers", 2, "--port", free_port(), timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr[-2000:]
    assert "workers: 2" in lines[0] and "--per-worker-state" in lines[0], lines[0]


def test_per_worker_state_opt_in_passes_the_guard(tmp_path):
    # with the opt-in the command goes on to load the run, and fails there (an empty folder), not on the guard
    r = run_cli("serve", "--run", tmp_path, "--workers", 2, "--per-worker-state", "--port", free_port(), timeout=120)
    assert r.returncode != 0 and "workers:" not in r.stderr and str(tmp_path.name) in r.stderr, r.stderr[-2000:]


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp: return resp.status
    except urllib.error.HTTPError as e: return e.code


def test_body_over_the_limit_is_a_413_for_a_client_still_writing(runs, start_router):
    srv = start_router(runs["run"])
    big = b'{"id": "x", "imp": [{"id": "1"}], "pad": "' + b"x" * 16_000_000 + b'"}'
    assert _post(srv.url + "/openrtb2/bid", big) == 413       # Content-Length over the limit (was: connection reset)
    # chunked (no Content-Length): the body outgrows the limit while the router reads it
    host, port = srv.url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    c.request("POST", "/openrtb2/bid", body=iter([big[i:i + 65_536] for i in range(0, len(big), 65_536)]),
              headers={"Content-Type": "application/json"}, encode_chunked=True)
    r = c.getresponse()
    assert (r.status, b"body: more than" in r.read()) == (413, True)
    c.close()
