"""`python -m provider.packaging`: the `package` subcommand alone (same options and output)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
