"""Experiment configs: `get_config(arg)` returns a ConfigDict (configs/*.py in a checkout name them by path)."""
