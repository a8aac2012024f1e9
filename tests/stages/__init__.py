"""Stages that exist only for tests, run by `LocalStageLauncher(stages_package="tests.stages")`."""
