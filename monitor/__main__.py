"""`python -m monitor` runs the `edge-monitor` command line."""

from monitor.cli import main

raise SystemExit(main())
