"""OpenSfM as a second SfM engine: run its CLI, convert its output to a pycolmap.Reconstruction."""
