"""`python -m engine.blockwise RUN_DIR TASK_ID TARGET`: a cluster job's worker (see
engine.blockwise.worker)."""

import sys

from engine.blockwise.worker import main

if __name__ == "__main__":
    sys.exit(main())
