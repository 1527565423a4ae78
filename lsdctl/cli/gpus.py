"""`lsdctl gpus`: the machine's GPUs as the daemon sees them, and which run holds each."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from daemon.schemas import GpuReport
from lsdctl.cli._guard import guarded
from lsdctl.client import ensure_daemon


def _table(report: GpuReport) -> Table | str:
    if not report.available:
        return f"no GPU: {report.reason}; runs use the CPU"
    table = Table(box=None, pad_edge=False)
    for name in ("GPU", "NAME", "MEMORY", "UTIL", "TEMP", "POWER", "PROCESSES", "HELD BY"):
        table.add_column(name)
    for gpu in report.gpus:
        table.add_row(
            str(gpu.index),
            gpu.name,
            f"{gpu.memory_used_mb:.0f}/{gpu.memory_total_mb:.0f} MiB",
            f"{gpu.utilization_pct:.0f}%" if gpu.utilization_pct is not None else "-",
            f"{gpu.temperature_c:.0f}°C" if gpu.temperature_c is not None else "-",
            f"{gpu.power_w:.0f} W" if gpu.power_w is not None else "-",
            ",".join(str(p.pid) for p in gpu.processes) or "-",
            ", ".join(gpu.held_by) or "free",
        )
    return table


@guarded
def gpus(
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh every second (Ctrl-C ends)."),
) -> None:
    """GPUs (pynvml): memory, utilisation, temperature, power, and the runs holding them.

    Examples:

      lsdctl gpus

      lsdctl gpus --watch

      lsdctl gpus --json
    """
    with ensure_daemon() as client:
        if not watch:
            report = client.gpus()
            if as_json:
                typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
            else:
                Console().print(_table(report))
            return
        try:
            with Live(_table(client.gpus()), auto_refresh=False) as live:
                while True:
                    time.sleep(1.0)
                    live.update(_table(client.gpus()), refresh=True)
        except KeyboardInterrupt:
            return
