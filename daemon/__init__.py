"""lsdctl's daemon: queues runs, reserves GPUs, launches engine entry points, records SQLite.

It never imports torch, gunpowder or daisy: runs are `python -m engine.<kind> RUN_DIR`
subprocesses (see DESIGN.md, the run-directory contract).
"""
