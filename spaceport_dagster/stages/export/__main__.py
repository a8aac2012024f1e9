import sys

from spaceport_dagster.stages.entry import main

from .export import run

sys.exit(main("export", run))
