"""`rtb-dcn prepare --engine spark` (rtb_dcn.spark) against the local path (rtb_dcn.shards.prepare_local): the same spec
(vocabularies, clip bounds) and the same ids, dense values and labels, split by split, row for row; bad lines handled
like the local readers; a missing Java is one line. The Spark runs need `make venv-spark` (pyspark 4.x with pandas<3
in .venv-spark; `make test-slow` makes it) and start a JVM each (~30-90 s on 2 shared cores): they are marked slow.
The local shard path they are compared against is in the quick suite (tests/test_shards.py)."""
import json, os, shutil
import numpy as np
import pytest
from conftest import run_cli, ROOT


def _spark_ready():
    from rtb_dcn.config import RtbError
    from rtb_dcn.spark import spark_python, find_java
    try: find_java(); return spark_python()
    except RtbError as e: pytest.skip(f"Spark not available here: {e}")


def _same_shards(a, b):
    from rtb_dcn.shards import Shards, spec_digest
    A, B = Shards(a), Shards(b)
    assert A.spec.to_dict()['categorical'] == B.spec.to_dict()['categorical']      # vocabularies, value for value
    assert A.spec.to_dict()['dense'] == B.spec.to_dict()['dense']                  # clip bounds, transforms
    assert spec_digest(A.spec) == spec_digest(B.spec)
    for split in ("train", "valid", "test"):
        assert A.rows(split) == B.rows(split), split
        xa, xb = [[np.concatenate(x) for x in zip(*S.parts(split))] for S in (A, B)]
        for u, v in zip(xa, xb): np.testing.assert_array_equal(u, v)


def test_missing_java_is_one_line(samples, tmp_path):
    venv_bin = str(ROOT / ".venv" / "bin")
    r = run_cli("prepare", samples / "criteo" / "criteo_sample.txt", "--out", tmp_path / "s", "--engine", "spark",
                env={"PATH": venv_bin, "JAVA_HOME": ""})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == ["rtb-dcn prepare: error: java: not found (no JAVA_HOME, no java on PATH); expected a "
                                             "Java 17 or 21 runtime for Spark (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"]


SAMPLES = [("criteo", "criteo/criteo_sample.txt"), ("avazu", "avazu/avazu_sample.txt"),
           ("ipinyou", "ipinyou/drsa-2259/test.log.txt")]


@pytest.mark.slow
@pytest.mark.parametrize("fmt,path", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_parity_on_real_samples(samples, tmp_path, fmt, path):
    _spark_ready()
    from rtb_dcn.shards import prepare_local
    from rtb_dcn.spark import prepare_spark
    loc = prepare_local(samples / path, fmt, tmp_path / "local", min_count=2, seed=42)
    spk = prepare_spark(samples / path, fmt, tmp_path / "spark", min_count=2, seed=42, master="local[2]")
    assert spk["rows"] == loc["rows"] > 0 and spk["skipped"] == 0
    assert spk["time_split"] == (fmt != "criteo")       # avazu and iPinYou split by time, as iter_split does
    _same_shards(tmp_path / "local", tmp_path / "spark")


@pytest.mark.slow
@pytest.mark.parametrize("rows", [50_000, 1_000_000])
def test_parity_on_synthetic_rows(tmp_path, rows):
    _spark_ready()
    from rtb_dcn.synth import write_synth
    from rtb_dcn.shards import prepare_local
    from rtb_dcn.spark import prepare_spark
    data = tmp_path / "s.txt"
    write_synth(data, "criteo", rows=rows, seed=11, progress=False)
    loc = prepare_local(data, "criteo", tmp_path / "local", min_count=2, seed=5)
    spk = prepare_spark(data, "criteo", tmp_path / "spark", min_count=2, seed=5, master="local[2]", max_partition_mb=16)
    assert spk["rows"] == loc["rows"] == rows
    assert len(spk["splits"]["train"]["parts"]) > 1 or rows < 100_000    # several Spark partitions, stitched in order
    _same_shards(tmp_path / "local", tmp_path / "spark")


@pytest.mark.slow
def test_bad_lines_like_the_local_reader(samples, tmp_path):
    _spark_ready()
    from rtb_dcn.config import RtbError
    from rtb_dcn.shards import prepare_local
    from rtb_dcn.spark import prepare_spark
    lines = (samples / "criteo" / "criteo_sample.txt").read_text().splitlines()
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines[:50] + ["1,2,3"] + lines[50:]) + "\n")       # one row with 3 fields
    with pytest.raises(RtbError, match="found 3 comma-separated fields; expected 40"):
        prepare_spark(bad, "criteo", tmp_path / "e", master="local[1]")
    loc = prepare_local(bad, "criteo", tmp_path / "local", on_bad_lines="skip")
    spk = prepare_spark(bad, "criteo", tmp_path / "spark", on_bad_lines="skip", master="local[1]")
    assert spk["skipped"] == 1 and spk["rows"] == loc["rows"] == 200
    _same_shards(tmp_path / "local", tmp_path / "spark")


