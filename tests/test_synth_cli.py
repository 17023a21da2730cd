"`rtb-dcn synth` as a user runs it: a subprocess, exit status, stdout summary, stderr progress/errors."
import subprocess, sys, hashlib
from pathlib import Path

RTB = [sys.executable, '-c', 'from rtb_dcn.cli import main; main()']

def run(*args):
    return subprocess.run(RTB + ['synth', *args], capture_output=True, text=True, timeout=120)

def test_synth_writes_file_and_summary(tmp_path):
    out = tmp_path / 'c.txt.gz'
    r = run('--format', 'criteo', '--rows', '3000', '--out', str(out), '--seed', '3', '--chunk-rows', '1000')
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('\n') == 1 and r.stdout.startswith('synth: wrote 3,000 criteo rows')
    assert 'synth criteo' in r.stderr                      # the tqdm bar
    assert Path(str(out) + '.pctr').read_text().count('\n') == 3000
    r2 = run('--format', 'criteo', '--rows', '3000', '--out', str(tmp_path / 'd.txt.gz'), '--seed', '3', '--quiet')
    assert r2.returncode == 0 and r2.stderr == ''
    h = lambda p: hashlib.sha256(Path(p).read_bytes()).hexdigest()
    assert h(out) == h(tmp_path / 'd.txt.gz')

def test_synth_ipinyou_header(tmp_path):
    out = tmp_path / 'i.txt'
    r = run('--format', 'ipinyou', '--rows', '2000', '--out', str(out), '--header', '--base-ctr', '0.003', '--quiet')
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith('click\tweekday\thour\tbidid') and len(lines) == 2001

def test_synth_bad_arguments(tmp_path):
    for args, msg in [(['--rows', '0'], 'rows: 0 is invalid'), (['--format', 'kdd'], "format: 'kdd'"),
                      (['--base-ctr', '2'], 'base_ctr: 2.0'), ([], 'out: missing')]:
        out = [] if args == [] else ['--out', str(tmp_path / 'x.txt')]
        r = run(*args, *out)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count('\n') == 1 and msg in r.stderr, r.stderr
    r = run('--rows', '10', '--out', str(tmp_path / 'no' / 'such' / 'x.txt'))
    assert r.returncode == 2 and 'is not writable' in r.stderr and r.stderr.count('\n') == 1

def test_synth_family(tmp_path):
    "A family setting from the shell: Criteo rows at the setting's CTR; a shape option next to it is a one-line error."
    out = tmp_path / 'f.txt'
    r = run('--family', 'independent', '--rows', '4000', '--out', str(out), '--seed', '2', '--quiet')
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('synth: wrote 4,000 criteo rows') and 'mean true pCTR 3' in r.stdout   # ~32%
    assert len(out.read_text().splitlines()[0].split('\t')) == 40
    r = run('--family', 'independent', '--base-ctr', '0.1', '--out', str(tmp_path / 'g.txt'))
    assert r.returncode == 2 and r.stderr.strip().endswith("family: 'independent' sets its own shape; expected no --base-ctr with it (Criteo format, base CTR of the setting)")
    assert not (tmp_path / 'g.txt').exists()
