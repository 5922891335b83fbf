"""Retraining: hooks that start it (a signed webhook, a command, a Python entry point), the
bundled reference retrainer, and the promotion gate and canary that decide what reaches nodes."""
