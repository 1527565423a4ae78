"""`python -m engine.predict RUN_DIR`: see engine.predict.predictor."""

from engine.blockwise.shell import exit_process
from engine.predict.predictor import main

if __name__ == "__main__":
    # exit_process, not sys.exit: daisy's server thread may outlive an interrupted run.
    exit_process(main())
