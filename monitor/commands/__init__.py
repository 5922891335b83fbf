"""The use cases that the CLI and the admin API share: one check, one transaction, one error."""
