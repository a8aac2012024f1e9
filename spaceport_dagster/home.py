"""SPACEPORT_HOME: the folder every `spaceport` command works in (artifacts, inbox, the Dagster instance)."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_home() -> Path:
    """SPACEPORT_HOME holds artifacts and the Dagster instance (DAGSTER_HOME), so `dagster dev` sees our runs."""
    home = Path(os.environ.get("SPACEPORT_HOME", "./.spaceport")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["SPACEPORT_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    instance_yaml = Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml"
    shipped = Path(__file__).with_name("dagster.yaml")
    if not instance_yaml.exists() and shipped.exists():
        instance_yaml.write_text(shipped.read_text())
    return home
