#!/usr/bin/env bash
# Build the stage images: spaceport-base (the shared Python layer) first, then every stage image on top of it.
#
#   scripts/build-images.sh [--images "ingest sfm sog train"] [--tag TAG] [--engine docker|buildah]
#                           [--base IMAGE] [--debian-base] [--sizes FILE.json] [--build-arg K=V ...]
#   scripts/build-images.sh --print-tag    (the default tag, then exit; containers/build_and_push.sh uses it)
#   scripts/build-images.sh --print-engine (docker or buildah, the engine it would build with, then exit)
#
# Images: spaceport-ingest (image_set), spaceport-sfm (sparse_reconstruction and colmap_export), spaceport-train
# (splat_model: CUDA torch, gsplat compiled for sm_86 and sm_90), spaceport-sog (sogs_bundle); "opensfm" is built
# only when named: its base is OpenDroneMap's published image (Docker Hub) and it copies uv from ghcr.io, so it
# needs those registries; where they cannot be reached the script says so and stops before building anything
# (it cannot be built on this project's build VM). All are tagged <name>:<tag> (default: the git
# commit, "-dirty" when the image sources have uncommitted changes) and <name>:latest.
#
# Engine: Docker where a Docker daemon answers, else buildah (root, no daemon: vfs storage, chroot isolation,
# the host network and the host's CA bundle during RUN steps).
# Base: --base IMAGE (default python:3.11-slim-bookworm). --debian-base makes one from Debian's packages
# (mmdebstrap --variant=minbase bookworm, Python 3.11) and imports it as localhost/spaceport-debian:bookworm, for
# machines that cannot pull from public registries (buildah only). --sizes writes the image sizes as JSON.
# --build-arg goes to every stage image (e.g. TORCH_CUDA_ARCH_LIST="8.6;8.9;9.0" for the train image).
# containers/build_and_push.sh pushes the built images to ECR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

IMAGES="ingest sfm sog train"
TAG=""
ENGINE=""
BASE="python:3.11-slim-bookworm"
DEBIAN_BASE=0
SIZES=""
EXTRA_ARGS=()
CA_BUNDLE="${SPACEPORT_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PRINT_TAG=0
PRINT_ENGINE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --images) IMAGES="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --engine) ENGINE="$2"; shift 2 ;;
    --base) BASE="$2"; shift 2 ;;
    --debian-base) DEBIAN_BASE=1; shift ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --build-arg) EXTRA_ARGS+=("$2"); shift 2 ;;
    --print-tag) PRINT_TAG=1; shift ;;
    --print-engine) PRINT_ENGINE=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build-images: unknown argument: $1" >&2; exit 2 ;;
  esac
done
for image in $IMAGES; do
  [[ -f "containers/$image/Dockerfile" ]] || { echo "build-images: no containers/$image/Dockerfile" >&2; exit 2; }
done

if [[ -z "$TAG" ]]; then
  TAG="$(git rev-parse --short=12 HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)"
  if [[ -n "$(git status --porcelain -- spaceport_dagster containers pyproject.toml 2>/dev/null)" ]]; then
    TAG="${TAG}-dirty"
  fi
fi
[[ "$PRINT_TAG" == 0 ]] || { echo "$TAG"; exit 0; }

if [[ -z "$ENGINE" ]]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v buildah >/dev/null 2>&1; then ENGINE=buildah
  else echo "build-images: neither a Docker daemon nor buildah found (apt-get install buildah)" >&2; exit 2
  fi
fi
[[ "$PRINT_ENGINE" == 0 ]] || { echo "$ENGINE"; exit 0; }

buildah_() { buildah --storage-driver vfs "$@"; }

debian_base() {
  # A Debian bookworm root file system with Python 3.11, made from Debian's packages (no registry needed).
  local name="localhost/spaceport-debian:bookworm"
  if buildah_ inspect --type image "$name" >/dev/null 2>&1; then echo "$name"; return; fi
  command -v mmdebstrap >/dev/null || { echo "build-images: --debian-base needs mmdebstrap" >&2; exit 2; }
  local tmp; tmp="$(mktemp -d)"
  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
    bookworm "$tmp/rootfs.tar" >&2
  local ctr; ctr="$(buildah_ from scratch)"
  buildah_ add "$ctr" "$tmp/rootfs.tar" / >&2
  # pip reads the system bundle (the RUN steps bind-mount the host's over it), not its own certifi copy.
  buildah_ config --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --env LANG=C.UTF-8 --cmd python3 "$ctr" >&2
  buildah_ commit --rm "$ctr" "$name" >&2
  rm -rf "$tmp"
  echo "$name"
}

