"""Encoded shards (rtb_dcn.shards): `rtb-dcn train FILE` streams epochs 2+ from its encoded cache and trains the same
model as without it; `rtb-dcn prepare` + `rtb-dcn train FOLDER` trains the same model as `rtb-dcn train FILE`."""
import json
import numpy as np
import pytest
from conftest import run_cli, ROOT

EXP = ROOT / "configs" / "experiments" / "dcn_criteo.yaml"
TINY = dict(epochs=3, batch_size=256, learning_rate=0.01, seed=3)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    r = run_cli("synth", "--format", "criteo", "--rows", 5000, "--out", d / "s.txt", "--seed", 3, "--quiet")
    assert r.returncode == 0, r.stderr
    return d / "s.txt"


def _train(data, run_dir, **kw):
    from rtb_dcn.train import load_experiment, train
    cfg = load_experiment(EXP, "DCN_test", **TINY)
    return train(cfg, data, run_dir, chunk_rows=1500, verbose=False, **kw)


def _weights(run_dir):
    import keras
    import rtb_dcn.layers  # noqa: F401  (custom layers)
    return keras.saving.load_model(run_dir / "model.keras").get_weights()


@pytest.fixture(scope="module")
def reference(log, tmp_path_factory):
    "The model `rtb-dcn train FILE` trained before the cache existed: every epoch re-reads and re-encodes the log."
    run = tmp_path_factory.mktemp("nocache") / "r"
    return run, _train(log, run, cache=False)


def test_cache_trains_the_same_model(log, reference, tmp_path):
    ref_run, ref = reference
    assert not (ref_run / "encoded").exists()
    m = _train(log, tmp_path / "r")
    assert m["epochs"] == ref["epochs"] >= 2
    for k in ("logloss", "auc", "best_val_logloss", "train_rows"):
        assert m[k] == ref[k], k
    for a, b in zip(_weights(tmp_path / "r"), _weights(ref_run)):
        np.testing.assert_array_equal(a, b)
    caches = sorted(p.name.split("-")[0] for p in (tmp_path / "r" / "encoded").iterdir())
    assert caches == ["train", "valid"]
    man = json.loads(next((tmp_path / "r" / "encoded").glob("train-*/manifest.json")).read_text())
    assert man["rows"] == m["train_rows"] and len(man["splits"]["train"]["parts"]) >= 3   # one part per chunk
    # a second run on the same file and spec starts from the cache (epoch 1 too) and still trains the same model
    m2 = _train(log, tmp_path / "r")
    assert m2["logloss"] == ref["logloss"]


def test_prepare_then_train_folder(log, reference, tmp_path):
    ref_run, ref = reference
    env = {"RTB_CHUNK_ROWS": "1500"}
    r = run_cli("prepare", log, "--out", tmp_path / "shards", "--seed", 3, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1].startswith("prepare: 5,000 rows (train ")
    from rtb_dcn.shards import Shards
    sh = Shards(tmp_path / "shards")
    assert sh.rows("train") == ref["train_rows"] and sh.splits == ["train", "valid", "test"]
    m = _train(tmp_path / "shards", tmp_path / "r")
    for k in ("logloss", "auc", "best_val_logloss", "train_rows", "rows"):
        assert m[k] == ref[k], k
    for a, b in zip(_weights(tmp_path / "r"), _weights(ref_run)):
        np.testing.assert_array_equal(a, b)


def test_prepare_errors(log, tmp_path):
    r = run_cli("prepare", log)
    assert r.returncode == 2 and "out: missing; expected --out FOLDER" in r.stderr
    r = run_cli("prepare", log, "--out", tmp_path / "x", "--engine", "dask")
    assert r.returncode == 2 and "engine: 'dask' is not an engine" in r.stderr
    r = run_cli("prepare", log, "--out", tmp_path / "s", "--seed", 3, "--nrows", 500)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("train", tmp_path / "s", "--experiment", "DCN_test", "--run", "x", "--seed", 4,
                env={"RTB_ARTIFACTS_DIR": str(tmp_path / "art")})
    assert r.returncode == 2 and "seed: the shards in" in r.stderr and "were prepared with 3; expected 4" in r.stderr
