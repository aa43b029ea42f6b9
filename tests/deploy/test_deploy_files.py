"""deploy/ checked offline, with no Docker daemon and no cluster: compose against the Compose Specification's
schema, manifests against the Kubernetes schemas, Dockerfiles through BuildKit's parser, and every command,
endpoint, image, volume and secret they name against the project itself."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement

from brain.settings import SECRET_NAMES, Settings
from tests.deploy.manifests import (
    DEPLOY,
    IMAGE_PREFIX,
    K8S,
    ROOT,
    compose_schema,
    configmap_settings,
    console_scripts,
    containers,
    dockerfile,
    env_example,
    find,
    interpolated_variables,
    k8s_documents,
    k8s_files,
    load_compose,
    merge_compose,
    plain,
    pod_spec,
)

COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_CPU = DEPLOY / "compose.cpu.yaml"
# files given after compose.yaml with a second -f
OVERRIDES = [COMPOSE_CPU, DEPLOY / "compose.webhook.yaml"]
# the oldest Kubernetes still widely run, and the newest the schemas know
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
IMAGE_EXTRA = {"brain": "brain", "bots": "bots", "trainer": "train"}
SECRET_ENV = {f"OWNCHAT_{name.upper()}" for name in SECRET_NAMES}


def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def ownchat_commands() -> list[tuple[str, str, str]]:
    """(where, console script, subcommand) of every ownchat process that compose, Kubernetes or an image starts."""
    found = []
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith(IMAGE_PREFIX):
            found.append((f"compose service {name}", *service["command"][:2]))
    for doc in k8s_documents():
        for c in containers(doc):
            # the vLLM example's init container only copies the converted model out of the brain image
            if c["image"].startswith(IMAGE_PREFIX) and c["command"][0] != "cp":
                found.append((f"{doc['kind']} {doc['metadata']['name']}", *c["command"][:2]))
    for path in DEPLOY.glob("Dockerfile.*"):
        cmd = [i for i in dockerfile(path) if i.cmd == "CMD"][-1]
        found.append((path.name, *cmd.value[:2]))
    return found


# compose


def test_compose_file_is_valid_compose() -> None:
    assert schema_errors(plain(compose())) == []


@pytest.mark.parametrize("path", OVERRIDES, ids=lambda p: p.name)
def test_override_files_are_valid_compose_alone_and_merged(path: Path) -> None:
    override = load_compose(path)
    assert schema_errors(plain(override)) == []
    merged = merge_compose(compose(), override)
    assert schema_errors(merged) == []
    check_references(merged)


def test_compose_references_resolve() -> None:
    check_references(compose())


def check_references(base: dict[str, Any]) -> None:
    volumes = set(base["volumes"])
    for name, service in base["services"].items():
        for dependency in service.get("depends_on", {}):
            assert dependency in base["services"], f"{name} depends on an unknown service {dependency}"
            # a service every profile starts cannot wait for one that only some profiles start
            assert not base["services"][dependency].get("profiles") or service.get("profiles"), name
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in volumes, f"{name} mounts an undeclared volume {volume}"
            elif isinstance(volume, dict) and volume["type"] == "bind":
                assert (DEPLOY / volume["source"]).exists(), f"{name} binds a missing {volume['source']}"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == ROOT and (context / service["build"]["dockerfile"]).is_file(), name
        for env_file in service.get("env_file", []):
            assert (DEPLOY / f"{env_file}.example").is_file(), f"{env_file} has no committed example"


def test_compose_runs_redis_with_aof_on_a_volume_and_the_brain_on_a_gpu() -> None:
    services = compose()["services"]
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--requirepass" in command
    assert "redis-data:/data" in redis["volumes"]
    devices = services["brain"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    # the CPU override takes the GPU reservations away and nothing else
    merged = merge_compose(compose(), load_compose(COMPOSE_CPU))
    assert "deploy" not in merged["services"]["brain"] and "deploy" not in merged["services"]["trainer"]
    assert merged["services"]["brain"]["command"] == services["brain"]["command"]
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["trainer"] == ["trainer", "schedule"]
    assert commands["telegram"] == ["bot", "telegram"] and commands["discord"] == ["bot", "discord"]


def test_env_example_names_every_secret_and_holds_no_value() -> None:
    example = env_example()
    assert SECRET_ENV <= set(example), f"missing from .env.example: {SECRET_ENV - set(example)}"
    assert {k: v for k, v in example.items() if v} == {}
    for path in [COMPOSE, *OVERRIDES]:
        for variable, has_default in interpolated_variables(path.read_text()).items():
            assert has_default or variable in example, f"{path.name} needs ${variable}, which .env.example lacks"
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_the_settings_files_load_and_agree_with_the_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    loaded = {}
    configmap = tmp_path / "configmap-ownchat.yaml"
    configmap.write_text(yaml.safe_dump(configmap_settings()))
    for name, path in {"compose": DEPLOY / "ownchat.yaml", "k8s": configmap}.items():
        monkeypatch.setenv("OWNCHAT_CONFIG", str(path))
        loaded[name] = Settings()
    for settings in loaded.values():
        assert settings.brain.host == "0.0.0.0"
        assert settings.bot.brain_url == f"http://brain:{settings.brain.port}"
        assert settings.redis.url.startswith("redis://redis:6379")
        assert settings.trainer.registry_dir == "/var/lib/ownchat/registry"
    compose_brain = compose()["services"]["brain"]
    assert compose_brain["ports"] == [f"127.0.0.1:{loaded['compose'].brain.port}:{loaded['compose'].brain.port}"]
    assert f"registry:{loaded['compose'].trainer.registry_dir}:ro" in compose_brain["volumes"]
    brain_service = find("Service", "brain")["spec"]["ports"][0]
    assert brain_service["port"] == loaded["k8s"].brain.port


# Kubernetes


@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_validates_against_the_kubernetes_schemas(path: Path) -> None:
    documents = k8s_documents(path)
    assert documents
    for document in documents:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)


def test_brain_probes_point_at_the_brains_endpoints() -> None:
    from brain.service.app import create_app

    paths = set(create_app(Settings()).openapi()["paths"])  # the model loads only at start-up
    deployment = find("Deployment", "brain")
    (brain,) = deployment["spec"]["template"]["spec"]["containers"]
    port = {p["name"]: p["containerPort"] for p in brain["ports"]}["http"]
    assert port == configmap_settings()["brain"]["port"]
    assert brain["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert brain["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert brain["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= paths
    assert brain["resources"]["limits"]["nvidia.com/gpu"] == 1
    service = find("Service", "brain")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_redis_statefulset_persists_with_aof() -> None:
    statefulset = find("StatefulSet", "redis")
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = " ".join(redis["args"])
    assert "--appendonly yes" in args and "--dir /data" in args
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in redis["volumeMounts"]
    assert find("Service", "redis")["spec"]["ports"][0]["port"] == 6379


def test_trainer_cronjob_shares_the_registry_volume_with_the_brain() -> None:
    cronjob = find("CronJob", "trainer-nightly")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    registry = configmap_settings()["trainer"]["registry_dir"]

    def registry_claim(doc: dict[str, Any]) -> tuple[str, bool]:
        spec = pod_spec(doc)
        assert spec is not None
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == registry]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        return volume["persistentVolumeClaim"]["claimName"], mount.get("readOnly", False)

    assert registry_claim(cronjob) == ("ownchat-registry", False)
    assert registry_claim(find("Deployment", "brain")) == ("ownchat-registry", True)
    assert find("PersistentVolumeClaim", "ownchat-registry")["spec"]["accessModes"] == ["ReadWriteMany"]
    (trainer,) = pod_spec(cronjob)["containers"]  # type: ignore[index]
    assert trainer["command"] == ["trainer", "nightly"]


def test_workloads_reference_what_exists() -> None:
    template = find("Secret", "ownchat-secrets")
    secret_keys = set(template["stringData"])
    assert secret_keys == SECRET_ENV and set(template["stringData"].values()) == {""}
    claims = {d["metadata"]["name"] for d in k8s_documents() if d["kind"] == "PersistentVolumeClaim"}
    configmaps = {d["metadata"]["name"] for d in k8s_documents() if d["kind"] == "ConfigMap"}
    for doc in k8s_documents():
        spec = pod_spec(doc)
        if spec is None:
            continue
        assert doc["metadata"]["namespace"] == "ownchat"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
        for c in containers(doc):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in {
                    t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])
                }, f"{doc['metadata']['name']}: mount {mount['name']} has no volume"
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "ownchat-secrets" and ref["key"] in secret_keys, env
            if c["image"].startswith(IMAGE_PREFIX):
                # ownchat's containers run as the images' non-root user
                effective = {**spec.get("securityContext", {}), **c.get("securityContext", {})}
                assert effective.get("runAsNonRoot") is True, f"{doc['metadata']['name']}/{c['name']}"


def test_images_and_commands_are_consistent() -> None:
    images = {}
    for name, service in compose()["services"].items():
        if "build" in service:
            image = service["image"].split(":")[0]
            assert service["build"]["dockerfile"] == f"deploy/Dockerfile.{image.removeprefix(IMAGE_PREFIX)}"
            images[name] = image
    for doc in k8s_documents():
        for c in containers(doc):
            if c["image"].startswith(IMAGE_PREFIX):
                kind = c["image"].split(":")[0].removeprefix(IMAGE_PREFIX)
                assert (DEPLOY / f"Dockerfile.{kind}").is_file(), c["image"]
    for where, script, _ in ownchat_commands():
        image = {"brain": "brain", "bot": "bots", "trainer": "trainer"}[script]
        install = " ".join(i.original for i in dockerfile(DEPLOY / f"Dockerfile.{image}") if i.cmd == "RUN")
        assert f'".[{IMAGE_EXTRA[image]}]"' in install, f"{where}: {image} image lacks the {script} extra"
    assert images == {"brain": "ownchat/brain", "telegram": "ownchat/bots", "discord": "ownchat/bots",
                      "trainer": "ownchat/trainer"}  # fmt: skip


@pytest.mark.parametrize(
    ("script", "command"), sorted({(s, c) for _, s, c in ownchat_commands()}), ids=lambda v: str(v)
)
def test_every_command_deploy_runs_exists(script: str, command: str) -> None:
    assert script in console_scripts(), f"{script} is not a console script of the project"
    executable = Path(sys.executable).parent / script
    done = subprocess.run([str(executable), command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"`{script} {command} --help` failed:\n{done.stdout}\n{done.stderr}"
    assert "Usage" in done.stdout


# images


@pytest.mark.parametrize("name", ["Dockerfile.brain", "Dockerfile.bots", "Dockerfile.trainer"])
def test_dockerfile_builds_a_non_root_image_with_a_health_check(name: str) -> None:
    instructions = dockerfile(DEPLOY / name)
    known = {"FROM", "ARG", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "HEALTHCHECK", "CMD", "LABEL"}
    assert {i.cmd for i in instructions} <= known
    users = [i.value[0] for i in instructions if i.cmd == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{name} runs as root"
    (health,) = [i for i in instructions if i.cmd == "HEALTHCHECK"]
    assert health.value[:2] == ("CMD", "ownchat-healthcheck") and health.value[2] in health_checks()
    assert "COPY --chmod=755 deploy/healthcheck.py /usr/local/bin/ownchat-healthcheck" in [
        i.original for i in instructions
    ]
    for copy in (i for i in instructions if i.cmd == "COPY"):
        for source in copy.value[:-1]:
            assert (ROOT / source).exists(), f"{name} copies {source}, which is not in the repository"
    base = [i for i in instructions if i.cmd == "FROM"][0].value[0]
    args = {i.value[0].split("=")[0]: i.value[0].split("=", 1)[-1] for i in instructions if i.cmd == "ARG"}
    base = args.get(base.strip("${}"), base)
    runs = [i.original for i in instructions if i.cmd == "RUN"]
    if name == "Dockerfile.bots":
        assert base.startswith("python:") and base.endswith("-slim")
        assert not [r for r in runs if "pip install" in r and "torch" in r]
    else:
        assert base.startswith("nvidia/cuda:")
        torch_at = next(n for n, r in enumerate(runs) if "TORCH_SPEC" in r)
        project_at = next(n for n, r in enumerate(runs) if 'pip install ".[' in r)
        assert torch_at < project_at, "torch is installed before the project"


def test_the_bots_extra_pulls_no_torch_transformers_or_redis() -> None:
    """What `pip install .[bots]` brings, walked through the installed packages' own requirements."""
    seen: set[str] = set()
    pending = [Requirement(r) for r in distribution("ownchat").requires or []]
    pending = [r for r in pending if r.marker is None or r.marker.evaluate({"extra": "bots"})]
    while pending:
        requirement = pending.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen or name == "ownchat":
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for raw in requires:
            nested = Requirement(raw)
            extras = requirement.extras or {""}
            if nested.marker is None or any(nested.marker.evaluate({"extra": e}) for e in extras):
                pending.append(nested)
    assert {"python-telegram-bot", "discord-py", "httpx", "pydantic"} <= seen
    assert not {"torch", "transformers", "redis"} & seen


