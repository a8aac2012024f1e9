"""SPACEPORT_HOME: the folder every `spaceport` command works in (artifacts, inbox, the Dagster instance)."""

from __future__ import annotations

import os
from pathlib import Path

DEFINITIONS_MODULE = "spaceport_dagster.definitions"
LOCATION_NAME = "spaceport"  # the repo's workspace.yaml and pyproject's [tool.dagster] use the same name
# The code location as every `spaceport` command, its daemon and its UI load it: the installed module, so a wheel
# installed anywhere runs the orchestrator (no path into a checkout).
WORKSPACE_YAML = f"""load_from:
  - python_module:
      module_name: {DEFINITIONS_MODULE}
      location_name: {LOCATION_NAME}
"""


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


def workspace_file() -> Path:
    """`DAGSTER_HOME/workspace.yaml`, (re)written to load the installed definitions module."""
    folder = os.environ.get("DAGSTER_HOME") or os.environ.get("SPACEPORT_HOME", "./.spaceport")  # no env changes
    path = Path(folder).expanduser().resolve() / "workspace.yaml"
    if not path.is_file() or path.read_text() != WORKSPACE_YAML:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(WORKSPACE_YAML)
        tmp.replace(path)
    return path
