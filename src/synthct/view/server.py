"""The local web server of `synthct view` (standard library ``http.server``, one thread a request).

Safety rules, each tested:

* every request needs the session's random token (``?token=`` or the ``X-Synthct-Token``
  header), compared in constant time; without it: 403;
* files are served only from under the start folder: a path with a ``..`` segment, an absolute
  path, or one that resolves (through links) outside the folder gets 404; layers are served by
  case and layer name from the catalogue, never by a path taken from the request;
* nothing is written unless the server was started with ``edit=True`` (POST otherwise: 403);
* it binds to loopback unless told otherwise (the command line asks for an explicit flag).

Routes (all ``GET`` unless marked):

=======================================  ==========================================================
``/``                                    the page
``/static/<name>``                       the page's script and style, and NiiVue's bundle
``/api/catalogue``                       cases, layers, lesion rows, audit flags, presets (JSON)
``/api/volume/<case>/<layer>.nii``       a layer as NIfTI in RAS (see :mod:`synthct.view.volumes`)
``/files/<path>``                        a file under the start folder (reports, figures)
``POST /api/annotation/<case>``          save the drawing and points (edit mode)
``POST /api/validate/<case>``            run `synthct validate` on the saved annotation (edit mode)
=======================================  ==========================================================
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import json
import mimetypes
import secrets
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from synthct.errors import SynthctError
from synthct.view.catalogue import Catalogue
from synthct.view.volumes import VolumeCache

__all__ = ["ViewServer", "assets_dir", "niivue_bundle", "page_settings", "start_server"]

#: Largest request body accepted (a drawing of a 512 x 512 x 400 CT, gzipped, fits easily).
MAX_BODY_BYTES = 256 * 1024 * 1024
_STATIC = {"viewer.js": "text/javascript", "viewer.css": "text/css"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def assets_dir() -> Path:
    """The folder of the page's files."""
    return Path(__file__).resolve().parent / "web"


def niivue_bundle() -> Path:
    """NiiVue's browser bundle, installed by ``npm ci`` at set-up (scripts/bootstrap.sh).

    Raises
    ------
    SynthctError
        When it is not installed.
    """
    path = assets_dir() / "node_modules" / "@niivue" / "niivue" / "dist" / "niivue.umd.js"
    if not path.is_file():
        raise SynthctError(
            "NiiVue is not installed",
            path=path,
            fix=f"run `npm ci` in {assets_dir()} (scripts/bootstrap.sh does this at set-up)",
        )
    return path


def page_settings() -> dict[str, Any]:
    """Window presets (HU) and layer colours the page uses, also embedded in exports."""
    from synthct.validation.lesion_figure import CALCIFICATION_WINDOW_HU

    level, width = CALCIFICATION_WINDOW_HU
    return {
        "presets": {
            "bone": [400.0 - 900.0, 400.0 + 900.0],
            "soft tissue": [40.0 - 200.0, 40.0 + 200.0],
            "paper (calcification)": [level - width / 2, level + width / 2],
        },
        "default_preset": "paper (calcification)",
    }


class ViewServer(ThreadingHTTPServer):
    """A threaded HTTP server holding the catalogue, the token and the volume cache."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(
        self, address: tuple[str, int], catalogue: Catalogue, *, edit: bool, token: str
    ) -> None:
        super().__init__(address, ViewHandler)
        self.catalogue = catalogue
        self.root = catalogue.root.resolve()
        self.edit = edit
        self.token = token
        self.cache = VolumeCache()
        self.validate_lock = threading.Lock()

    def prefetch(self, index: int = 0) -> threading.Thread:
        """Convert case ``index``'s layers in the background, so the page finds them ready."""

        def work() -> None:
            case = self.catalogue.case(index)
            for layer in case.ordered_layers():
                try:
                    self.cache.get(case, layer)
                except Exception:  # the page's own request reports the error
                    return

        thread = threading.Thread(target=work, name="synthct-view-prefetch", daemon=True)
        thread.start()
        return thread

    @property
    def url(self) -> str:
        """The page's address with the token."""
        host, port = (str(v) for v in self.server_address[:2])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/?token={self.token}"


