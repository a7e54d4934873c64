"""Entry point: python -m integration.bench (see runner.py)."""

import sys

from .runner import main

sys.exit(main())
