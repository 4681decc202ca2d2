"""Where a catalog table lives: local folder or object store, and its options.

Users give one set of storage options, spelled the fsspec way (``key``,
``secret``, ``endpoint_url``, as for ``pixels catalog -o``) or the delta-rs way
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...). The table is written and its
log read by delta-rs, and its data files read by DuckDB through fsspec, so each
gets the same options in its own spelling. Credentials not given here come from
the usual environment variables (both libraries read them).

Examples
--------
>>> delta_options("s3://b/t", {"key": "k", "secret": "s", "endpoint_url": "http://h:9000"})
{'AWS_ACCESS_KEY_ID': 'k', 'AWS_SECRET_ACCESS_KEY': 's', 'AWS_ENDPOINT_URL': 'http://h:9000', \
'AWS_ALLOW_HTTP': 'true'}
>>> fsspec_options("s3://b/t", {"AWS_ACCESS_KEY_ID": "k", "AWS_ENDPOINT_URL": "http://h:9000"})
{'key': 'k', 'endpoint_url': 'http://h:9000'}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["delta_options", "fsspec_options", "is_local", "local_path"]

#: fsspec (s3fs) option -> delta-rs (object_store) option, for ``s3://`` tables.
_S3_NAMES = {
    "key": "AWS_ACCESS_KEY_ID",
    "secret": "AWS_SECRET_ACCESS_KEY",
    "token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_REGION",
    "region": "AWS_REGION",
}
_S3_SCHEMES = ("s3://", "s3a://")


def is_local(uri: str) -> bool:
    """True for a local folder (a path or a ``file://`` URL)."""
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    """The filesystem path of a local ``uri``."""
    return uri[len("file://") :] if uri.startswith("file://") else uri


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flat(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Options with ``client_kwargs`` (s3fs' nested form) merged in; top-level keys win."""
    opts = dict(options or {})
    nested = opts.pop("client_kwargs", None) or {}
    return {**nested, **opts}


def delta_options(uri: str, options: Mapping[str, Any] | None) -> dict[str, str] | None:
    """``options`` spelled for delta-rs (``storage_options`` of :class:`deltalake.DeltaTable`).

    fsspec names of ``s3://`` options are translated; upper-case names pass as
    given; other fsspec-only options (``config_kwargs``, ...) have no delta-rs
    meaning and are left out. An ``http://`` endpoint (given here or in
    ``AWS_ENDPOINT_URL``) allows plain HTTP, which delta-rs refuses otherwise.
    """
    if is_local(uri):
        return None
    s3 = uri.startswith(_S3_SCHEMES)
    out: dict[str, str] = {}
    for key, value in _flat(options).items():
        if value is None:
            continue
        if s3 and key in _S3_NAMES:
            out[_S3_NAMES[key]] = _text(value)
        elif s3 and key == "anon":
            if value is True or _text(value).lower() == "true":
                out["AWS_SKIP_SIGNATURE"] = "true"
        elif key.isupper() or key.startswith(("aws_", "azure_", "google_")):
            out[key] = _text(value)
    if s3 and "AWS_ALLOW_HTTP" not in out and "AWS_ALLOW_HTTP" not in os.environ:
        endpoint = out.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    return out or None


def fsspec_options(uri: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` spelled for fsspec (to read the table's data files).

    delta-rs names of ``s3://`` options are translated back; lower-case names
    pass as given.
    """
    if is_local(uri):
        return {}
    s3 = uri.startswith(_S3_SCHEMES)
    back = {v: k for k, v in _S3_NAMES.items() if k != "region"}
    out: dict[str, Any] = {}
    for key, value in _flat(options).items():
        if value is None:
            continue
        if key.isupper():
            if s3 and key in back:
                out[back[key]] = value
            elif s3 and key == "AWS_SKIP_SIGNATURE" and _text(value).lower() == "true":
                out["anon"] = True
        else:
            out[key] = value
    if s3 and "region_name" in out:
        out.setdefault("client_kwargs", {})["region_name"] = out.pop("region_name")
    return out
