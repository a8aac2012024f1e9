"""Sensors: uploads (S3 prefix or local inbox) start runs; run status sensors send notifications."""