@pytest.mark.slow
def test_s3_in_and_out_like_local(samples, tmp_path, moto_url):
    """`rtb-dcn prepare --engine spark` from an s3:// glob of .gz objects to an s3:// prefix (pyarrow's S3 client in the
    job, the moto server as S3): the downloaded shard folder equals the local path's on the same gzip file."""
    _spark_ready()
    import boto3, gzip
    from rtb_dcn.shards import prepare_local
    env = {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="rtb-raw")
    gz = tmp_path / "day_0.gz"
    gz.write_bytes(gzip.compress((samples / "criteo" / "criteo_sample.txt").read_bytes()))
    s3.upload_file(str(gz), "rtb-raw", "criteo/day_0.gz")
    s3.put_object(Bucket="rtb-raw", Key="criteo/README.txt", Body=b"not a log")          # outside the glob
    s3.put_object(Bucket="rtb-raw", Key="shards/criteo/stale/part-9.parquet", Body=b"x")  # an old folder's object: cleared
    r = run_cli("prepare", "s3://rtb-raw/criteo/*.gz", "--out", "s3://rtb-raw/shards/criteo", "--engine", "spark",
                "--master", "local[2]", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="rtb-raw", Prefix="shards/criteo/")["Contents"]
                  if not o["Key"].endswith("/"))                                            # pyarrow's folder markers
    assert "shards/criteo/manifest.json" in keys and "shards/criteo/input_spec.json" in keys
    assert not any("stale" in k or "_parts" in k for k in keys), keys
    got = tmp_path / "from_s3"
    for k in keys:
        (got / k[len("shards/criteo/"):]).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("rtb-raw", k, str(got / k[len("shards/criteo/"):]))
    for split in ("train", "valid", "test"): (got / split).mkdir(exist_ok=True)
    man = json.loads((got / "manifest.json").read_text())
    assert man["source"]["path"] == "s3://rtb-raw/criteo/*.gz" and man["source"]["objects"] == 1
    loc = prepare_local(gz, "criteo", tmp_path / "local", min_count=2, seed=42)
    assert man["rows"] == loc["rows"] > 0 and man["skipped"] == 0
    _same_shards(tmp_path / "local", got)
    bad = run_cli("prepare", "s3://rtb-raw/nothing/*.gz", "--out", "s3://rtb-raw/x", "--engine", "spark", env=env)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "rtb-dcn prepare: error: data: s3://rtb-raw/nothing/*.gz names no S3 object with data; expected a key, a prefix/ "
        "or a glob (s3://bucket/prefix/*.gz)")


def test_s3_paths_need_the_spark_engine(tmp_path):
    r = run_cli("prepare", "s3://rtb-raw/criteo/day_0.gz", "--out", tmp_path / "s", "--engine", "local")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        "rtb-dcn prepare: error: engine: 'local' reads and writes local files; expected --engine spark for s3:// paths")
