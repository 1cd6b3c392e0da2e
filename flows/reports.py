"""The release-safe reports under the output root, over HTTP, for the links of the Prefect
UI's release artifacts (``make serve`` starts it beside the Prefect server).

It answers GET for a release's public report files only (``PUBLIC_FILES``: the HTML report,
the privacy report, the validation result, an image release's contact sheet), in a folder
this tool wrote (its manifest lists the file: a release or a quarantined one): never the
data, never an internal report (``<out>.internal``, which holds real-data statistics), never
a listing, never a path outside the root. Beyond loopback it asks for the same basic-auth
user and password as the Prefect server.
"""
# No `from __future__ import annotations` here (see flows/release.py).

import base64
import hmac
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipelines.publish import read_manifest

PUBLIC_FILES = {"report.html": "text/html; charset=utf-8",
                "privacy_report.json": "application/json",
                "validation.json": "application/json",
                "contact_sheet.png": "image/png"}


def public_file(root: Path, url_path: str) -> Path | None:
    """The file a request for ``url_path`` may be answered with, or None."""
    parts = [p for p in unquote(urlsplit(url_path).path).split("/") if p]
    if not parts or parts[-1] not in PUBLIC_FILES or any(
            p in (".", "..") or p.startswith(".") or p.endswith(".internal") for p in parts):
        return None
    root = root.resolve()
    path = root.joinpath(*parts)
    try:
        folder = path.parent.resolve(strict=True)
        folder.relative_to(root)  # no symlink out of the root
    except (OSError, ValueError):
        return None
    listed = read_manifest(folder)  # None: not a folder this tool wrote
    if not listed or parts[-1] not in listed:
        return None
    target = folder / parts[-1]
    return target if target.is_file() and not target.is_symlink() else None


def handler(root: Path, auth: str | None) -> type[BaseHTTPRequestHandler]:
    expected = f"Basic {base64.b64encode(auth.encode()).decode()}" if auth else None

    class Reports(BaseHTTPRequestHandler):
        server_version = "synth-reports"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            given = self.headers.get("Authorization", "")
            if expected and not hmac.compare_digest(given, expected):
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="synth reports"')
                self.end_headers()
                return
            path = public_file(root, self.path)
            if path is None:
                self.send_error(HTTPStatus.NOT_FOUND, "not a release report")
                return
            body = path.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", PUBLIC_FILES[path.name])
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass  # request paths name releases: not this process's business to print

    return Reports


def start(root: Path, host: str, port: int, auth: str | None = None) -> ThreadingHTTPServer:
    """Serves the reports under ``root`` on ``host:port`` from a daemon thread; returns the
    server (``shutdown()`` stops it). ``auth`` is ``user:password`` for basic auth."""
    server = ThreadingHTTPServer((host, port), handler(Path(root), auth))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="synth-reports", daemon=True).start()
    return server
