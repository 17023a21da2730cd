"""deploy/spark/emr_serverless.json (rtb_dcn.spark.emr_serverless_requests): valid against botocore's EMR Serverless
model offline, and created on the moto server: the application, then the prepare job run on it."""
import json
import pytest
from conftest import ROOT


def test_requests_match_botocore_shapes():
    import botocore.session, botocore.validate
    from botocore.exceptions import ParamValidationError
    req = json.loads((ROOT / "deploy" / "spark" / "emr_serverless.json").read_text())
    m = botocore.session.get_session().get_service_model("emr-serverless")
    for op, name in (("CreateApplication", "create_application"), ("StartJobRun", "start_job_run")):
        # clientToken: an idempotency token boto3 fills in itself
        botocore.validate.validate_parameters({**req[name], "clientToken": "t"}, m.operation_model(op).input_shape)
    bad = dict(req["start_job_run"], clientToken="t", jobDriver={"sparkSubmit": {"entryPointArguments": ["x"]}})   # no entryPoint
    with pytest.raises(ParamValidationError, match="entryPoint"):
        botocore.validate.validate_parameters(bad, m.operation_model("StartJobRun").input_shape)


def test_created_on_moto(moto_url):
    import boto3
    req = json.loads((ROOT / "deploy" / "spark" / "emr_serverless.json").read_text())
    c = boto3.client("emr-serverless", region_name="us-east-1", endpoint_url=moto_url,
                     aws_access_key_id="test", aws_secret_access_key="test")
    app = c.create_application(**req["create_application"])
    got = c.get_application(applicationId=app["applicationId"])["application"]
    assert got["type"].upper() == "SPARK" and got["releaseLabel"] == req["create_application"]["releaseLabel"]
    run = c.start_job_run(**{**req["start_job_run"], "applicationId": app["applicationId"]})
    job = c.get_job_run(applicationId=app["applicationId"], jobRunId=run["jobRunId"])["jobRun"]
    assert job["jobDriver"]["sparkSubmit"]["entryPoint"].endswith("/prepare_job.py")
    assert json.loads(job["jobDriver"]["sparkSubmit"]["entryPointArguments"][1])["fmt"] == "criteo"
