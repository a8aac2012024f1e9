import sys

from spaceport_dagster.stages.entry import main

from .ingest import run

sys.exit(main("ingest", run))
