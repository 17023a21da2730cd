"""The training pipeline (rtb_dcn.pipeline): the SageMaker definition of each profile (snapshot, built offline in the
SDK's virtualenv), upsert/start/status against a moto server, the local runner's bad-input paths, and (slow) the local
run end to end: a DCN registered and served by `rtb-dcn serve --model-package`, an LR not registered, --resume."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from rtb_dcn.config import RtbError, load_settings, repo_root
from rtb_dcn import pipeline as pl

ROOT = repo_root()
RTB = str(Path(sys.executable).parent / 'rtb-dcn')

def _sdk_or_skip():
    try: return pl.sdk_python()
    except RtbError as e: pytest.skip(str(e))

# The snapshot: what each profile's definition must hold. A step that disappears, a parameter renamed, a condition
# dropped, Spot switched on in prod: the test fails.
SNAPSHOT_STEPS = {'ValidateLogs': 'Processing', 'ProcessFeatures': 'Processing', 'TrainModel': 'Training',
                  'EvaluateModel': 'Processing', 'CheckModel': 'Condition', 'RegisterModel': 'Processing', 'DeployModel': 'Processing'}
SNAPSHOT_PARAMETERS = ['ApprovalStatus', 'Deploy', 'Experiment', 'MaxEcpc', 'MinAuc', 'ProcessingInstanceCount', 'ProcessingInstanceType',
                       'Profile', 'RawData', 'TrainingInstanceCount', 'TrainingInstanceType']
SNAPSHOT_CONDITIONS = ['GreaterThanOrEqualTo', 'LessThanOrEqualTo', 'GreaterThan', 'LessThanOrEqualTo']
SPOT = {'dev': (True, 7200), 'staging': (True, 28800), 'prod': (False, None)}


@pytest.fixture(scope='module')
def definitions(tmp_path_factory):
    "`rtb-dcn pipeline definition --profile P --out F` for each profile (the CLI users run)."
    _sdk_or_skip()
    out = {}
    for prof in SPOT:
        f = tmp_path_factory.mktemp('def') / f'{prof}.json'
        r = subprocess.run([RTB, 'pipeline', 'definition', '--profile', prof, '--out', str(f)], capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr
        assert f'pipeline definition ({prof}): 7 steps' in r.stderr, r.stderr
        out[prof] = json.loads(f.read_text())
    return out


@pytest.mark.parametrize('prof', list(SPOT))
def test_definition_snapshot(definitions, prof):
    d = definitions[prof]
    s = pl.definition_summary(d)
    assert s == dict(steps=SNAPSHOT_STEPS, parameters=SNAPSHOT_PARAMETERS, conditions=SNAPSHOT_CONDITIONS)
    assert tuple(s['steps']) == pl.STEPS
    steps = {st['Name']: st for st in d['Steps']}
    cond = steps['CheckModel']['Arguments']
    steps.update({st['Name']: st for st in cond['IfSteps']})
    p = load_settings(profile=prof).pipeline
    # every container step runs `rtb-dcn pipeline <step>` in the project's image
    for name, step in (('ValidateLogs', 'validate'), ('ProcessFeatures', 'process'), ('EvaluateModel', 'evaluate'),
                       ('RegisterModel', 'register'), ('DeployModel', 'deploy')):
        app = steps[name]['Arguments']['AppSpecification']
        assert app['ContainerEntrypoint'] == ['rtb-dcn', 'pipeline', step] and app['ImageUri'] == p.image_uri, name
    assert steps['ValidateLogs']['Arguments']['AppSpecification']['ContainerArguments'][:2] == ['--engine', 'athena']
    # training: Spot and max_wait as the profile says, checkpoints and the model under the bucket's prefixes, metric definitions
    tr = steps['TrainModel']['Arguments']
    spot, wait = SPOT[prof]
    assert tr['EnableManagedSpotTraining'] is spot and tr['StoppingCondition'].get('MaxWaitTimeInSeconds') == wait
    assert tr['CheckpointConfig'] == {'S3Uri': pl.s3_uri(p, 'checkpoints'), 'LocalPath': '/opt/ml/checkpoints'}
    assert tr['OutputDataConfig']['S3OutputPath'] == pl.s3_uri(p, 'model')
    assert [m['Name'] for m in tr['AlgorithmSpecification']['MetricDefinitions']] == ['test:auc', 'test:logloss', 'test:ne']
    assert tr['InputDataConfig'][0]['DataSource']['S3DataSource']['S3Uri'] == {'Get': "Steps.ProcessFeatures.ProcessingOutputConfig.Outputs['features'].S3Output.S3Uri"}
    # evaluation.json is a PropertyFile; the conditions read it with JsonGet, against parameters and the approved model
    assert steps['EvaluateModel']['PropertyFiles'] == [{'PropertyFileName': 'Evaluation', 'OutputName': 'evaluation', 'FilePath': 'evaluation.json'}]
    sides = [(c['LeftValue']['Std:JsonGet']['Path'], c['RightValue']) for c in cond['Conditions']]
    assert sides == [('candidate.auc', {'Get': 'Parameters.MinAuc'}), ('candidate.ecpc', {'Get': 'Parameters.MaxEcpc'}),
                     ('candidate.auc', {'Std:JsonGet': {'PropertyFile': {'Get': 'Steps.EvaluateModel.PropertyFiles.Evaluation'}, 'Path': 'approved.auc'}}),
                     ('candidate.ecpc', {'Std:JsonGet': {'PropertyFile': {'Get': 'Steps.EvaluateModel.PropertyFiles.Evaluation'}, 'Path': 'approved.ecpc'}})]
    committed = ROOT / 'report' / 'pipeline' / f'definition_{prof}.json'   # the reviewed copy: in sync with the code
    assert json.loads(committed.read_text()) == d, f"{committed} is stale: rtb-dcn pipeline definition --profile {prof} --out {committed.relative_to(ROOT)}"
    defaults = {x['Name']: x.get('DefaultValue') for x in d['Parameters']}
    assert (defaults['ApprovalStatus'], defaults['MinAuc'], defaults['Deploy']) == (p.approval, p.min_auc, str(p.deploy).lower())
    assert defaults['ApprovalStatus'] == ('PendingManualApproval' if prof == 'prod' else 'Approved')


def test_definition_distributed_training(tmp_path):
    """pipeline.training_distributed: the TrainModel step runs on >= 2 instances with the MultiWorkerMirroredStrategy
    hyperparameters (SDK v2's distribution={'multi_worker_mirrored_strategy': {'enabled': True}}; `distributed` makes
    `rtb-dcn pipeline train` build TF_CONFIG from SageMaker's hosts); one instance is refused in one line."""
    _sdk_or_skip()
    import yaml
    prof = yaml.safe_load((ROOT / 'configs' / 'profiles' / 'prod.yaml').read_text())
    prof['pipeline'].update(training_distributed=True, training_instance_count=4)
    f = tmp_path / 'prod_distributed.yaml'; f.write_text(yaml.safe_dump(prof))
    d = pl.pipeline_definition('prod', config_file=f)
    tr = next(st for st in d['Steps'] if st['Name'] == 'TrainModel')['Arguments']
    assert tr['ResourceConfig']['InstanceCount'] == {'Get': 'Parameters.TrainingInstanceCount'}
    assert {x['Name']: x.get('DefaultValue') for x in d['Parameters']}['TrainingInstanceCount'] == 4
    hp = tr['HyperParameters']
    assert hp['sagemaker_multi_worker_mirrored_strategy_enabled'] == 'true' and hp['distributed'] == 'true', hp
    plain = json.loads((ROOT / 'report' / 'pipeline' / 'definition_prod.json').read_text())     # the setting off: neither
    hp0 = next(st for st in plain['Steps'] if st['Name'] == 'TrainModel')['Arguments']['HyperParameters']
    assert 'distributed' not in hp0 and 'sagemaker_multi_worker_mirrored_strategy_enabled' not in hp0
    prof['pipeline'].update(training_instance_count=1); f.write_text(yaml.safe_dump(prof))
    with pytest.raises(RtbError, match=r"pipeline.training_instance_count: 1 with training_distributed; expected >= 2 instances"):
        pl.pipeline_definition('prod', config_file=f)


def test_definition_bad_profile():
    r = subprocess.run([RTB, 'pipeline', 'definition', '--profile', 'qa'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip() == "rtb-dcn pipeline: error: profile: 'qa' is not a profile; expected one of dev, staging, prod"


def _aws_env(monkeypatch):
    for k, v in dict(AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing', AWS_DEFAULT_REGION='us-east-1').items(): monkeypatch.setenv(k, v)


def test_upsert_start_status_on_moto(moto_url, monkeypatch, definitions):
    "The definition goes to SageMaker (moto server on 127.0.0.1) through the CLI: upsert twice (create, then update), start, status."
    _aws_env(monkeypatch)
    monkeypatch.setenv('RTB_PIPELINE', json.dumps({'endpoint_url': moto_url}))
    run = lambda *a: subprocess.run([RTB, 'pipeline', *a, '--profile', 'dev'], capture_output=True, text=True, cwd=ROOT, timeout=600)
    r = run('upsert'); assert r.returncode == 0, r.stderr
    assert 'pipeline upsert: arn:aws:sagemaker:us-east-1:' in r.stdout and 'pipeline/rtb-dcn-train-dev' in r.stdout
    s = load_settings(profile='dev', pipeline={'endpoint_url': moto_url})
    assert pl.upsert(s, definitions['dev']) == r.stdout.split('pipeline upsert: ')[1].strip()   # exists: updated
    r = run('start'); assert r.returncode == 0, r.stderr
    arn = r.stdout.split('pipeline start: ')[1].strip()
    r = run('status'); assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f'pipeline status: ') and arn in r.stdout
    import boto3
    sm = boto3.client('sagemaker', endpoint_url=moto_url, region_name='us-east-1')
    stored = json.loads(sm.describe_pipeline(PipelineName='rtb-dcn-train-dev')['PipelineDefinition'])
    assert pl.definition_summary(stored) == pl.definition_summary(definitions['dev'])


def test_upsert_needs_role_and_a_reachable_endpoint(monkeypatch):
    _aws_env(monkeypatch)
    s = load_settings(profile='dev', pipeline={'role_arn': None})
    with pytest.raises(RtbError, match=r"^pipeline.role_arn: not set; expected the pipeline-execution role's ARN"): pl.upsert(s, {})
    s = load_settings(profile='dev', pipeline={'endpoint_url': 'http://127.0.0.1:9'})
    with pytest.raises(RtbError, match=r"^pipeline.endpoint_url: 'http://127.0.0.1:9' is unreachable"): pl.start(s)


def test_sagemaker_registry_on_moto(moto_url, monkeypatch, tmp_path):
    "The cloud registration path (SageMakerRegistry): artefact + evaluation.json into S3, a package in the group, the latest approved back."
    _aws_env(monkeypatch)
    import boto3
    p = load_settings(profile='dev', pipeline={'endpoint_url': moto_url, 'bucket': 'rtb-dcn-reg-test'}).pipeline
    boto3.client('s3', endpoint_url=moto_url, region_name='us-east-1').create_bucket(Bucket=p.bucket)
    run = tmp_path / 'run'; run.mkdir(); (run / 'model.onnx').write_bytes(b'onnx'); (run / 'input_spec.json').write_text('{}')
    ev = dict(candidate=dict(model_version='m1', auc=0.7, logloss=0.02, ecpc=900.0, clicks=3, budget_prop=4.0))
    (tmp_path / 'evaluation.json').write_text(json.dumps(ev))
    reg = pl.SageMakerRegistry(p)
    assert reg.latest_approved(tmp_path / 'none') is None
    arn = reg.register(run, tmp_path / 'evaluation.json', pl.model_package_request(p, 'x', 'y', ev))
    assert 'model-package/rtb-dcn-ipinyou-dev' in arn
    got = reg.latest_approved(tmp_path / 'approved')
    assert (got / 'model.onnx').read_bytes() == b'onnx'


def _synth(path, rows, base_ctr=None):
    from rtb_dcn.synth import write_synth
    write_synth(path, 'ipinyou', rows=rows, seed=7, base_ctr=base_ctr, progress=False)
    return path


def test_local_run_stops_at_a_failing_validation(tmp_path):
    "A log whose label rate is out of bounds: one line naming the step and the check; execution.json and report.md say so."
    log = _synth(tmp_path / 'hot.txt', 12_000, base_ctr=0.3)
    env = dict(os.environ, RTB_PIPELINE=json.dumps({'local_dir': str(tmp_path / 'pl')}))
    r = subprocess.run([RTB, 'pipeline', 'run', '--local', '--profile', 'dev', '--data', str(log)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith('rtb-dcn pipeline: error: pipeline: step ValidateLogs failed: validation: label_rate 0.'), err
    assert 'is outside [0.0001, 0.05]' in err and '--resume' in err
    ex = json.loads((tmp_path / 'pl' / 'execution.json').read_text())
    assert ex['steps']['ValidateLogs']['status'] == 'Failed' and ex['steps']['ProcessFeatures']['status'] == 'NotStarted'
    assert 'failed at ValidateLogs' in (tmp_path / 'pl' / 'report.md').read_text()
    v = json.loads((tmp_path / 'pl' / 'validation' / 'validation.json').read_text())
    assert [c['name'] for c in v['checks'] if not c['ok']] == ['label_rate']
    r = subprocess.run([RTB, 'pipeline', 'run', '--profile', 'dev'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2 and 'expected --local' in r.stderr


@pytest.mark.slow
def test_local_run_end_to_end(tmp_path, start_router):
    """dev profile on the embedded default: a DCN is registered (and served with --model-package), an LR on the same
    log is not (the report says why); a run failing at a step continues from there with --resume. ~4 min here."""
    from rtb_dcn.pipeline import run_local, LocalRegistry, resolve_model_package
    log = _synth(tmp_path / 'ipinyou.txt', 120_000)
    s = load_settings(profile='dev', pipeline={'local_dir': str(tmp_path / 'pl')})
    lines = []
    ex = run_local(s, data=log, echo=lines.append)
    assert [l.split(':')[0] for l in lines] == [f'[{i}/7] {n}' for i, n in enumerate(pl.STEPS, 1)]
    assert all(st['status'] == 'Succeeded' for st in ex['steps'].values()) and ex['outcome'].startswith('registered rtb-dcn-ipinyou-dev/v0001')
    reg = LocalRegistry(tmp_path / 'pl' / 'registry', 'rtb-dcn-ipinyou-dev')
    v1 = reg.latest_approved()
    pkg = reg.package(v1)
    assert pkg['ModelApprovalStatus'] == 'Approved' and Path(pkg['ModelMetrics']['ModelQuality']['Statistics']['S3Uri']).is_file()
    auc1 = json.loads((v1 / 'evaluation.json').read_text())['candidate']['auc']
    # the router serves the registered model: --model-package resolves to the version folder
    with start_router(model_package=str(reg.folder), env={'RTB_PIPELINE': json.dumps({'local_dir': str(tmp_path / 'pl')})}) as r:
        import httpx
        assert httpx.get(f'{r.url}/readyz', timeout=10).status_code == 200
        assert resolve_model_package('rtb-dcn-ipinyou-dev', s) == v1.resolve()
    # a worse model on the same window is not registered, and the report says why
    ex2 = run_local(s, data=log, experiment='LR_default', echo=lines.append)
    assert ex2['outcome'].startswith('not registered: ') and 'candidate.auc > approved.auc is false' in ex2['outcome']
    ev2 = json.loads((tmp_path / 'pl' / 'evaluation' / 'evaluation.json').read_text())
    assert ev2['approved']['auc'] == pytest.approx(auc1) and ev2['candidate']['auc'] < auc1
    assert reg.versions() == [v1] and 'not registered' in (tmp_path / 'pl' / 'report.md').read_text()
    # a failing step stops the run; --resume continues from it (a fixed experiment), not from the start
    with pytest.raises(RtbError, match=r'^pipeline: step ProcessFeatures failed: .*--resume'):
        run_local(s, data=log, experiment='NoSuchExperiment', echo=lines.append)
    lines.clear()
    ex3 = run_local(s, resume=True, experiment='DCN_test', echo=lines.append)
    assert lines[0] == '[1/7] ValidateLogs: done earlier (all checks passed)' and lines[1].startswith('[2/7] ProcessFeatures: ')
    assert ex3['steps']['TrainModel']['status'] == 'Succeeded' and ex3['experiment'] == 'DCN_test'


def test_demo_target_is_checked(tmp_path):
    r = subprocess.run([RTB, 'demo', '--target', 'cloud', '--only', 'train_report', '--report-dir', str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "target: 'cloud' is not a target; expected local or sagemaker" in r.stderr


@pytest.mark.slow
def test_sagemaker_round_trip_on_moto(moto_url, monkeypatch, tmp_path):
    "What the train runbook runs with target sagemaker: upsert/start/status, the local runner's model into the registry, metrics read back."
    _sdk_or_skip(); _aws_env(monkeypatch)
    s = load_settings(profile='dev', pipeline={'endpoint_url': moto_url})
    r = pl.sagemaker_round_trip(s, tmp_path, local_rows=100_000, echo=lambda *_: None)
    assert r['steps'] == list(pl.STEPS) and r['execution_arn'].startswith('arn:aws:sagemaker:')
    assert r['local_run']['outcome'].startswith('registered ') and r['registry']['status'] == 'Approved'
    local_ev = json.loads((tmp_path / 'pipeline_local' / 'evaluation' / 'evaluation.json').read_text())['candidate']
    assert r['registry']['evaluation']['auc'] == local_ev['auc'] and r['registry']['evaluation_uri'].startswith('s3://rtb-dcn-dev-')
    assert json.loads((tmp_path / 'pipeline_sagemaker.json').read_text())['model_package_arn'] == r['model_package_arn']


@pytest.mark.slow
def test_demo_train_report_on_sagemaker_target(tmp_path):
    "`rtb-dcn demo --target sagemaker`: the demo starts its own moto server; the runbook says which target it ran on."
    _sdk_or_skip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(('AWS_', 'RTB_PIPELINE'))}
    r = subprocess.run([RTB, 'demo', '--quick', '--target', 'sagemaker', '--only', 'train_report', '--report-dir', str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / 'train_report' / 'pipeline_sagemaker.json').read_text())
    assert res['endpoint'].startswith('http://127.0.0.1:') and res['local_run']['outcome']
    nb = (tmp_path / 'train_report' / 'train_report.ipynb').read_text()
    assert 'target: sagemaker' in nb and 'local runner (the numbers moto cannot produce)' in nb


def test_container_steps_run_as_cli(tmp_path):
    "What a processing container runs: `rtb-dcn pipeline validate|process` over a raw/ folder holding one log."
    raw = tmp_path / 'raw'; raw.mkdir()
    _synth(raw / 'log.txt', 15_000)
    env = dict(os.environ, RTB_PIPELINE=json.dumps({'min_rows': 10_000}))
    run = lambda *a: subprocess.run([RTB, 'pipeline', *a, '--profile', 'dev'], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    r = run('validate', '--data', str(raw), '--out', str(tmp_path / 'validation'))
    assert r.returncode == 0 and r.stdout.strip() == 'pipeline validate: done', r.stderr
    v = json.loads((tmp_path / 'validation' / 'validation.json').read_text())
    assert v['engine'] == 'duckdb' and v['passed'] and {c['name']: c['value'] for c in v['checks']}['row_count'] == 15_000
    r = run('process', '--data', str(raw), '--out', str(tmp_path / 'features'), '--experiment', 'DCN_test')
    assert r.returncode == 0, r.stderr
    man = json.loads((tmp_path / 'features' / 'manifest.json').read_text())
    assert man['rows'] == 15_000 and set(man['splits']) == {'train', 'valid', 'test'} and (tmp_path / 'features' / 'input_spec.json').is_file()
    r = run('explode')
    assert r.returncode == 2 and "action: 'explode' is unknown" in r.stderr


def test_deploy_step_on_moto(moto_url, monkeypatch, tmp_path):
    "DeployModel in the cloud: two approved packages -> models, an endpoint config with two weighted variants and data capture, the endpoint."
    _aws_env(monkeypatch)
    import boto3
    s = load_settings(profile='staging', pipeline={'endpoint_url': moto_url, 'bucket': 'rtb-dcn-deploy-test', 'model_package_group': 'rtb-dcn-deploy-test'})
    boto3.client('s3', endpoint_url=moto_url, region_name='us-east-1').create_bucket(Bucket=s.pipeline.bucket)
    run = tmp_path / 'run'; run.mkdir(); (run / 'model.onnx').write_bytes(b'onnx')
    ev = dict(candidate=dict(model_version='m', auc=0.7, logloss=0.02, ecpc=900.0, clicks=3, budget_prop=4.0))
    (tmp_path / 'evaluation.json').write_text(json.dumps(ev))
    reg = pl.SageMakerRegistry(s.pipeline)
    arns = [reg.register(run, tmp_path / 'evaluation.json', pl.model_package_request(s.pipeline, 'x', 'y', ev)) for _ in range(2)]
    assert pl.run_step('deploy', s, enabled='false', registry='sagemaker') == 'deploy: off'
    req = pl.run_step('deploy', s, enabled='true', registry='sagemaker')
    sm = boto3.client('sagemaker', endpoint_url=moto_url, region_name='us-east-1')
    cfg = sm.describe_endpoint_config(EndpointConfigName=req['EndpointConfigName'])
    assert [(v['VariantName'], v['InitialVariantWeight'], v['InstanceType']) for v in cfg['ProductionVariants']] == \
           [('control', 0.5, 'ml.c5.xlarge'), ('treatment', 0.5, 'ml.c5.xlarge')]
    assert cfg['DataCaptureConfig']['InitialSamplingPercentage'] == 20 and cfg['DataCaptureConfig']['DestinationS3Uri'].endswith('/rtb-dcn/data-capture')
    assert sm.describe_endpoint(EndpointName='rtb-dcn-staging')['EndpointConfigName'] == req['EndpointConfigName']
    assert len(arns) == 2
