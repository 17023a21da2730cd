"""The pipeline's infrastructure templates (deploy/infra/*.yaml): cfn-lint clean, checkov with no failed check (every
skip justified in the template), and each stack created on moto server's CloudFormation, with the resources moto
emulates checked through their own APIs (ElastiCache, Secrets Manager and bucket policies are not emulated by moto's
CloudFormation: it skips them with a warning, and it applies only a bucket's encryption and tags; cfn-lint and checkov
are the checks of the rest)."""
import json, subprocess, sys
from pathlib import Path
import pytest
from rtb_dcn.config import repo_root

ROOT = repo_root()
INFRA = ROOT / 'deploy' / 'infra'
TEMPLATES = sorted(INFRA.glob('*.yaml'))
BIN = Path(sys.executable).parent


def test_templates_present():
    assert [t.name for t in TEMPLATES] == ['iam.yaml', 'storage.yaml', 'streaming.yaml']


def test_cfn_lint_clean():
    r = subprocess.run([str(BIN / 'cfn-lint'), *map(str, TEMPLATES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_checkov_no_failed_check(tmp_path):
    exe = ROOT / '.venvs' / 'checkov' / 'bin' / 'checkov'
    if not exe.is_file(): pytest.skip("checkov: not installed; `make venv-checkov` creates .venvs/checkov (make infra-check writes report/infra/)")
    r = subprocess.run([str(exe), '-d', str(INFRA), '--framework', 'cloudformation', '--skip-download', '-o', 'json'],
                       capture_output=True, text=True, timeout=600)
    d = json.loads(r.stdout)
    assert d['summary']['failed'] == 0 and d['summary']['parsing_errors'] == 0, [c['check_id'] + ' ' + c['resource'] for c in d['results']['failed_checks']]
    assert d['summary']['passed'] >= 50
    for c in d['results']['skipped_checks']: assert len(c['check_result'].get('suppress_comment') or '') > 20, c['check_id']


@pytest.fixture
def aws(moto_url):
    import boto3
    kw = dict(endpoint_url=moto_url, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')
    return lambda service: boto3.client(service, **kw)


def _create(cfn, name: str, template: Path, **params) -> dict:
    cfn.create_stack(StackName=name, TemplateBody=template.read_text(), Capabilities=['CAPABILITY_NAMED_IAM'],
                     Parameters=[dict(ParameterKey=k, ParameterValue=str(v)) for k, v in params.items()])
    st = cfn.describe_stacks(StackName=name)['Stacks'][0]
    assert st['StackStatus'] == 'CREATE_COMPLETE', st
    return {o['OutputKey']: o['OutputValue'] for o in st.get('Outputs', [])}


def test_stacks_create_on_moto(aws):
    cfn = aws('cloudformation')
    env = 'staging'
    out = _create(cfn, f'rtb-dcn-{env}-storage', INFRA / 'storage.yaml', Environment=env)
    s3, ecr = aws('s3'), aws('ecr')
    bucket = out['BucketName']
    assert bucket.startswith(f'rtb-dcn-{env}-')
    rule = s3.get_bucket_encryption(Bucket=bucket)['ServerSideEncryptionConfiguration']['Rules'][0]['ApplyServerSideEncryptionByDefault']
    assert rule['SSEAlgorithm'] == 'aws:kms' and rule['KMSMasterKeyID'] == out['KeyArn']
    # moto's CloudFormation applies only a bucket's encryption and tags: versioning, the public access block and the
    # lifecycle are read from the template (cfn-lint has checked their schema, checkov their values)
    from cfnlint.decode.cfn_yaml import load
    props = load(str(INFRA / 'storage.yaml'))['Resources']['DataBucket']['Properties']
    assert props['VersioningConfiguration'] == {'Status': 'Enabled'} and all(props['PublicAccessBlockConfiguration'].values())
    assert [r['Id'] for r in props['LifecycleConfiguration']['Rules']] == ['raw-logs', 'checkpoints', 'data-capture', 'old-versions']
    repos = [r for r in ecr.describe_repositories()['repositories'] if r['repositoryName'].endswith(env)]
    assert sorted(r['repositoryName'] for r in repos) == [f'rtb-dcn-{env}', f'rtb-dcn-training-{env}']
    assert all(r['imageTagMutability'] == 'IMMUTABLE' for r in repos)
    tpl = load(str(INFRA / 'storage.yaml'))['Resources']   # moto's CloudFormation drops the scan configuration: the template's
    assert all(tpl[k]['Properties']['ImageScanningConfiguration'] == {'ScanOnPush': True} for k in ('ServingRepository', 'TrainingRepository'))
    out_iam = _create(cfn, f'rtb-dcn-{env}-iam', INFRA / 'iam.yaml', Environment=env, BucketName=bucket, KeyArn=out['KeyArn'],
                      ServingRepositoryArn=out['ServingRepositoryArn'], TrainingRepositoryArn=out['TrainingRepositoryArn'])
    iam = aws('iam')
    role = iam.get_role(RoleName=f'rtb-dcn-{env}-sagemaker-execution')['Role']
    assert role['Arn'] == out_iam['SageMakerExecutionRoleArn']
    assert role['Arn'].split(':role/')[1] == 'rtb-dcn-staging-sagemaker-execution'   # the profile's pipeline.role_arn names it
    pol = iam.get_role_policy(RoleName=role['RoleName'], PolicyName='pipeline-data')['PolicyDocument']
    if isinstance(pol, str):   # moto's CloudFormation stores an inline policy as the repr of the template's mapping
        import ast
        from urllib.parse import unquote
        pol = ast.literal_eval(unquote(pol))
    folders = next(s for s in pol['Statement'] if s['Sid'] == 'PipelineFolders')['Resource']
    assert all(f'{bucket}/rtb-dcn/' in r for r in folders)            # only the pipeline's prefixes, never the whole bucket
    assert iam.get_role(RoleName=f'rtb-dcn-{env}-pipeline-execution')['Role']['Arn'] == out_iam['PipelineExecutionRoleArn']
    ec2 = aws('ec2')
    vpc = ec2.create_vpc(CidrBlock='10.7.0.0/16')['Vpc']['VpcId']
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f'10.7.{i}.0/24', AvailabilityZone=f'us-east-1{z}')['Subnet']['SubnetId'] for i, z in ((1, 'a'), (2, 'b'))]
    router_sg = ec2.create_security_group(GroupName='router', Description='router tasks', VpcId=vpc)['GroupId']
    _create(cfn, f'rtb-dcn-{env}-streaming', INFRA / 'streaming.yaml', Environment=env, KeyArn=out['KeyArn'], VpcId=vpc,
            SubnetIds=','.join(subnets), RouterSecurityGroupId=router_sg)
    st = aws('kinesis').describe_stream(StreamName=f'rtb-bid-requests-{env}')['StreamDescription']
    assert len(st['Shards']) == 2 and st['RetentionPeriodHours'] == 48
    res = load(str(INFRA / 'streaming.yaml'))['Resources']   # moto's CloudFormation drops the stream's encryption: the template's
    assert res['BidRequestStream']['Properties']['StreamEncryption']['EncryptionType'] == 'KMS'
    redis = res['Redis']['Properties']                       # not emulated by moto: the template's settings
    assert redis['AtRestEncryptionEnabled'] and redis['TransitEncryptionEnabled'] and redis['AutomaticFailoverEnabled']