# the health check the images run


def health_checks() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("ownchat_healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CHECKS


def test_compose_health_checks_name_existing_checks() -> None:
    for name, service in compose()["services"].items():
        test = service["healthcheck"]["test"]
        if test[1] == "ownchat-healthcheck":
            assert test[2] in health_checks(), name


def healthcheck(kind: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("OWNCHAT_CONFIG", None)
    return subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), kind],
        capture_output=True, text=True, timeout=30, env=environment, cwd=DEPLOY,
    )  # fmt: skip


def test_the_health_check_sees_a_brain_and_redis_up_and_down(brain: Any) -> None:
    port = brain.url.rsplit(":", 1)[1]
    assert healthcheck("brain", OWNCHAT_BRAIN__PORT=port).returncode == 0
    assert healthcheck("bots", OWNCHAT_BOT__BRAIN_URL=brain.url).returncode == 0
    assert healthcheck("trainer", OWNCHAT_REDIS__URL=brain.redis.url).returncode == 0

    brain.redis.kill()
    down = healthcheck("trainer", OWNCHAT_REDIS__URL=brain.redis.url)
    assert down.returncode == 1 and "Redis does not answer" in down.stderr
    nobody = healthcheck("bots", OWNCHAT_BOT__BRAIN_URL="http://127.0.0.1:9")
    assert nobody.returncode == 1 and "unreachable" in nobody.stderr
    broken = healthcheck("brain", OWNCHAT_MODEL__ENGINE="vllm")
    assert broken.returncode == 1 and "model.vllm_url is not set" in broken.stderr


