"""Runs: the run folder (store), the worker process that trains into it, and the monitor that reads it."""
