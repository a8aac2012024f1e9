"""Run notifications: a finished run read back by `run_events.summarize_run`, turned into a message (message.py)."""
