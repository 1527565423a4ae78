"""A local HTTP server that hands zarr arrays to neuroglancer as OME-NGFF images, lazily.

Each array is served as a group of its own: `/<token>/<key>/.zattrs` holds the array's
OME-NGFF 0.4 multiscales entry (engine.data.ome, read from its container, or made from
its funlib attributes for outputs written before lsdctl wrote OME metadata), with the
array itself at `/<token>/<key>/s0/`, read from disk chunk by chunk as neuroglancer asks
for them. Bound to 127.0.0.1; answers with CORS headers, since the viewer's page comes
from another port; serves nothing but the registered arrays' files.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SCALE = "s0"


@dataclass(frozen=True)
class _Image:
    array: Path
    attrs: bytes


class ZarrServer:
    """Serves registered arrays (`add`) from a thread until `stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._images: dict[str, _Image] = {}
        self._token = secrets.token_urlsafe(12)
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="lsdctl-zarr-server", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/{self._token}"

    def add(self, key: str, array: Path, ome_entry: dict[str, Any]) -> str:
        """Serve `array` (a zarr array folder) under `key`; returns the group's URL."""
        from engine.data.ome import single_image

        attrs = json.dumps(single_image(ome_entry, _SCALE)).encode()
        self._images[key] = _Image(Path(array).resolve(), attrs)
        return f"{self.url}/{key}/"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def resolve(self, path: str) -> bytes | Path | None:
        """What `path` (of a request) names: JSON bytes, a file, or None (404)."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) < 3 or parts[0] != self._token:
            return None
        image = self._images.get(parts[1])
        if image is None:
            return None
        rest = parts[2:]
        if rest == [".zgroup"]:
            return b'{"zarr_format": 2}'
        if rest == [".zattrs"]:
            return image.attrs
        if rest[0] != _SCALE or len(rest) < 2 or any(p in ("", ".", "..") for p in rest):
            return None
        found = image.array.joinpath(*rest[1:])
        if not found.is_file() or not found.resolve().is_relative_to(image.array):
            return None
        return found


def _handler(server: ZarrServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_OPTIONS(self) -> None:
            self.send_response(HTTPStatus.NO_CONTENT)
            self._cors()
            self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "*")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _answer(self, body: bool) -> None:
            found = server.resolve(self.path)
            if found is None:
                self.send_response(HTTPStatus.NOT_FOUND)
                self._cors()
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = found if isinstance(found, bytes) else found.read_bytes()
            kind = "application/json" if isinstance(found, bytes) else "application/octet-stream"
            self.send_response(HTTPStatus.OK)
            self._cors()
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _cors(self) -> None:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Expose-Headers", "*")

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("zarr server: " + format, *args)

    return Handler
