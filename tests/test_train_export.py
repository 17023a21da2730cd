"""Every DCN structure, the baselines and an ensemble train and export end to end on a tiny synthetic set,
through the `rtb-dcn` CLI as a user runs it; the exported ONNX, loaded by onnxruntime, matches Keras."""
import json
import numpy as np
import pytest
from conftest import run_cli, ROOT

EXP = ROOT / "configs" / "experiments" / "dcn_criteo.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    r = run_cli("synth", "--format", "criteo", "--rows", 6000, "--out", d / "s.txt", "--seed", 3, "--quiet")
    assert r.returncode == 0, r.stderr
    return d / "s.txt"


def _train_export(synth, art, run, *extra):
    env = {"RTB_ARTIFACTS_DIR": str(art)}
    r = run_cli("train", synth, "--experiment", "DCN_test", "--run", run, "--epochs", 1, *extra, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test auc" in r.stdout.splitlines()[-1]
    r = run_cli("export", "--run", art / run, "--parity-rows", 2000, "--quiet", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return art / run


def _onnx_matches_keras(run_dir):
    import keras, onnxruntime as ort
    import rtb_dcn.layers, rtb_dcn.ensembles  # noqa: F401  (custom layers)
    from rtb_dcn.features import FeatureSpec
    from rtb_dcn.export import parity_inputs
    spec = FeatureSpec.load(run_dir)
    ids, dense, _ = parity_inputs(spec, rows=500, seed=1)
    p_k = keras.saving.load_model(run_dir / "model.keras").predict([ids, dense], verbose=0).ravel()
    p_o = ort.InferenceSession(str(run_dir / "model.onnx")).run(["pctr"], {"cat_ids": ids, "dense": dense})[0].ravel()
    assert np.abs(p_k - p_o).max() <= 1e-5
    par = json.loads((run_dir / "parity.json").read_text())
    assert par["max_abs_diff_worst"] <= 1e-5 and par["rows"] >= 2000


@pytest.mark.parametrize("args", [
    ("--structure", "crossnet_only", "--cross", "v1"),
    ("--structure", "stacked", "--cross", "v2"),
    ("--structure", "parallel", "--cross", "lowrank"),
    ("--structure", "stacked_parallel", "--cross", "mix"),
    ("--model", "lr"),
    ("--model", "dnn"),
], ids=lambda a: "-".join(a[1::2]))
def test_structure_trains_and_exports(synth, tmp_path, args):
    run_dir = _train_export(synth, tmp_path, "r", *args)
    m = json.loads((run_dir / "metrics.json").read_text())
    for k in ("auc", "logloss", "normalized_entropy", "calibration", "rows_per_s", "epochs", "config_hash"):
        assert k in m
    _onnx_matches_keras(run_dir)
    r = run_cli("evaluate", "--run", run_dir, "--data", synth, "--nrows", 1000)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["rows"] == 1000 and 0 <= ev["auc"] <= 1 and ev["logloss"] > 0
    r = run_cli("inspect-model", run_dir / "model.onnx")
    assert r.returncode == 0 and "cat_ids" in r.stdout and "int64" in r.stdout and "opset" in r.stdout


def test_ensemble_exports_as_one_graph(synth, tmp_path):
    import keras
    import rtb_dcn.layers  # noqa: F401
    from rtb_dcn.data import read_dataset
    from rtb_dcn.ensembles import fit_ensemble
    from rtb_dcn.export import export_run
    from rtb_dcn.features import FeatureSpec
    runs = [_train_export(synth, tmp_path, n, "--structure", s) for n, s in (("a", "stacked"), ("b", "parallel"))]
    spec = FeatureSpec.load(runs[0])
    members = [keras.saving.load_model(r / "model.keras") for r in runs]
    val = read_dataset(synth, "criteo", nrows=2000)
    ens, info = fit_ensemble(members, list(spec.encode(val)), val.label.to_numpy(), fusion="learned")
    out = tmp_path / "ens"; out.mkdir()
    ens.save(out / "model.keras"); spec.save(out / "input_spec.json")
    rep = export_run(out, parity_rows=2000)
    assert rep["max_abs_diff_worst"] <= 1e-5
    _onnx_matches_keras(out)


def test_bad_inputs_are_one_line(synth, tmp_path):
    cases = [
        (("train", synth, "--model", "gbdt"), "model: 'gbdt' is not supported"),
        (("train", synth, "--structure", "sideways"), "structure: 'sideways' is not supported"),
        (("train", synth, "--experiment", "DCN_nope"), "experiment: 'DCN_nope' not in"),
        (("export", "--run", tmp_path), "model.keras is missing"),
        (("inspect-model", tmp_path / "nope.onnx"), "no such"),
    ]
    bad = tmp_path / "x.yaml"; bad.write_text("Base: {}\nE: {learning_rat: 0.1}\n")
    cases.append((("train", synth, "--config", bad, "--experiment", "E"), "config key 'learning_rat' does not exist"))
    junk = tmp_path / "junk.onnx"; junk.write_bytes(b"not an onnx file")
    cases.append((("inspect-model", junk), "not a valid ONNX model"))
    for args, msg in cases:
        r = run_cli(*args, env={"RTB_ARTIFACTS_DIR": str(tmp_path)})
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        assert msg in last and last.startswith("rtb-dcn ") and "Traceback" not in r.stderr, (args, r.stderr)


def test_half_epoch_platt_run_serves_calibrated_pctr(synth, tmp_path):
    """An experiment with validation every half-epoch and Platt scaling, trained and exported by the CLI: history.csv has
    a row per half-epoch, and the exported ONNX graph serves the calibrated pCTR (Platt of the in-process Keras pCTR
    when training kept it, the raw one otherwise), whose test logloss is metrics.json's."""
    from rtb_dcn.data import iter_split
    from rtb_dcn.run import Run
    from rtb_dcn.train import apply_calibration, ctr_metrics
    y = tmp_path / "e.yaml"
    y.write_text("E: {model: dcn, structure: stacked, cross: v2, embedding_dim: 4, hidden_units: [16], batch_size: 256,\n"
                 "    num_cross_layers: 2, epochs: 2, patience: 2, eval_every: 0.5, calibrate: platt, seed: 3}\n")
    env = {"RTB_ARTIFACTS_DIR": str(tmp_path)}
    r = run_cli("train", synth, "--config", y, "--experiment", "E", "--run", "r", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_cli("export", "--run", tmp_path / "r", "--parity-rows", 2000, "--quiet", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run = Run(tmp_path / "r")
    m = json.loads((run.path / "metrics.json").read_text())
    cal = json.loads((run.path / "calibration.json").read_text())
    assert m["calibrate"] == cal and m["eval_every"] == 0.5
    assert len((run.path / "history.csv").read_text().splitlines()) - 1 == m["evaluations"] == m["epochs"] * 2
    test = next(iter_split(synth, "criteo", "test", fractions=(0.8, 0.1, 0.1), seed=3))
    p_served = run.score(test)
    p_keras = run.keras_model().predict(list(run.spec.encode(test)), verbose=0).ravel()
    assert np.abs(p_served - apply_calibration(p_keras, cal)).max() <= 1e-5
    assert abs(ctr_metrics(test["label"], p_served)["logloss"] - m["logloss"]) <= 1e-5
    assert ("calibration" in run.spec.extra) == cal["applied"]
