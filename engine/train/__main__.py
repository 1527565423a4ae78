"""`python -m engine.train RUN_DIR`: see engine.train.trainer."""

import sys

from engine.train.trainer import main

if __name__ == "__main__":
    sys.exit(main())
