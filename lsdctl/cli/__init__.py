"""The `lsdctl` command line: `lsdctl X` lives in X.py, registered in main.py.

A command with sub-commands (`lsdctl run show`) keeps them in its module, as a typer
app named `app`; any other command is the function of its name. Private modules hold
what several commands share: _submit.py (starting a predict, segment or evaluate run),
_step_options.py (their shared options), _run_args.py and _run_fields.py (the commands
about one run and the run tables), _foreground.py and _follow.py (showing a run to its
end), _project.py (which project a command acts on), _guard.py (errors as one line and
an exit code).

Adding `lsdctl X`: write X.py (a module docstring saying what it does, the command with
an example in its help), add it to main.py's table, test it in tests/lsdctl/test_X_cli.py,
and regenerate docs/cli.md with scripts/gen_cli_docs.py. tests/test_docs.py fails while
docs/cli.md is stale, tests/lsdctl/test_cli_layout.py while X's code is not in X.py.
"""
