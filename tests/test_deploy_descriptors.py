"""deploy/ecs, deploy/k8s, deploy/sagemaker: in sync with rtb_dcn.deploy; the ECS task definition valid against botocore's
ECS service model and registered on moto; the Kubernetes manifests valid (strict) against the Kubernetes API schema,
offline (PyPI kubernetes-validate); the SageMaker models, endpoint config (one variant per A/B arm, weighted like the
arms, data capture on) and endpoint created on moto."""
import copy, json
import pytest
import yaml
from conftest import ROOT

DEPLOY = ROOT / "deploy"
AWS = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def test_descriptors_in_sync():
    from rtb_dcn.deploy import descriptors
    for rel, text in descriptors().items():
        assert (DEPLOY / rel).read_text() == text, f"deploy/{rel} is stale: run rtb_dcn.deploy.write_descriptors() and commit"


def test_ecs_task_definition_valid_and_registered(moto_url):
    import boto3
    from botocore.exceptions import ParamValidationError
    from botocore.validate import ParamValidator
    td = json.loads((DEPLOY / "ecs" / "task-definition.json").read_text())
    ecs = boto3.client("ecs", endpoint_url=moto_url, **AWS)
    shape = ecs.meta.service_model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(td, shape)
    assert not report.has_errors(), report.generate_report()
    bad = copy.deepcopy(td); bad["containerDefinitions"][2]["healthCheck"]["interval"] = "10s"
    assert ParamValidator().validate(bad, shape).has_errors()            # the validator does catch a wrong type
    with pytest.raises(ParamValidationError): ecs.register_task_definition(**bad)
    got = ecs.register_task_definition(**td)["taskDefinition"]
    assert got["family"] == "rtb-dcn-router" and got["status"] == "ACTIVE"
    names = {c["name"]: c for c in got["containerDefinitions"]}
    assert set(names) == {"model-sync", "model-server", "router"}
    assert names["router"]["secrets"][0]["name"] == "RTB_ADMIN_TOKEN"
    assert names["router"]["dependsOn"] == [{"containerName": "model-server", "condition": "HEALTHY"}]
    assert all(c["logConfiguration"]["logDriver"] == "awslogs" for c in names.values())
    env = {e["name"]: e["value"] for e in names["router"]["environment"]}
    assert env["RTB_SCORER"] == "kserve" and env["RTB_SCORER_URL"] == "http://127.0.0.1:8500"
    from rtb_dcn.config import Settings
    Settings(**{k[4:].lower(): v for k, v in env.items() if k.startswith("RTB_")})   # every RTB_ variable is a real setting


def test_k8s_manifests_valid_against_the_api_schema():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "rtb-dcn.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    for d in docs: kv.validate(d, kv.latest_version(), strict=True)
    dep = copy.deepcopy(docs[1])
    c = dep["spec"]["template"]["spec"]["containers"][1]
    c["readinesProbe"] = c.pop("readinessProbe")                         # a typo: strict validation refuses it
    with pytest.raises(kv.ValidationError): kv.validate(dep, kv.latest_version(), strict=True)
    router = docs[1]["spec"]["template"]["spec"]["containers"][1]
    assert router["readinessProbe"]["httpGet"]["path"] == "/readyz" and router["livenessProbe"]["httpGet"]["path"] == "/healthz"
    metrics = {m["type"] for m in docs[3]["spec"]["metrics"]}
    assert metrics == {"Resource", "Pods"}
    from rtb_dcn.config import Settings
    Settings(**{k[4:].lower(): v for k, v in docs[0]["data"].items() if k.startswith("RTB_")})


def test_sagemaker_endpoint_on_moto(moto_url):
    import boto3
    from rtb_dcn.ab import load_ab_config
    models = json.loads((DEPLOY / "sagemaker" / "models.json").read_text())
    cfg = json.loads((DEPLOY / "sagemaker" / "endpoint-config.json").read_text())
    sm = boto3.client("sagemaker", endpoint_url=moto_url, **AWS)
    for m in models: sm.create_model(**m)
    sm.create_endpoint_config(**cfg)
    sm.create_endpoint(EndpointName="rtb-dcn", EndpointConfigName=cfg["EndpointConfigName"])
    got = sm.describe_endpoint_config(EndpointConfigName=cfg["EndpointConfigName"])
    arms = load_ab_config(ROOT / "configs" / "ab" / "example.yaml").arms
    total = sum(a.weight for a in arms)
    assert [(v["VariantName"], v["InitialVariantWeight"]) for v in got["ProductionVariants"]] == [(a.name, a.weight / total) for a in arms]
    assert got["DataCaptureConfig"]["EnableCapture"] is True and got["DataCaptureConfig"]["InitialSamplingPercentage"] == 100
    assert sm.describe_endpoint(EndpointName="rtb-dcn")["EndpointConfigName"] == cfg["EndpointConfigName"]
