"""lsdctl: the command line and TUI in front of the lsdctl daemon and engine."""

__version__ = "0.1.0"
