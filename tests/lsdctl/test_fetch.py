"""`lsdctl data fetch cremi` against a local HTTP server serving a small CREMI-format file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from lsdctl.cli.fetch import CREMI_FILES
from tests.conftest import CliCaller, tree

RNG = np.random.default_rng(3)
RAW = RNG.integers(0, 255, (5, 48, 64), dtype=np.uint8)
LABELS = RNG.integers(1, 30, (5, 48, 64)).astype(np.uint64)


def _cremi_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "built.hdf"
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = RAW
        f["volumes/raw"].attrs["resolution"] = (40.0, 4.0, 4.0)
        f["volumes/labels/neuron_ids"] = LABELS
        f["volumes/labels/neuron_ids"].attrs["resolution"] = (40.0, 4.0, 4.0)
    return path.read_bytes()


class Server:
    """Serves `files` by name; honours Range; can break off the next response halfway."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.break_next = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/data"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.removeprefix("/data/")
                server.requests.append((name, self.headers.get("Range")))
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                wanted = self.headers.get("Range")
                if wanted and wanted.startswith("bytes="):
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.break_next:
                    server.break_next = False
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> Server:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server() as s:
        s.files[CREMI_FILES["A"]] = _cremi_bytes(tmp_path)
        yield s


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("LSDCTL_CACHE", str(path))
    monkeypatch.delenv("LSDCTL_CREMI_URL", raising=False)
    return path


def _volume(projects: Path, project: str, split: str) -> Path:
    return projects / project / split / "sample_A.zarr"


def test_fetch_downloads_verifies_and_imports(
    cli: CliCaller, projects: Path, cache: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli.ok("data", "fetch", "cremi", "--sample", "a", "--url-base", server.url)
    assert "created project cremi" in result.stdout
    assert "imported train/sample_A.zarr" in result.stdout
    volume = _volume(projects, "cremi", "train")
    np.testing.assert_array_equal(zarr.open(str(volume / "raw"), mode="r")[:], RAW)
    np.testing.assert_array_equal(zarr.open(str(volume / "labels"), mode="r")[:], LABELS)
    assert list(zarr.open(str(volume / "raw"), mode="r").attrs["voxel_size"]) == [40, 4, 4]
    assert (projects / "cremi" / "project.toml").read_text().count('preset = "cremi"') == 1
    cli.ok("data", "check", "--project", "cremi")
    assert sorted(p.name for p in (cache / "cremi").iterdir()) == [CREMI_FILES["A"]]

    # The environment names the server; the cached download is used, not fetched again.
    monkeypatch.setenv("LSDCTL_CREMI_URL", server.url)
    cli.ok("init", "other")
    result = cli.ok("data", "fetch", "cremi", "--sample", "A", "-P", "other", "--split", "test")
    assert "downloaded before" in result.stdout
    assert len(server.requests) == 1
    assert _volume(projects, "other", "test").is_dir()
    cli.bad("data", "fetch", "cremi", "--sample", "A", "-P", "other", "--split", "test",
            match="already exists")  # fmt: skip


def test_broken_download_resumes_where_it_stopped(
    cli: CliCaller, projects: Path, cache: Path, server: Server
) -> None:
    server.break_next = True
    result = cli("data", "fetch", "cremi", "--sample", "A", "--url-base", server.url)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: download of ") and "resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (projects / "cremi").exists()
    partial = cache / "cremi" / f"{CREMI_FILES['A']}.partial"
    assert [p.name for p in (cache / "cremi").iterdir()] == [partial.name]
    kept = partial.stat().st_size
    assert 0 < kept < len(server.files[CREMI_FILES["A"]])

    cli.ok("data", "fetch", "cremi", "--sample", "A", "--url-base", server.url)
    assert server.requests[-1] == (CREMI_FILES["A"], f"bytes={kept}-")
    assert _volume(projects, "cremi", "train").is_dir()
    assert not partial.exists()


def test_unknown_sample_is_a_usage_error(cli: CliCaller, projects: Path, cache: Path) -> None:
    cli.bad("data", "fetch", "cremi", "--sample", "D", match="use A, B or C")
    cli.bad(
        "data", "fetch", "cremi", "--sample", "A", "--split", "validation",
        match="unknown split 'validation': use train, val or test",
    )  # fmt: skip
    assert not projects.exists() and not cache.exists()


def test_server_error_leaves_project_and_cache_unchanged(
    cli: CliCaller, projects: Path, cache: Path, server: Server
) -> None:
    cli.ok("init", "p")
    before = tree(projects)
    result = cli("data", "fetch", "cremi", "--sample", "B", "-P", "p", "--url-base", server.url)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "HTTP 404" in lines[0]
    assert "Traceback" not in result.output
    assert tree(projects) == before
    assert not any(p.is_file() for p in cache.rglob("*"))
    # Without the project, none is created.
    result = cli("data", "fetch", "cremi", "--sample", "B", "--url-base", server.url)
    assert result.exit_code == 1 and not (projects / "cremi").exists()


def test_a_file_that_is_not_cremi_is_refused_and_removed(
    cli: CliCaller, projects: Path, cache: Path, server: Server
) -> None:
    server.files[CREMI_FILES["C"]] = b"<html>maintenance</html>"
    result = cli("data", "fetch", "cremi", "--sample", "C", "--url-base", server.url)
    assert result.exit_code == 1
    assert "not an HDF5 file" in result.stderr
    with h5py.File(cache / "labels_only.hdf", "w") as f:
        f["volumes/raw"] = RAW
    server.files[CREMI_FILES["C"]] = (cache / "labels_only.hdf").read_bytes()
    result = cli("data", "fetch", "cremi", "--sample", "C", "--url-base", server.url)
    assert result.exit_code == 1
    assert "no volumes/labels/neuron_ids" in result.stderr
    assert not (projects / "cremi").exists()
    assert not (cache / "cremi").exists() or not any((cache / "cremi").iterdir())


def test_unreachable_server_fails_cleanly(cli: CliCaller, projects: Path, cache: Path) -> None:
    with Server() as s:
        url = s.url
    result = cli("data", "fetch", "cremi", "--sample", "A", "--url-base", url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: download of ")
    assert not projects.exists()
    cli.bad("data", "fetch", "cremi", "--sample", "A", "--url-base", "ftp://x/", match="url-base")
