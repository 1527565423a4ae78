"""`python -m engine.predict RUN_DIR`: see engine.predict.launch."""

from engine.blockwise.shell import exit_process
from engine.predict.launch import main

if __name__ == "__main__":
    # exit_process, not sys.exit: daisy's server thread may outlive an interrupted run.
    exit_process(main())
