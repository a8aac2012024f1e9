"""Stage 1: uploads to a validated image set with EXIF facts."""
