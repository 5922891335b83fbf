"""Alerts: rules over results and node health, their state (M-of-N, cooldown, grouping), and
the signed webhooks that tell people and systems. No SQL here: monitor.storage keeps the rows,
monitor.jobs runs the evaluation and the deliveries."""
