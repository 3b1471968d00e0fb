"""Lets `python -m ember` run the same command line as the `ember` script."""
from ember.runtime.cli import main

raise SystemExit(main())