def start_server(
    catalogue: Catalogue, *, host: str = "127.0.0.1", port: int = 0, edit: bool = False
) -> ViewServer:
    """Bind the server (port 0: any free port); call ``serve_forever`` to run it.

    Raises
    ------
    SynthctError
        When the port is taken (or the address cannot be bound).
    """
    try:
        return ViewServer((host, port), catalogue, edit=edit, token=secrets.token_urlsafe(24))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SynthctError(
                f"port {port} on {host} is already in use",
                path=f"{host}:{port}",
                fix="pass another --port, or --port 0 to take any free port",
            ) from None
        raise SynthctError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            path=f"{host}:{port}",
            fix="check --host (default 127.0.0.1) and --port",
        ) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address."""
    return host in _LOOPBACK or host.startswith("127.")


def safe_relative(path: str) -> PurePosixPath | None:
    """A request path made relative and checked: None for ``..``, absolute or odd paths."""
    text = unquote(path)
    if not text or "\\" in text or "\x00" in text or text.startswith("/"):
        return None
    pure = PurePosixPath(text)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts):
        return None
    return pure


class ViewHandler(BaseHTTPRequestHandler):
    """Routes of :class:`ViewServer` (see the module docstring)."""

    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the command prints the address once; requests are not logged."""

    # -- plumbing --------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json({"error": message}, int(status))

    def _token_ok(self, query: dict[str, list[str]]) -> bool:
        given = self.headers.get("X-Synthct-Token") or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _route(self) -> tuple[str, dict[str, list[str]]] | None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._token_ok(query):
            self._error(
                HTTPStatus.FORBIDDEN,
                "missing or wrong token: open the address printed by synthct view",
            )
            return None
        raw = parts.path
        if any(seg == ".." for seg in unquote(raw).split("/")):
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return None
        return raw, query

    # -- GET -------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        """As GET, without the body."""
        self.do_GET()

    def do_GET(self) -> None:
        """Serve the page, its assets, the catalogue, layers and files under the root."""
        routed = self._route()
        if routed is None:
            return
        path, _ = routed
        try:
            if path in ("/", "/index.html"):
                page = (assets_dir() / "index.html").read_text(encoding="utf-8")
                page = page.replace("__TOKEN__", self.server.token)
                self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
            elif path.startswith("/static/"):
                self._static(path[len("/static/") :])
            elif path == "/api/catalogue":
                self._json(
                    {**self.server.catalogue.to_json(), "edit": self.server.edit, **page_settings()}
                )
            elif path.startswith("/api/volume/"):
                self._volume(path[len("/api/volume/") :])
            elif path.startswith("/files/"):
                self._file(path[len("/files/") :])
            else:
                self._error(HTTPStatus.NOT_FOUND, "not found")
        except SynthctError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _static(self, name: str) -> None:
        if name == "niivue.umd.js":
            self._send(200, niivue_bundle().read_bytes(), "text/javascript")
        elif name in _STATIC:
            self._send(200, (assets_dir() / name).read_bytes(), _STATIC[name])
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def _case_and_rest(self, rest: str) -> tuple[int, str] | None:
        head, _, tail = rest.partition("/")
        try:
            index = int(head)
            self.server.catalogue.case(index)
        except (ValueError, IndexError):
            self._error(HTTPStatus.NOT_FOUND, "no such case")
            return None
        return index, unquote(tail)

    def _volume(self, rest: str) -> None:
        found = self._case_and_rest(rest)
        if found is None:
            return
        index, name = found
        case = self.server.catalogue.case(index)
        layer = case.layers.get(name.removesuffix(".nii"))
        if layer is None:
            self._error(HTTPStatus.NOT_FOUND, "no such layer")
            return
        self._send(200, self.server.cache.get(case, layer), "application/octet-stream")

    def _file(self, rest: str) -> None:
        relative = safe_relative(rest)
        if relative is None:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        target = (self.server.root / relative).resolve()
        if not target.is_relative_to(self.server.root) or not target.is_file():
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(200, target.read_bytes(), content_type)

    # -- POST ------------------------------------------------------------------------------------
    def do_POST(self) -> None:
        """Save an annotation or validate it (edit mode only)."""
        routed = self._route()
        if routed is None:
            return
        path, _ = routed
        if not self.server.edit:
            self._error(HTTPStatus.FORBIDDEN, "read-only: start `synthct view --edit` to annotate")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if path.startswith("/api/annotation/"):
                self._save(path[len("/api/annotation/") :], body)
            elif path.startswith("/api/validate/"):
                self._validate(path[len("/api/validate/") :])
            else:
                self._error(HTTPStatus.NOT_FOUND, "not found")
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"malformed request: {exc}")
        except SynthctError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))

    def _save(self, rest: str, body: dict[str, Any]) -> None:
        from synthct.view.annotations import AnnotationPoint, save_annotation

        found = self._case_and_rest(rest)
        if found is None:
            return
        case = self.server.catalogue.case(found[0])
        drawing = body.get("drawing")
        points = [
            AnnotationPoint(
                tuple(float(v) for v in p["center_lps_mm"]),  # type: ignore[arg-type]
                float(p["radius_mm"]),
                str(p.get("name") or ""),
            )
            for p in body.get("points") or []
        ]
        names = {int(k): str(v) for k, v in (body.get("names") or {}).items()}
        saved = save_annotation(
            self.server.root,
            case,
            drawing=None if not drawing else base64.b64decode(drawing),
            names=names,
            points=points,
        )
        self._json(saved.to_json(self.server.root))

    def _validate(self, rest: str) -> None:
        from synthct.view.annotations import validate_annotation
        from synthct.view.catalogue import lesion_row

        found = self._case_and_rest(rest)
        if found is None:
            return
        case = self.server.catalogue.case(found[0])
        with self.server.validate_lock:
            rows = validate_annotation(self.server.root, case)
        self._json({"lesions": [lesion_row(r, "annotation") for r in rows]})
