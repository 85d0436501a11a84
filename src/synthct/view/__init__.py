"""`synthct view`: a local browser review station (NiiVue) for cases, lesions and audit flags.

Entry points: :func:`discover` (what a folder holds), :func:`start_server` (the local server)
and :func:`export_case` (one self-contained HTML file per case).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthct.view.catalogue import Catalogue, discover
    from synthct.view.export import export_case, export_catalogue
    from synthct.view.server import ViewServer, start_server

__all__ = ["Catalogue", "ViewServer", "discover", "export_case", "export_catalogue", "start_server"]

_WHERE = {
    "Catalogue": "catalogue",
    "discover": "catalogue",
    "export_case": "export",
    "export_catalogue": "export",
    "ViewServer": "server",
    "start_server": "server",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"synthct.view.{_WHERE[name]}"), name)
    raise AttributeError(name)
