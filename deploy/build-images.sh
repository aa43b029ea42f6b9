#!/usr/bin/env bash
# Build ownchat's three images (brain, bots, trainer) with whichever of docker, podman or buildah is installed.
#
#   deploy/build-images.sh                        # or: make images
#   CONTAINER_TOOL=podman deploy/build-images.sh  # pick one when several are installed
#   GPU_BASE_IMAGE=mirror.example/nvidia/cuda:12.8.1-base-ubuntu24.04 BOTS_BASE_IMAGE=mirror.example/python:3.12-slim \
#       deploy/build-images.sh
#   deploy/build-images.sh --build-arg PREPARE_DEFAULT_MODEL=0   # any further arguments go to every build
#
# Settings (environment):
#   CONTAINER_TOOL   the command to build with, with its global options if it needs any
#                    (e.g. "podman --runtime runc --cgroup-manager cgroupfs"); default: docker, podman, buildah,
#                    the first one installed
#   GPU_BASE_IMAGE   base of the brain and trainer images (default nvidia/cuda:12.8.1-base-ubuntu24.04;
#                    any Debian or Ubuntu image works, the images then run on the CPU)
#   BOTS_BASE_IMAGE  base of the bots image (default python:3.12-slim; any image with python3 and its venv module)
#   IMAGE_PREFIX     name prefix (default ownchat/, e.g. registry.example/ownchat/)
#   IMAGE_TAG        tag (default latest)
#   IMAGES           which to build (default "brain bots trainer")
set -euo pipefail
cd "$(dirname "$0")/.."

GPU_BASE_IMAGE=${GPU_BASE_IMAGE:-nvidia/cuda:12.8.1-base-ubuntu24.04}
BOTS_BASE_IMAGE=${BOTS_BASE_IMAGE:-python:3.12-slim}
IMAGE_PREFIX=${IMAGE_PREFIX:-ownchat/}
IMAGE_TAG=${IMAGE_TAG:-latest}
IMAGES=${IMAGES:-brain bots trainer}

if [ -n "${CONTAINER_TOOL:-}" ]; then
    read -r -a tool <<<"$CONTAINER_TOOL"
    if ! command -v "${tool[0]}" >/dev/null; then
        echo "error: CONTAINER_TOOL names ${tool[0]}, which is not installed" >&2
        exit 2
    fi
else
    tool=()
    for candidate in docker podman buildah; do
        if command -v "$candidate" >/dev/null; then
            tool=("$candidate")
            break
        fi
    done
    if [ ${#tool[@]} -eq 0 ]; then
        echo "error: none of docker, podman or buildah is installed; install one (Debian/Ubuntu: apt-get install podman)" >&2
        exit 2
    fi
fi

# `buildah build` and `podman build` take the same options as `docker build`; buildah names its images
# localhost/NAME, as podman does
for image in $IMAGES; do
    case "$image" in
        brain | trainer) base=$GPU_BASE_IMAGE ;;
        bots) base=$BOTS_BASE_IMAGE ;;
        *)
            echo "error: unknown image $image (brain, bots or trainer)" >&2
            exit 2
            ;;
    esac
    name="${IMAGE_PREFIX}${image}:${IMAGE_TAG}"
    echo "building $name from $base with ${tool[*]}"
    "${tool[@]}" build -f "deploy/Dockerfile.$image" --build-arg "BASE_IMAGE=$base" -t "$name" "$@" .
done
