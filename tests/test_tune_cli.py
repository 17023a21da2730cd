"`rtb-dcn tune` as a user runs it: a subprocess on a small family log; best.yaml trains again with `rtb-dcn train`."
import json, os, subprocess, sys
import pandas as pd, pytest, yaml
from rtb_dcn.synth import write_family

RTB = [sys.executable, '-c', 'from rtb_dcn.cli import main; main()']

def run(*args, env):
    return subprocess.run(RTB + list(args), capture_output=True, text=True, timeout=900,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **env})

@pytest.mark.slow
def test_tune_then_train(tmp_path):
    data = write_family(tmp_path / 'fam.txt', 'criteo_like', rows=6_000, seed=4, progress=False).path
    env = {'RTB_ARTIFACTS_DIR': str(tmp_path / 'artifacts')}
    r = run('tune', str(data), '--format', 'criteo', '--experiment', 'DCN_test', '--trials', '1', '--budget-minutes', '10',
            '--no-report', env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith('tune: 1 trials + base in ')
    run_dir = tmp_path / 'artifacts' / 'tune_DCN_test'
    s = json.loads((run_dir / 'tune.json').read_text())
    t = pd.read_csv(run_dir / 'trials.csv')
    assert list(t.trial.astype(str)) == ['base', '000']
    assert abs(s['best']['valid_logloss'] - t.best_val_logloss.min()) < 1e-5        # the CSV keeps 6 significant digits
    assert set(yaml.safe_load((run_dir / 'best.yaml').read_text())) == {'DCN_test_tuned'}
    r = run('train', str(data), '--config', str(run_dir / 'best.yaml'), '--experiment', 'DCN_test_tuned', '--run', 'again', env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / 'artifacts' / 'again' / 'metrics.json').read_text())
    assert abs(m['best_val_logloss'] - s['best']['valid_logloss']) < 1e-6      # the same config, the same seed: the same run
