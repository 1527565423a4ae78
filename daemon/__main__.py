"""`python -m daemon`: see daemon.server."""

from __future__ import annotations

import sys

from daemon.server import main

sys.exit(main())
