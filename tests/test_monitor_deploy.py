"""deploy/monitoring/ against real tools: in sync with the code that generates it; `promtool check rules`; a real
Prometheus (Debian's package) scraping a running router, whose RtbRouterDown alert fires when the router stops and
clears when it is back, and which parses every rule and dashboard expression; `cfn-lint` and moto's CloudFormation
and CloudWatch for the template; the monitor's `--cloudwatch-namespace` against moto; the OpenSearch pipeline over
the router's own bid-log lines."""
import json, os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
import yaml
from conftest import ROOT, run_cli
from rtb_dcn import monitor_deploy as md

DEPLOY = ROOT / "deploy" / "monitoring"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
needs_prometheus = pytest.mark.skipif(not (shutil.which("prometheus") and shutil.which("promtool")),
                                      reason="prometheus/promtool not installed (make test installs Debian's package when root)")


def test_descriptors_in_sync():
    stale = md.descriptors_in_sync(DEPLOY)
    assert stale == [], f"deploy/monitoring/ is stale ({', '.join(stale)}): run `make monitoring-descriptors` and commit"


@needs_prometheus
def test_promtool_checks_rules_and_config():
    r = subprocess.run(["promtool", "check", "rules", DEPLOY / "prometheus" / "rules.yml"], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["promtool", "check", "config", DEPLOY / "prometheus" / "prometheus.yml"], capture_output=True, text=True, cwd=DEPLOY / "prometheus")
    assert r.returncode == 0, r.stdout + r.stderr


def _get(url, **params):
    import httpx
    return httpx.get(url, params=params, timeout=5).json()


def _wait(pred, what, timeout_s=30.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if (v := pred()): return v
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s:g}s")