def setting_exists(variable: str) -> bool:
    """Whether an OWNCHAT_* variable is a secret, the config file's name, or a path of the settings."""
    if variable in SECRET_ENV or variable == "OWNCHAT_CONFIG":
        return True
    model: Any = Settings
    for part in variable.removeprefix("OWNCHAT_").lower().split("__"):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_every_ownchat_variable_deploy_sets_is_a_setting() -> None:
    variables = set()
    for path in [COMPOSE, *OVERRIDES]:
        for service in load_compose(path)["services"].values():
            variables |= {v for v in plain(service.get("environment") or {}) if v.startswith("OWNCHAT_")}
    for doc in k8s_documents():
        for c in containers(doc):
            variables |= {e["name"] for e in c.get("env", []) if e["name"].startswith("OWNCHAT_")}
    for path in DEPLOY.glob("Dockerfile.*"):
        for env in (i for i in dockerfile(path) if i.cmd == "ENV"):
            variables |= {v for v in env.value[::2] if v.startswith("OWNCHAT_")}
    variables |= set(re.findall(r"OWNCHAT_[A-Z_]+", (DEPLOY / "README.md").read_text()))
    assert {"OWNCHAT_BOT__TELEGRAM__MODE", "OWNCHAT_BRAIN__HOST"} <= variables
    assert not setting_exists("OWNCHAT_BOT__TELEGRAM__MOOD")
    assert sorted(v for v in variables if not setting_exists(v)) == []
