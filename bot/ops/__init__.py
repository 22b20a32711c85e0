"""Operator tooling: `python -m bot check`, the start-up line, probes, network diagnosis."""
