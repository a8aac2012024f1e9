import sys

from spaceport_dagster.stages.entry import main

from .stage import run

sys.exit(main("merge", run))
