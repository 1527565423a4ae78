"""`python -m engine.evaluate RUN_DIR`: see engine.evaluate.evaluation."""

from engine.blockwise.shell import exit_process
from engine.evaluate.evaluation import main

if __name__ == "__main__":
    # exit_process, not sys.exit: daisy's server thread may outlive an interrupted run.
    exit_process(main())
