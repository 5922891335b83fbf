"""Scheduled work: window analysis, node health; wires storage and analysis together."""
