"""The collector's HTTP routes, one module per resource."""