def _alert(prom, name):
    return next((a for a in _get(f"{prom}/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == name), None)


@needs_prometheus
def test_real_prometheus_alert_fires_and_clears(runs, requests_, start_router, server_logs, tmp_path):
    from rtb_dcn.servers import Server, free_port
    router = start_router(runs["run"])
    for q in requests_[:60]: router.client.post("/openrtb2/bid", json=q)
    exposed = router.client.get("/metrics").text
    from fastapi.testclient import TestClient                   # and a model server's (the router's remote scorers)
    from rtb_dcn.model_server import create_model_server
    with TestClient(create_model_server(runs["run"])) as ms: exposed += "\n" + ms.get("/metrics").text
    # every metric the rules and the dashboard read is one the router declares on /metrics
    declared = set()
    for line in exposed.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            declared |= {name if name.endswith("_total") else f"{name}_total"} if kind == "counter" else {name + s for s in ("_bucket", "_count", "_sum")} if kind == "histogram" else {name}
    exprs = md.expressions(md.prometheus_rules()) + md.grafana_expressions(md.grafana_dashboard())
    assert set().union(*map(md.metric_names, exprs)) <= declared

    # a real Prometheus: 1 s scrapes and evaluations, the generated rules with short `for`s
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(md.prometheus_rules(down_for="2s", for_scale=0.0), sort_keys=False))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(md.prometheus_config([f"127.0.0.1:{router.port}"], str(tmp_path / "rules.yml"), "1s")))
    port = free_port()
    prom = Server("prometheus", [shutil.which("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                  port, "/-/ready", log=server_logs, timeout_s=60)
    with prom:
        url = prom.url
        _wait(lambda: [r for r in _get(f"{url}/api/v1/query", query=f'up{{job="{md.JOB}"}}')["data"]["result"] if r["value"][1] == "1"],
              "Prometheus scraped the router")
        for e in exprs:   # each expression parses and evaluates against the live series
            assert _get(f"{url}/api/v1/query", query=e)["status"] == "success", e
        _wait(lambda: _get(f"{url}/api/v1/rules")["data"]["groups"], "rules loaded")
        assert _alert(url, "RtbRouterDown") is None
        router.stop()                                                        # the router fails ...
        a = _wait(lambda: (a := _alert(url, "RtbRouterDown")) and a["state"] == "firing" and a, "RtbRouterDown firing")
        assert a["labels"]["severity"] == "page" and str(router.port) in a["labels"]["instance"]
        router.start()                                                       # ... and recovers on the same port
        _wait(lambda: _alert(url, "RtbRouterDown") is None, "RtbRouterDown cleared")
        # failing requests: malformed bid requests count as errors; the error-ratio alert fires on them
        for q in requests_[60:70]: router.client.post("/openrtb2/bid", json=q)
        def burst():
            for _ in range(20): router.client.post("/openrtb2/bid", content=b"{not json", headers={"content-type": "application/json"})
            return (a := _alert(url, "RtbHighErrorRate")) and a["state"] == "firing" and a
        assert float(_wait(burst, "RtbHighErrorRate firing")["value"]) > 0.01
    # the OpenSearch pipeline over the router's own bid-log lines
    lines = [json.loads(l) for l in Path(router.argv[router.argv.index("--bid-log") + 1]).read_text().splitlines() if l.strip()]
    assert lines
    pipe = md.opensearch_pipeline()
    for rec in lines:
        doc = md.run_pipeline(pipe, rec)
        assert doc["@timestamp"].endswith("Z") and "features" not in doc and "record" not in doc
        if rec.get("pctr") is not None: assert doc["pctr_bucket"]
        mapped = set(md.BID_LOG_FIELDS) | {"geo"}
        assert {k for k in doc} - mapped <= {"bid_id", "bid_units", "capped", "ts"} | set(md.BID_LOG_FIELDS), set(doc) - mapped


def test_cfn_lint_and_moto_cloudformation(moto_url):
    r = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(DEPLOY / "cloudformation" / "monitoring.yaml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    import boto3
    kw = dict(endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    cf, cw = boto3.client("cloudformation", **kw), boto3.client("cloudwatch", **kw)
    body = (DEPLOY / "cloudformation" / "monitoring.yaml").read_text()
    cf.create_stack(StackName="rtbmon", TemplateBody=body)
    st = _wait(lambda: (s := cf.describe_stacks(StackName="rtbmon")["Stacks"][0]) and not s["StackStatus"].endswith("IN_PROGRESS") and s, "stack created")
    assert st["StackStatus"] == "CREATE_COMPLETE", st
    dash = json.loads(cw.get_dashboard(DashboardName="rtbmon-rtb-dcn")["DashboardBody"])
    assert ["rtb_dcn/router", "rtb_errors_total"] in dash["widgets"][1]["properties"]["metrics"]
    assert all(a.startswith("arn:aws:cloudwatch:us-east-1:") for a in dash["widgets"][0]["properties"]["alarms"])
    # moto's CloudFormation does not create alarms: put each alarm's resolved properties through CloudWatch's API
    tpl = yaml.safe_load(body)
    params = {k: v["Default"] for k, v in tpl["Parameters"].items()} | {"AWS::StackName": "rtbmon", "AWS::Region": "us-east-1"}
    def res(x):
        if isinstance(x, dict):
            if "Ref" in x: return params.get(x["Ref"], None if x["Ref"] == "AWS::NoValue" else x["Ref"])
            if "Fn::Sub" in x: return x["Fn::Sub"].replace("${AWS::StackName}", "rtbmon")
            if "Fn::If" in x: return res(x["Fn::If"][2])    # no topic by default
            return {k: res(v) for k, v in x.items()}
        if isinstance(x, list): return [y for y in map(res, x) if y is not None]
        return x
    alarms = {k: res(v["Properties"]) for k, v in tpl["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    assert {"RouterP99Latency", "RouterErrorRate", "RouterNoBidRate", "SpendPacing", "DriftViolations", "CalibrationHigh", "CalibrationLow"} <= set(alarms)
    for p in alarms.values(): cw.put_metric_alarm(**p)
    assert len(cw.describe_alarms(AlarmNamePrefix="rtbmon-")["MetricAlarms"]) == len(alarms)


def test_monitor_publishes_to_cloudwatch(moto_url, tmp_path):
    from rtb_dcn.synth import write_synth
    write_synth(tmp_path / "log.txt", "ipinyou", rows=20_000, seed=3, progress=False)
    r = run_cli("monitor", "baseline", "--data", tmp_path / "log.txt", "--format", "ipinyou", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    r = run_cli("monitor", "check", "--baseline", tmp_path / "b", "--data", tmp_path / "log.txt", "--format", "ipinyou", "--out", tmp_path / "c",
                "--cloudwatch-namespace", "rtbtest/monitor", "--aws-endpoint-url", moto_url, env=AWS_ENV)
    assert r.returncode == 0 and "cloudwatch:" in r.stdout, r.stdout + r.stderr
    r = run_cli("monitor", "quality", "--data", tmp_path / "log.txt", "--format", "ipinyou", "--out", tmp_path / "q",
                "--cloudwatch-namespace", "rtbtest/monitor", "--aws-endpoint-url", moto_url, env=AWS_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    import boto3
    cw = boto3.client("cloudwatch", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="rtbtest/monitor")["Metrics"]}
    assert {"Violations", "DriftDistance", "PSI", "MaxDriftDistance", "Calibration", "CalibrationLow", "CalibrationHigh", "AUC"} <= names
    feats = {d["Value"] for m in cw.list_metrics(Namespace="rtbtest/monitor", MetricName="DriftDistance")["Metrics"] for d in m["Dimensions"]}
    assert {"market_price", "adexchange"} <= feats
    # unreachable CloudWatch: one line, exit 2
    r = run_cli("monitor", "quality", "--data", tmp_path / "log.txt", "--format", "ipinyou", "--out", tmp_path / "q2",
                "--cloudwatch-namespace", "x", "--aws-endpoint-url", "http://127.0.0.1:9", env=AWS_ENV)
    assert r.returncode == 2 and "publishing to 'x' failed" in r.stderr and "Traceback" not in r.stderr, r.stderr
