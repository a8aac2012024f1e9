"""Run notifications: a summary of a finished run (summary.py) turned into a message (message.py)."""
