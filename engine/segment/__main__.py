"""`python -m engine.segment RUN_DIR`: see engine.segment.segmentation."""

from engine.blockwise.shell import exit_process
from engine.segment.segmentation import main

if __name__ == "__main__":
    # exit_process, not sys.exit: daisy's server thread may outlive an interrupted run.
    exit_process(main())
