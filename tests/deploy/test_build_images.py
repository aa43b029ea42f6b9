"""`make images` (deploy/build-images.sh) without building anything: which tool it picks, the base images it
passes, what it says when no tool is installed; and what .dockerignore lets into the build context. CI builds no
image; a stand-in for the container tool records the commands the script gives it."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY, ROOT, dockerfile

SCRIPT = DEPLOY / "build-images.sh"
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$RECORD"
"""


def bin_with(tmp_path: Path, *tools: str) -> Path:
    """A PATH folder with what the script needs from the system, and a recording stand-in for each tool."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for needed in ("bash", "dirname", "basename"):
        (folder / needed).symlink_to(shutil.which(needed) or needed)
    for tool in tools:
        (folder / tool).write_text(RECORDER)
        (folder / tool).chmod(0o755)
    return folder


def build(
    tmp_path: Path, *tools: str, args: tuple[str, ...] = (), **env: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    record = tmp_path / "record"
    path = bin_with(tmp_path, *tools)
    run = subprocess.run(
        [str(path / "bash"), str(SCRIPT), *args], capture_output=True, text=True,
        env={"PATH": str(path), "RECORD": str(record), **env},
    )  # fmt: skip
    return run, record.read_text().splitlines() if record.exists() else []


def test_it_builds_the_three_images_from_todays_bases_with_the_first_tool_installed(tmp_path: Path) -> None:
    run, commands = build(tmp_path, "podman", "buildah")

    assert run.returncode == 0, run.stderr
    assert commands == [
        "podman build -f deploy/Dockerfile.brain --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 "
        "-t ownchat/brain:latest .",
        "podman build -f deploy/Dockerfile.bots --build-arg BASE_IMAGE=python:3.12-slim -t ownchat/bots:latest .",
        "podman build -f deploy/Dockerfile.trainer --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 "
        "-t ownchat/trainer:latest .",
    ]


def test_bases_names_tool_options_and_build_arguments_are_the_operators(tmp_path: Path) -> None:
    run, commands = build(
        tmp_path, "docker", "buildah", args=("--build-arg", "PREPARE_DEFAULT_MODEL=0"),
        CONTAINER_TOOL="buildah --storage-driver vfs", GPU_BASE_IMAGE="mirror/cuda:12", BOTS_BASE_IMAGE="mirror/py:3",
        IMAGE_PREFIX="registry.example/oc/", IMAGE_TAG="1.0", IMAGES="bots trainer",
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert commands == [
        "buildah --storage-driver vfs build -f deploy/Dockerfile.bots --build-arg BASE_IMAGE=mirror/py:3 "
        "-t registry.example/oc/bots:1.0 --build-arg PREPARE_DEFAULT_MODEL=0 .",
        "buildah --storage-driver vfs build -f deploy/Dockerfile.trainer --build-arg BASE_IMAGE=mirror/cuda:12 "
        "-t registry.example/oc/trainer:1.0 --build-arg PREPARE_DEFAULT_MODEL=0 .",
    ]


@pytest.mark.parametrize("env", [{}, {"CONTAINER_TOOL": "podman"}])
def test_without_a_tool_it_says_what_to_install(tmp_path: Path, env: dict[str, str]) -> None:
    run, commands = build(tmp_path, **env)

    assert run.returncode != 0 and not commands
    [line] = run.stderr.splitlines()
    assert line.startswith("error: ") and ("docker, podman or buildah" in line or "podman" in line)


def test_every_dockerfile_takes_its_base_as_an_argument() -> None:
    for image in ("brain", "bots", "trainer"):
        instructions = dockerfile(DEPLOY / f"Dockerfile.{image}")
        [base] = [i for i in instructions if i.cmd == "FROM"]
        assert base.value == ("${BASE_IMAGE}",)
        assert any(
            i.cmd == "ARG" and i.value[0].startswith("BASE_IMAGE=") for i in instructions[: instructions.index(base)]
        )


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last matching pattern wins, ``!`` lets back in."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # a folder left out leaves out what it holds
    left_out = False
    for pattern in patterns:
        allow = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if pattern.startswith("**/"):  # a name at any depth
            hit = any(fnmatch.fnmatch(part, pattern.removeprefix("**/")) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            left_out = not allow
    return left_out


def test_the_build_context_holds_what_the_images_copy_and_nothing_private() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = {
        source
        for image in ("brain", "bots", "trainer")
        for instruction in dockerfile(DEPLOY / f"Dockerfile.{image}")
        if instruction.cmd == "COPY"
        for source in instruction.value[:-1]
    }
    for source in copied:
        assert not ignored(source, patterns), f"{source} is copied by a Dockerfile but left out of the context"
    assert not ignored("brain/service/app.py", patterns)
    for private in (".venv/bin/python", "var/redis/appendonlydir", "var/runs/x/report.json", ".git/HEAD",
                    "deploy/.env", "runs/gpt/model.pt", ".pytest_cache/v", "brain/__pycache__/app.cpython-311.pyc",
                    "bench/results/serve.json", "ownchat.yaml"):  # fmt: skip
        assert ignored(private, patterns), f"{private} would be sent to the builder"
    assert os.access(SCRIPT, os.X_OK)
