"""Stage 2: image_set to a sparse reconstruction (pycolmap or OpenSfM), georegistered when GPS allows."""
