#!/usr/bin/env bash
# Build the stage images (scripts/build-images.sh) and push them to ECR as <registry>/spaceport-<image>:<tag>.
#
#   containers/build_and_push.sh [--region eu-west-1] [--tag v1] [--images "ingest sfm train sog"] [--no-push]
#                                [--prefix spaceport] [-- <more scripts/build-images.sh arguments>]
#
# Needs Docker (or buildah, as root) and the AWS CLI with credentials allowed to create ECR repositories and
# push. Prints the two settings the SageMaker launcher needs at the end:
#   SPACEPORT_SAGEMAKER_IMAGE_REPO=<account>.dkr.ecr.<region>.amazonaws.com/spaceport
#   SPACEPORT_SAGEMAKER_IMAGE_TAG=<tag>
# Images: ingest (image_set), sfm (sparse_reconstruction and colmap_export), train (splat_model, CUDA, gsplat
# compiled for sm_86 and sm_90), sog (sogs_bundle); add "opensfm" to --images for the OpenSfM SfM engine.
set -euo pipefail

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
TAG=""
IMAGES="ingest sfm train sog"
PUSH=1
PREFIX="spaceport"
BUILD_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --region) REGION="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --images) IMAGES="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --no-push) PUSH=0; shift ;;
    --) shift; BUILD_ARGS=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ -n "$TAG" ]] || TAG="$(bash scripts/build-images.sh --print-tag)"
ENGINE="$(bash scripts/build-images.sh --print-engine)"  # the engine build-images.sh builds with

bash scripts/build-images.sh --engine "$ENGINE" --images "$IMAGES" --tag "$TAG" "${BUILD_ARGS[@]}"
[[ "$PUSH" == 1 ]] || { echo "built with tag $TAG (not pushed)"; exit 0; }

[[ -n "$REGION" ]] || { echo "set --region or AWS_REGION" >&2; exit 2; }
ACCOUNT="$(aws sts get-caller-identity --query Account --output text)"
REGISTRY="${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com"
if [[ "$ENGINE" == docker ]]; then
  aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "$REGISTRY"
else
  aws ecr get-login-password --region "$REGION" | buildah login --username AWS --password-stdin "$REGISTRY"
fi
for image in $IMAGES; do
  repo="${PREFIX}-${image}"
  uri="${REGISTRY}/${repo}:${TAG}"
  aws ecr describe-repositories --region "$REGION" --repository-names "$repo" > /dev/null 2>&1 \
    || aws ecr create-repository --region "$REGION" --repository-name "$repo" \
         --image-scanning-configuration scanOnPush=true > /dev/null
  echo "== pushing $uri"
  if [[ "$ENGINE" == docker ]]; then
    docker tag "spaceport-${image}:${TAG}" "$uri"
    docker push "$uri"
  else
    buildah --storage-driver vfs push "localhost/spaceport-${image}:${TAG}" "docker://${uri}"
  fi
done

echo
echo "SPACEPORT_SAGEMAKER_IMAGE_REPO=${REGISTRY}/${PREFIX}"
echo "SPACEPORT_SAGEMAKER_IMAGE_TAG=${TAG}"
