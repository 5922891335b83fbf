"""Simulated fleets: physically plausible machine sensor data for demos, tests and benchmarks."""
