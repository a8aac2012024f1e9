"""Runs a locally built stage image the way SageMaker runs it, for the emulator (tests/sagemaker_emulator.py).

SageMaker starts the image's ENTRYPOINT (a Processing job adds its ContainerArguments, a Training job the argument
`train`) with the job's Environment, the channels and output folders under `/opt/ml`, and the execution role's
credentials. Here the image runs under buildah (root, vfs storage, chroot isolation: no daemon): `/opt/ml` is the
emulator's per-job folder bind-mounted, the network is the host's (so the stage reaches the moto server), and
nothing of the checkout is visible inside: the stage code is the image's own.

One working container per image is made on first use and reused by later jobs (with vfs a container is a full
copy of the image); every job gets its own `/opt/ml`, which is all a stage writes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

BUILDAH = ["buildah", "--storage-driver", "vfs"]


def buildah_available() -> bool:
    return shutil.which("buildah") is not None


def image_id(image: str) -> str | None:
    proc = subprocess.run([*BUILDAH, "inspect", "--type", "image", "--format", "{{.FromImageID}}", image],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


class BuildahImages:
    """`images` maps an image URI as the launcher sends it (`<repo>-<image>:<tag>`) to a local image name."""

    def __init__(self, images: dict[str, str]):
        self.images = dict(images)
        self._containers: dict[str, str] = {}

    def __contains__(self, uri: str) -> bool:
        return uri in self.images

    def entrypoint(self, uri: str) -> list[str]:
        proc = subprocess.run([*BUILDAH, "inspect", "--type", "image", self.images[uri]],
                              capture_output=True, text=True, check=True)
        config = json.loads(proc.stdout)["OCIv1"]["config"]
        return list(config.get("Entrypoint") or [])

    def container(self, uri: str) -> str:
        """The working container of `uri`'s image (made once per image version)."""
        if uri not in self._containers:
            image = self.images[uri]
            ident = image_id(image)
            if not ident:
                raise RuntimeError(f"image {image} is not built (scripts/build-images.sh)")
            name = "spaceport-test-" + re.sub(r"[^a-z0-9]+", "-", image.rsplit("/", 1)[-1].lower()) + "-" + ident[:12]
            exists = subprocess.run([*BUILDAH, "inspect", "--type", "container", name], capture_output=True)
            if exists.returncode != 0:
                subprocess.run([*BUILDAH, "from", "--name", name, image], check=True, capture_output=True)
            self._containers[uri] = name
        return self._containers[uri]

    def command(self, uri: str, arguments: list[str], opt_ml: Path, env: dict[str, str]) -> list[str]:
        """The host command that runs `uri`'s entry point with `arguments` as SageMaker would."""
        settings = []
        for key, value in sorted(env.items()):
            settings += ["--env", f"{key}={value}"]
        return [*BUILDAH, "run", "--isolation", "chroot", "--network", "host",
                "--volume", f"{opt_ml}:/opt/ml", *settings, self.container(uri), "--",
                *self.entrypoint(uri), *arguments]