build() {  # build <name> <dockerfile> [build args...]
  local name="$1" dockerfile="$2"; shift 2
  local args=()
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  echo "== building $name:$TAG ($dockerfile, $ENGINE)" >&2
  local start=$SECONDS
  if [[ "$ENGINE" == docker ]]; then
    DOCKER_BUILDKIT=1 docker build --platform linux/amd64 -f "$dockerfile" "${args[@]}" \
      -t "$name:$TAG" -t "$name:latest" .
  else
    local mounts=() layers=()
    [[ -f "$CA_BUNDLE" ]] && mounts+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
    # vfs keeps every layer as a full copy of the file system: cache the small base's steps, but build the stage
    # images in one working container each (a multi-GB layer per RUN step would fill the disk).
    if [[ "$name" == spaceport-base ]]; then layers=(--layers); else layers=(--no-cache); fi
    buildah_ bud --isolation chroot --network host --force-rm "${layers[@]}" "${mounts[@]}" -f "$dockerfile" \
      "${args[@]}" -t "$name:$TAG" -t "$name:latest" .
  fi
  echo "== built $name:$TAG in $((SECONDS - start)) s" >&2
}

image_ref() {  # how a later FROM names a locally built image
  if [[ "$ENGINE" == docker ]]; then echo "$1:$TAG"; else echo "localhost/$1:$TAG"; fi
}

image_size() {
  if [[ "$ENGINE" == docker ]]; then docker image inspect --format '{{.Size}}' "$1:$TAG"
  else # buildah reports a rounded decimal size ("515 MB"): back to bytes
       buildah_ images --json "localhost/$1:$TAG" | python3 -c "import json, sys
value, unit = json.load(sys.stdin)[0]['size'].split()
print(round(float(value) * {'B': 1, 'kB': 1e3, 'MB': 1e6, 'GB': 1e9, 'TB': 1e12}[unit]))"
  fi
}

external_images() {  # the registry images a Dockerfile starts from or copies from (not its ARG-named bases)
  grep -oE '^FROM [^ $]+|--from=[^ $]+' "$1" | sed -E 's/^FROM |^--from=//' | grep -E '[:/]' || true
}

pull() {
  if [[ "$ENGINE" == docker ]]; then docker pull "$1"
  else # buildah resolves a short name only with a search registry configured: qualify Docker Hub's names
       local ref="$1"; [[ "${ref%%/*}" == *.* ]] || ref="docker.io/$ref"; buildah_ pull "$ref"
  fi
}

# Fail before building anything when an image's registry base cannot be pulled (opensfm here: no registry).
for image in $IMAGES; do
  for ref in $(external_images "containers/$image/Dockerfile"); do
    if ! log="$(pull "$ref" 2>&1)"; then
      echo "build-images: spaceport-$image cannot be built here: its base $ref cannot be pulled:" >&2
      echo "  $(tail -n 1 <<<"$log")" >&2
      echo "  build it on a machine that reaches that registry; the other images do not need it." >&2
      exit 2
    fi
  done
done

if [[ "$DEBIAN_BASE" == 1 ]]; then
  [[ "$ENGINE" == buildah ]] || { echo "build-images: --debian-base is for buildah" >&2; exit 2; }
  BASE="$(debian_base)"
fi

build spaceport-base containers/base/Dockerfile "BASE=$BASE"
built=(spaceport-base)
for image in $IMAGES; do
  stage_args=("BASE_IMAGE=$(image_ref spaceport-base)")
  [[ -n "${SPACEPORT_BUILD_TORCH_INDEX:-}" && "$image" == sog ]] && stage_args+=("TORCH_INDEX=$SPACEPORT_BUILD_TORCH_INDEX")
  [[ "$image" == opensfm ]] && stage_args=()
  build "spaceport-$image" "containers/$image/Dockerfile" "${stage_args[@]}" "${EXTRA_ARGS[@]}"
  built+=("spaceport-$image")
done

echo
printf '%-20s %-28s %10s\n' image tag "size (MB)"
json="{"
for name in "${built[@]}"; do
  bytes="$(image_size "$name")"
  printf '%-20s %-28s %10d\n' "$name" "$TAG" "$((bytes / 1000000))"
  json+="\"$name\": $bytes, "
done
json="${json%, }}"
if [[ -n "$SIZES" ]]; then
  printf '{"tag": "%s", "engine": "%s", "base": "%s", "bytes": %s}\n' "$TAG" "$ENGINE" "$BASE" "$json" > "$SIZES"
  echo "sizes written to $SIZES"
fi
