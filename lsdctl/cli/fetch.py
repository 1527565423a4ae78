"""`lsdctl data fetch cremi`: download a public CREMI training sample and import it.

The file streams into `CACHE/cremi/NAME.partial` (CACHE is `$LSDCTL_CACHE`, else
`$XDG_CACHE_HOME/lsdctl`, else `~/.cache/lsdctl`); a download that breaks off stays under
that name and the next run resumes it where the server supports ranges. Only a complete
file that is HDF5 with `volumes/raw` and `volumes/labels/neuron_ids` is renamed to NAME,
and only then does anything touch the project: the import is `lsdctl data import`'s own
code, which writes a volume completely or not at all. A project that this command created
is removed again when the import fails.

`lsdctl.cli.main` mounts `app` as `lsdctl data fetch`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from engine.project.layout import (
    CONFIG_FILE,
    SPLITS,
    Project,
    check_name,
    init_project,
    splits_text,
)
from lsdctl.cli import data as data_cli
from lsdctl.cli._guard import guarded
from lsdctl.cli._project import complete_project, context_project, root_in_effect
from lsdctl.errors import LsdctlError, UsageError

CREMI_URL_BASE = "https://cremi.org/static/data/"
# The three training samples with public ground truth (cremi.org, "Data").
CREMI_FILES = {
    "A": "sample_A_20160501.hdf",
    "B": "sample_B_20160501.hdf",
    "C": "sample_C_20160501.hdf",
}
CREMI_KEYS = ("volumes/raw", "volumes/labels/neuron_ids")
PARTIAL_SUFFIX = ".partial"
_TIMEOUT = httpx.Timeout(30.0, read=120.0)

app = typer.Typer(
    help="Download public EM data sets and import them into a project.",
    no_args_is_help=True,
)


class DownloadFailed(LsdctlError):
    """The server or the network failed, or sent something that is not the sample."""


def cache_dir() -> Path:
    """Where downloads are kept: $LSDCTL_CACHE, else $XDG_CACHE_HOME/lsdctl."""
    explicit = os.environ.get("LSDCTL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lsdctl"


@app.command("cremi")
@guarded
def cremi(
    sample: str = typer.Option(..., "--sample", help="Training sample: A, B or C."),
    project: str | None = typer.Option(
        None,
        "--project",
        "-P",
        help="Project to import into; created from the cremi preset if it does not exist "
        "(default: the project whose folder you are in, else $LSDCTL_PROJECT, else cremi).",
        autocompletion=complete_project,
    ),
    split: str = typer.Option(
        "train",
        "--split",
        help="train (sampled for training), val (chooses the checkpoint and the segmentation "
        "threshold) or test (predicted and scored).",
    ),
    url_base: str | None = typer.Option(
        None,
        "--url-base",
        envvar="LSDCTL_CREMI_URL",
        help=f"Where the sample files are (default: {CREMI_URL_BASE}).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a volume of the same name."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the imported volume (path, shape, voxel size, …) as JSON."
    ),
) -> None:
    """Download a CREMI training sample (raw and neuron ids, 40x4x4 nm) and import it.

    The download is kept in the cache ($LSDCTL_CACHE, default ~/.cache/lsdctl), resumes
    after an interruption, and is checked to be CREMI HDF5 before the project is touched.
    The volume is imported as PROJECT/SPLIT/sample_X.zarr, as `lsdctl data import` would.

    Examples:

      lsdctl data fetch cremi --sample A

      lsdctl data fetch cremi --sample C --project brain1 --split test
    """
    letter = sample.strip().upper()
    if letter not in CREMI_FILES:
        raise UsageError(f"unknown CREMI sample {sample!r}: use A, B or C")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}: use {splits_text()}")
    # Unlike the commands that need a project, no "only project" default: fetching CREMI
    # into an unrelated project (another voxel size, perhaps 2D) would surprise.
    implied = context_project() if project is None else None
    if implied is not None:
        path = implied.path
    else:
        path = root_in_effect() / check_name(project or "cremi")
    name = path.name
    volume = f"sample_{letter}"
    existing = (path / CONFIG_FILE).is_file()
    if existing:
        # Refuse before a download of hundreds of MB, not after it.
        target = Project(path).split_dir(split) / f"{volume}.zarr"
        if target.exists() and not overwrite:
            raise UsageError(
                f"volume {split}/{volume}.zarr already exists in {name}: "
                "pass --overwrite to replace it"
            )
    filename = CREMI_FILES[letter]
    url = f"{(url_base or CREMI_URL_BASE).rstrip('/')}/{filename}"
    download_path = fetch_cremi_file(url, cache_dir() / "cremi" / filename, quiet=as_json)

    # With --json, stdout carries only the JSON: the lines around it go to stderr.
    if not existing:
        init_project(name, preset="cremi", root=path.parent)
        typer.echo(f"created project {name} at {path} (preset cremi)", err=as_json)
    from engine.data.importer import ImportRequest

    try:
        data_cli.import_into(
            Project(path),
            ImportRequest(source=download_path, split=split, name=volume, overwrite=overwrite),
            as_json,
        )
    except BaseException:
        if not existing:
            shutil.rmtree(path, ignore_errors=True)
        raise
    size_mb = download_path.stat().st_size / 1e6
    typer.echo(
        f"the download stays at {download_path} ({size_mb:.0f} MB): delete it to free the space",
        err=as_json,
    )


def fetch_cremi_file(url: str, path: Path, quiet: bool = False) -> Path:
    """`path`, downloaded from `url` unless a verified copy is there already.

    `quiet` sends the lines saying which to stderr (stdout is for --json)."""
    if path.is_file():
        try:
            _verify_cremi(path, url)
            typer.echo(f"using {path} (downloaded before)", err=quiet)
            return path
        except DownloadFailed:
            path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    download(url, partial)
    try:
        _verify_cremi(partial, url)
    except DownloadFailed:
        partial.unlink(missing_ok=True)  # complete but wrong: resuming it cannot help
        raise
    os.replace(partial, path)
    typer.echo(f"downloaded {url} ({path.stat().st_size / 1e6:.0f} MB)", err=quiet)
    return path


def download(url: str, partial: Path) -> None:
    """Stream `url` into `partial`, continuing what an earlier attempt left there.

    Any failure raises DownloadFailed (UsageError for a URL that cannot be fetched at all)
    and leaves what arrived in `partial`, so the next attempt resumes it.
    """
    for attempt in range(2):
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with httpx.stream(
                "GET", url, headers=headers, follow_redirects=True, timeout=_TIMEOUT
            ) as response:
                if response.status_code == 416 and offset and attempt == 0:
                    # The partial file does not fit the file on the server: start over.
                    partial.unlink()
                    continue
                if response.status_code >= 400:
                    raise DownloadFailed(
                        f"download of {url} failed: HTTP {response.status_code} "
                        f"{response.reason_phrase}"
                    )
                resumed = response.status_code == 206 and response.headers.get(
                    "Content-Range", ""
                ).startswith(f"bytes {offset}-")
                if offset and not resumed:
                    offset = 0  # the server sends the whole file again
                _stream(response, partial, offset, url)
            return
        except httpx.UnsupportedProtocol as exc:
            raise UsageError(f"cannot download {url}: {exc} (check --url-base)") from None
        except httpx.HTTPError as exc:
            kept = partial.exists() and partial.stat().st_size > 0
            again = (
                "run the same command again to resume it"
                if kept
                else "check the network (or --url-base) and try again"
            )
            raise DownloadFailed(
                f"download of {url} failed: {str(exc) or type(exc).__name__}; {again}"
            ) from None
        except OSError as exc:
            raise DownloadFailed(f"cannot write {partial}: {exc.strerror}") from None


def _stream(response: httpx.Response, partial: Path, offset: int, url: str) -> None:
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length and length.isdigit() else None
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # no bar in logs and pipes
    )
    with progress, partial.open("ab" if offset else "wb") as out:
        task = progress.add_task(f"downloading {partial.stem}", total=total, completed=offset)
        for chunk in response.iter_bytes():  # as it arrives: a break keeps all of it
            out.write(chunk)
            progress.advance(task, len(chunk))
    size = partial.stat().st_size
    if total is not None and size != total:
        raise DownloadFailed(
            f"download of {url} stopped at {size} of {total} bytes; run the same command "
            "again to resume it"
        )


def _verify_cremi(path: Path, url: str) -> None:
    import h5py

    if not h5py.is_hdf5(path):
        raise DownloadFailed(
            f"{url} is not an HDF5 file: is the address (--url-base, $LSDCTL_CREMI_URL) right?"
        )
    with h5py.File(path, "r") as f:
        missing = [key for key in CREMI_KEYS if key not in f]
    if missing:
        raise DownloadFailed(
            f"{url} has no {' or '.join(missing)}: not a CREMI training sample "
            "(the test samples A+, B+, C+ have no labels; import them with `lsdctl data import`)"
        )
