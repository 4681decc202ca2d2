"""What every DICOMweb handler shares: the server's state and request helpers.

Handlers (:mod:`pixels.web.qido`, :mod:`pixels.web.wado`, :mod:`pixels.web.stow`,
:mod:`pixels.web.wado_uri`) import from here; :mod:`pixels.web.app` only
assembles the application from them, so imports run one way:
``state`` <- handlers <- ``app``.
"""

from __future__ import annotations

import os
import re
import threading

from starlette.exceptions import HTTPException
from starlette.requests import Request

from pixels.catalog import Catalog
from pixels.durable import Durable
from pixels.storage import is_local, local_path
from pixels.web import stow_root

__all__ = [
    "DEFAULT_MAX_UPLOAD",
    "MAX_PATH_UID",
    "MONAILABEL",
    "PREFIX",
    "WADO_URI",
    "WebState",
    "base_url",
    "check_uid",
    "is_uid",
    "state_of",
]

#: Root of the DICOMweb service.
PREFIX = "/dicomweb"
#: Root of the MONAI Label API (:mod:`pixels.web.monailabel`).
MONAILABEL = "/monailabel"
#: The WADO-URI endpoint (PS3.18 9).
WADO_URI = "/wado"
#: Default limit on one STOW-RS request body (bytes).
DEFAULT_MAX_UPLOAD = 2 * 1024**3

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(value: str) -> bool:
    """True for a syntactically valid UID: digits and dots, at most 64 characters."""
    return 0 < len(value) <= 64 and _UID.match(value) is not None


#: Longest UID accepted in a path or a query (a conformant UID has at most 64).
MAX_PATH_UID = 256


def check_uid(value: str, what: str = "UID") -> str:
    """Return ``value`` or raise HTTP 400 when it cannot name a cataloged object.

    Files in the wild carry UIDs that are not conformant (64 hexadecimal digits,
    letters, dashes) and the catalog lists them: any UID is accepted as a path
    component or a query value, so that what ``/studies`` lists can be retrieved,
    except an empty one, one longer than :data:`MAX_PATH_UID`, one with a ``/``
    or ``\\``, a ``..`` or a control character. Values only ever reach SQL as bound
    parameters. :func:`is_uid` is the strict check (for what the server writes).
    """
    bad = (
        not value
        or len(value) > MAX_PATH_UID
        or "/" in value
        or "\\" in value
        or ".." in value
        or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)
    )
    if bad:
        raise HTTPException(
            400,
            f"{what} {value[:80]!r} is not a UID (empty, too long, or holds '/', '\\', "
            "'..' or a control character)",
        )
    return value


class WebState:
    """What every request needs: the catalog, where STOW writes, the limits.

    Parameters
    ----------
    catalog_path : str
        The catalog table (folder or URL).
    storage_root : str, optional
        Where STOW-RS writes files, a local folder (default: ``stow`` next to the table
        folder; for a table URL, ``stow`` in the current folder); a URL is refused
        (:class:`~pixels.web.stow_root.StorageRootError`).
    token : str, optional
        Bearer token required on every request (default: env ``PIXELS_TOKEN``).
    max_upload : int
        Largest accepted STOW-RS body, in bytes.
    public_url : str, optional
        The server's external base URL (behind a proxy), used in RetrieveURL and
        BulkDataURI; default: from the request.
    """

    def __init__(
        self,
        catalog_path: str,
        *,
        storage_root: str | None = None,
        token: str | None = None,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        public_url: str | None = None,
    ):
        self.public_url = public_url
        self.catalog = Catalog(catalog_path)
        self.table = self.catalog.table
        if storage_root is None and not is_local(catalog_path):
            storage_root = "stow"  # a table URL: a local folder here, not "./s3:/bucket/stow"
        elif storage_root is None:
            local = os.path.abspath(catalog_path.removeprefix("file://"))
            storage_root = os.path.join(os.path.dirname(local.rstrip(os.sep)), "stow")
        elif not is_local(storage_root):  # was taken as the local folder ./s3:/bucket/...
            raise stow_root.StorageRootError(
                f"the storage root {storage_root} is a URL: received files are written, and "
                "their spools locked, in a local folder; give one with --storage-root (the "
                "table itself may be on an object store)"
            )
        self.storage_root = os.path.abspath(local_path(storage_root))
        #: Makes stored files and the folders made for them durable (STOW-RS).
        self.durable = Durable(self.storage_root)
        stow_root.check(self.storage_root, self.table.uri)  # (claimed at the first write)
        self._claimed = False
        self.token = token if token is not None else (os.environ.get("PIXELS_TOKEN") or None)
        self.max_upload = max_upload
        self._table_lock = threading.Lock()
        #: Serialises STOW-RS writes and catalog commits of this process.
        self.write_lock = threading.Lock()

    def claimed_root(self) -> str:
        """:attr:`storage_root`, recorded as this table's (:func:`pixels.web.stow_root.claim`,
        at the first write of this process): what every writer into it calls first.

        Raises
        ------
        StorageRootError
            When it belongs to another table.
        """
        if not self._claimed:
            stow_root.claim(self.storage_root, self.table.uri)
            self._claimed = True
        return self.storage_root


def state_of(request: Request) -> WebState:
    """The :class:`WebState` of the app serving ``request``."""
    st: WebState = request.app.state.pixels
    return st


def base_url(request: Request) -> str:
    """``scheme://host[:port][root_path]`` of the request, without a trailing slash.

    ``public_url`` given to :func:`~pixels.web.app.create_app` wins (a server behind
    a proxy). A ``Host`` header without a port (dicomweb-client sends one) gets the
    port the server listens on, when that is not the scheme's default.
    """
    public = state_of(request).public_url
    if public:
        return public.rstrip("/")
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1]:
        default = 443 if url.scheme == "https" else 80
        if int(server[1]) != default:
            url = url.replace(port=int(server[1]))
    return str(url).rstrip("/")
