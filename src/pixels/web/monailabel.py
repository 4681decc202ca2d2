"""The MONAI Label REST API on the Pixels server, under ``/monailabel/``.

MONAI Label's clients (its OHIF panel, ``monailabel.client``, 3D Slicer's
module) build every call as ``new URL('info/' | 'infer/<model>' | ..., server)``,
so pointing them at ``http://<pixels>/monailabel/`` makes Pixels their server:

- ``GET info/``: the models of :mod:`pixels.ml.models` that can run here, each
  as a ``segmentation`` model with its label names and values, ``dimension: 3``;
- ``GET train/`` (the panel asks ``?check_if_running=true`` on connect): no
  training runs here; ``{"status": "NOT_RUNNING"}``;
- ``POST infer/{model}?image=<SeriesInstanceUID>&output=image|json|all`` (form
  field ``params``, JSON): the model runs on the series read from the catalog;
  ``image`` answers the label volume as NRRD (:mod:`pixels.web.nrrd`: ``uint8``,
  raw, ``sizes: X Y Z``, columns fastest, slices in increasing order along the
  normal of the image plane, which is the order cornerstone's volume holds them
  in), ``json`` the label names and latencies, ``all`` (the default)
  both as ``multipart/form-data`` (part ``params`` then part ``image``); ``image``
  and ``all`` come with ``Content-Encoding: gzip`` to a client whose ``Accept-Encoding``
  takes it (browsers, httpx; not MONAI Label's Python client): about 1 MB instead of
  26 MB for a 512x512x100 volume, the NRRD compressed once per answer
  (:mod:`pixels.web.gzipped`);
- ``GET datastore/?output=stats|all|ids``: the catalog's image series and which
  have a segmentation;
- ``PUT datastore/label?image=<SeriesInstanceUID>`` (form fields ``params`` and
  ``label``: an NRRD, or the raw ``uint8`` voxels in the same order): the label
  volume becomes a DICOM SEG (:func:`pixels.ml.seg.build_seg`) written next to
  the table and cataloged at once, so QIDO lists it.

Bad input is a 4xx naming what is wrong: an unknown model (404, with the known
ones), an unknown series (404), a series the model refuses (422: not CT...),
malformed ``params`` or label (400). The token and host rules are the DICOMweb
ones (:class:`pixels.web.security.TokenAuth` covers :data:`PREFIX`).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pixels.errors import ModelError, PixelsError
from pixels.web import nrrd
from pixels.web.gzipped import Deflated, accepts_gzip, gzip_join
from pixels.web.multipart import MultipartError, new_boundary, parse_media_type, split_parts
from pixels.web.state import MONAILABEL, WebState, check_uid, state_of

__all__ = ["PREFIX", "routes"]

#: Root of the MONAI Label API (the clients' server URL is ``<pixels>/monailabel/``).
PREFIX = MONAILABEL
#: Largest ``PUT datastore/label`` / ``POST infer`` body (bytes).
MAX_BODY = 512 * 1024**2
#: Algorithm name of the SEGs made from submitted labels.
SUBMITTED = "monailabel"
#: The interactive model (type ``deepgrow``): :func:`pixels.ml.models.clicks.grow`.
REGION_GROW = "region-grow"
REGION_LABELS = {"region": 1}
DEFAULT_TOLERANCE = 100.0
#: Volumes kept for the next click on the same series (least recently used evicted).
CACHED_VOLUMES = 2

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _model(name: str) -> Any:
    """The model ``name`` of the registry (404 when unknown, 503 when it cannot run here)."""
    from pixels.ml.models import available_models, get_model

    def unknown() -> HTTPException:
        # the names info/ answers (the registry's "bundle:PATH" is no name to call here)
        names = [
            i.name for i in available_models(bundles=False) if i.available and ":" not in i.name
        ]
        return HTTPException(
            404, f"unknown model {name!r}; known: {', '.join([*names, REGION_GROW])}"
        )

    if not name or name.startswith("bundle:"):
        raise unknown()
    try:
        return get_model(name)
    except ModelError as e:
        if "unknown model" in str(e):
            raise unknown() from e
        raise HTTPException(503, str(e)) from e


def _label_names(model: Any) -> dict[str, int]:
    return {s.name: int(s.label) for s in model.segments if not s.includes}


def _models() -> dict[str, Any]:
    """The registry's models that can run here, loaded on the first MONAI Label request
    that needs them (none at start-up: the server answers DICOMweb at full speed from
    its first second). ``bundle:PATH`` is left out, and so are the torch and MONAI
    imports that check it (6-10 s of CPU holding the GIL): ``ct-tissue`` loads in
    about 0.1 s. One thread loads at a time (CPython 3.11 has failed compiling in two
    threads at once)."""
    from pixels.ml.models import available_models

    with _LOAD_LOCK:
        out = {}
        for info in available_models(bundles=False):
            if info.available and not info.name.startswith("bundle:"):
                out[info.name] = (_model(info.name), info.description)
        return out


_LOAD_LOCK = threading.Lock()


async def info(request: Request) -> Response:
    """``GET info/``: the server, its models and labels, as MONAI Label's ``/info/``."""
    from pixels import __version__

    models = await run_in_threadpool(_models)
    answer_models = {}
    labels: set[str] = set()
    for name, (model, description) in models.items():
        names = _label_names(model)
        labels.update(names)
        answer_models[name] = {
            "type": "segmentation",
            "labels": names,
            "dimension": 3,
            "description": description,
            "config": {},
        }
    answer_models[REGION_GROW] = {
        "type": "deepgrow",
        "labels": dict(REGION_LABELS),
        "dimension": 3,
        "description": "foreground clicks grow a region in 3-D (Hounsfield tolerance); "
        "background clicks cut it",
        "config": {"tolerance": DEFAULT_TOLERANCE},
    }
    labels.update(REGION_LABELS)
    return JSONResponse(
        {
            "name": "Pixels",
            "description": "Pixels catalog as a MONAI Label server",
            "version": __version__,
            "labels": sorted(labels),
            "models": answer_models,
            "trainers": {},
            "strategies": {},
            "scoring": {},
            "train_stats": {},
            "datastore": {},
        }
    )


async def train(request: Request) -> Response:
    """``GET train/``: nothing trains here."""
    return JSONResponse({"status": "NOT_RUNNING"})


async def _body(request: Request) -> bytes:
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > MAX_BODY:
        raise HTTPException(413, f"request body of {size} bytes is over the {MAX_BODY} limit")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            raise HTTPException(413, f"request body is over the {MAX_BODY} bytes limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _form(body: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a ``multipart/form-data`` body by name (400 when malformed)."""
    media = parse_media_type(content_type)
    boundary = media.params.get("boundary", "")
    try:
        parts = split_parts(body, boundary)
    except MultipartError as e:
        raise HTTPException(400, f"multipart/form-data body: {e}") from e
    fields = {}
    for part in parts:
        disposition = part.headers.get("content-disposition", "")
        name = ""
        for item in disposition.split(";")[1:]:
            key, _, value = item.strip().partition("=")
            if key.lower() == "name":
                name = value.strip().strip('"')
        if name:
            fields[name] = bytes(body[part.start : part.end])
    return fields


def _params(raw: bytes | None) -> dict[str, Any]:
    if not raw or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPException(400, f"form field 'params' is not JSON: {e}") from e
    if not isinstance(value, dict):
        raise HTTPException(400, "form field 'params' must be a JSON object")
    return value


async def _request_fields(request: Request) -> dict[str, bytes]:
    body = await _body(request)
    ctype = request.headers.get("content-type", "")
    if not body:
        return {}
    kind = parse_media_type(ctype).type if ctype else ""
    if kind == "multipart/form-data":
        return _form(body, ctype)
    if kind == "application/json":
        return {"params": body}
    raise HTTPException(415, f"body of type {ctype!r}: multipart/form-data or JSON expected")


def _series(state: WebState, uid: str, model: Any | None) -> Any:
    """Read the image series ``uid`` as a volume (404 unknown, 422 not one volume or refused)."""
    from pixels.ml.models import check_input
    from pixels.ml.seg import SEG_SOP_CLASSES
    from pixels.ml.volume import read_volume, select_series

    try:
        version: int | None = state.table.version()  # a stat of the log: ~1 ms
    except PixelsError:
        version = None
    seen = (state.table.uri, uid, version)
    with _CACHE_LOCK:
        known = _SEEN.get(seen) if version is not None else None
        vol = _CACHE.pop(known, None) if known is not None else None
        if known is not None and vol is not None:  # the same version: the same rows, no query
            _CACHE[known] = vol  # most recently used last
    if vol is not None:
        if model is not None:
            refused = check_input(model, vol.first.get("Modality"), len(vol.plan.slices))
            if refused:
                raise HTTPException(422, f"series {uid}: {refused}")
        return vol
    classes = ", ".join(f"'{c}'" for c in SEG_SOP_CLASSES)
    quoted = uid.replace("'", "''")
    where = f"SeriesInstanceUID = '{quoted}' AND (SOPClassUID IS NULL OR SOPClassUID NOT IN ({classes}))"
    found = select_series(state.catalog, where)
    if not found.series:
        if found.problems:
            raise HTTPException(422, f"series {uid}: {found.problems[0].problem}")
        raise HTTPException(404, f"no image series {uid} in the catalog")
    series = found.series[0]
    if model is not None and series.plan is not None:
        refused = check_input(model, series.first.get("Modality"), len(series.plan.slices))
        if refused:
            raise HTTPException(422, f"series {uid}: {refused}")
    key = (state.table.uri, uid, tuple(sorted(str(r.get("path")) for r in series.rows)))
    with _CACHE_LOCK:
        vol = _CACHE.pop(key, None)
        if vol is not None:
            _CACHE[key] = vol  # most recently used last
    if vol is None:
        try:
            vol = read_volume(series)
        except PixelsError as e:
            raise HTTPException(422, f"series {uid}: {e}") from e
    with _CACHE_LOCK:
        _CACHE[key] = vol
        while len(_CACHE) > CACHED_VOLUMES:
            _CACHE.pop(next(iter(_CACHE)))
        if version is not None:
            _SEEN[seen] = key
            while len(_SEEN) > 4 * CACHED_VOLUMES:
                _SEEN.pop(next(iter(_SEEN)))
    return vol


_CACHE: dict[tuple[str, str, tuple[str, ...]], Any] = {}
#: (table, series, table version) -> its key in _CACHE: a click needs no catalog query
_SEEN: dict[tuple[str, str, int | None], tuple[str, str, tuple[str, ...]]] = {}
_CACHE_LOCK = threading.Lock()


def _predict(model: Any, vol: Any) -> np.ndarray:
    predict = getattr(model, "predict", None)  # models that use the orientation (bundles)
    if callable(predict):
        return np.asarray(predict(vol.array, vol.plan.affine))
    return np.asarray(model(vol.array, vol.plan.spacing))


@dataclass
class _Result:
    labels: np.ndarray
    affine_lps: np.ndarray
    seconds: float


def _infer(state: WebState, model: Any, uid: str) -> _Result:
    t0 = time.perf_counter()
    vol = _series(state, uid, model)
    labels = _predict(model, vol)
    if labels.shape != vol.array.shape:
        raise HTTPException(
            500, f"model {model.name} returned shape {labels.shape} for {vol.array.shape}"
        )
    return _Result(labels, _LPS @ vol.plan.affine, time.perf_counter() - t0)


def _grow(state: WebState, uid: str, params: dict[str, Any]) -> _Result:
    from pixels.ml.models.clicks import ClickError, grow

    t0 = time.perf_counter()
    tolerance = params.get("tolerance", DEFAULT_TOLERANCE)
    if not isinstance(tolerance, int | float) or not 0 <= tolerance <= 10000:
        raise HTTPException(400, f"params.tolerance {tolerance!r}: a number of 0..10000")
    vol = _series(state, uid, None)
    try:
        labels = grow(
            vol.array,
            vol.plan.spacing,
            params.get("foreground", []),
            params.get("background", []),
            tolerance=float(tolerance),
        )
    except ClickError as e:
        raise HTTPException(400, f"{REGION_GROW} on series {uid}: {e}") from e
    return _Result(labels, _LPS @ vol.plan.affine, time.perf_counter() - t0)


class _Answer:
    """A label volume's NRRD and, once a client accepting gzip asks, its deflated bytes."""

    __slots__ = ("_deflated", "nrrd")

    def __init__(self, body: bytes):
        self.nrrd = body
        self._deflated: Deflated | None = None

    def deflated(self) -> Deflated:
        """The NRRD compressed (:data:`pixels.web.gzipped.LEVEL`), once per answer."""
        if self._deflated is None:  # (two threads at once would both compress: no harm)
            self._deflated = Deflated.of(self.nrrd)
        return self._deflated


_ENCODED: list[tuple[weakref.ReferenceType[np.ndarray], bytes, _Answer]] = []
_ENCODED_LOCK = threading.Lock()


def _encode(labels: np.ndarray, affine_lps: np.ndarray, gzip: bool = False) -> _Answer:
    """The NRRD of ``labels`` (deflated too with ``gzip``); the same answer again when a
    model answers the same read-only array (the region-grow model after a click that
    changes nothing: 26 MB neither copied nor compressed twice)."""
    where = affine_lps.tobytes()
    answer = None
    with _ENCODED_LOCK:
        for ref, at, cached in _ENCODED:
            if ref() is labels and at == where:
                answer = cached
    if answer is None:
        answer = _Answer(nrrd.encode(labels, affine_lps))
        if not labels.flags.writeable:  # nobody changes it: its bytes stay valid while it lives
            with _ENCODED_LOCK:
                _ENCODED[:] = [e for e in _ENCODED if e[0]() is not None]
                _ENCODED.append((weakref.ref(labels), where, answer))
                del _ENCODED[: max(0, len(_ENCODED) - CACHED_VOLUMES)]
    if gzip:
        answer.deflated()
    return answer


async def infer(request: Request) -> Response:
    """``POST infer/{model}?image=<SeriesInstanceUID>&output=image|json|all``."""
    state = state_of(request)
    name = request.path_params["model"]
    uid = check_uid(request.query_params.get("image", ""), "image")
    output = request.query_params.get(
        "output", "all"
    )  # as MONAI Label: monailabel.client sends none
    if output not in ("image", "json", "all"):
        raise HTTPException(400, f"output={output!r}: one of image, json, all")
    fields = await _request_fields(request)
    params = _params(fields.get("params"))
    for key in ("foreground", "background"):
        points = params.get(key, [])
        if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 3 and all(isinstance(c, int | float) for c in p)
            for p in points
        ):
            raise HTTPException(400, f"params.{key} must be a list of [x, y, z] points")
    if name == REGION_GROW:
        result = await run_in_threadpool(_grow, state, uid, params)
        label_names = dict(REGION_LABELS)
    else:
        model = _model(name)
        result = await run_in_threadpool(_infer, state, model, uid)
        label_names = _label_names(model)
    meta = {
        "label_names": label_names,
        "latencies": {"infer": round(result.seconds, 3), "total": round(result.seconds, 3)},
        "image": uid,
        "model": name,
    }
    if output == "json":
        return JSONResponse(meta)
    gzip = accepts_gzip(request.headers.get("accept-encoding"))
    answer = await run_in_threadpool(_encode, result.labels, result.affine_lps, gzip)
    if output == "image":
        media_type = "application/octet-stream"
        head, tail = b"", b""
        headers = {"Content-Disposition": f'attachment; filename="{uid}.nrrd"'}
    else:
        boundary = new_boundary()
        media_type = f"multipart/form-data; boundary={boundary}"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n'
            "Content-Type: application/json\r\n\r\n"
            + json.dumps(meta)
            + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="image"; '
            f'filename="{uid}.nrrd"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        headers = {}
    headers["Vary"] = "Accept-Encoding"
    if not gzip:
        body = answer.nrrd if output == "image" else b"".join((head, answer.nrrd, tail))
        return Response(body, media_type=media_type, headers=headers)
    # the NRRD deflated once (and kept with an unchanged answer); the rest compressed now
    body = await run_in_threadpool(gzip_join, [head, answer.deflated(), tail])
    headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=headers)


def _datastore(state: WebState) -> tuple[list[dict[str, Any]], dict[str, str]]:
    from pixels.ml.seg import segmentations

    images = state.catalog.sql(
        "SELECT SeriesInstanceUID, any_value(StudyInstanceUID) AS StudyInstanceUID, "
        "any_value(Modality) AS Modality, count(*) AS instances FROM object_catalog "
        "WHERE error IS NULL AND SeriesInstanceUID IS NOT NULL "
        "AND (Modality IS NULL OR Modality <> 'SEG') "
        "GROUP BY SeriesInstanceUID ORDER BY SeriesInstanceUID"
    ).to_dict("records")
    segs = segmentations(state.catalog)
    labelled = dict(
        zip(segs["ReferencedSeriesInstanceUID"], segs["SeriesInstanceUID"], strict=True)
    )
    return images, labelled


async def datastore(request: Request) -> Response:
    """``GET datastore/?output=stats|all|ids``: the catalog's image series as MONAI Label's datastore."""
    output = request.query_params.get("output", "stats")
    if output not in ("stats", "all", "ids"):
        raise HTTPException(400, f"output={output!r}: one of stats, all, ids")
    images, labelled = await run_in_threadpool(_datastore, state_of(request))
    if output == "ids":
        return JSONResponse([r["SeriesInstanceUID"] for r in images])
    done = [r for r in images if r["SeriesInstanceUID"] in labelled]
    if output == "stats":
        return JSONResponse(
            {
                "total": len(images),
                "completed": len(done),
                "label_tags": {"final": len(done)},
                "train": {},
            }
        )
    objects = {}
    for r in images:
        uid = r["SeriesInstanceUID"]
        entry: dict[str, Any] = {
            "image": {
                "ext": "",
                "info": {
                    "StudyInstanceUID": r["StudyInstanceUID"],
                    "Modality": r["Modality"],
                    "instances": int(r["instances"]),
                },
            },
            "labels": {},
        }
        if uid in labelled:
            entry["labels"]["final"] = {"info": {"SeriesInstanceUID": labelled[uid]}}
        objects[uid] = entry
    return JSONResponse({"name": "Pixels", "description": "the Pixels catalog", "objects": objects})


@dataclass(frozen=True)
class _Submitted:
    """The 'model' of a submitted label: its segments, for the SEG writer."""

    segments: tuple[Any, ...]
    name: str = SUBMITTED
    version: str = "1"
    modalities: tuple[str, ...] = ()
    min_slices: int = 1


def _submitted_segments(params: dict[str, Any], values: set[int]) -> tuple[Any, ...]:
    """Segments of a submitted label: names from ``params`` (``label_names`` or ``label_info``)."""
    from pixels.ml.models import Segment
    from pixels.ml.models.base import ANATOMICAL_STRUCTURE, TISSUE, Code

    names: dict[int, str] = {}
    given = params.get("label_names")
    if isinstance(given, dict):
        names.update({int(v): str(k) for k, v in given.items() if isinstance(v, int)})
    for item in params.get("label_info") or []:
        if isinstance(item, dict) and isinstance(item.get("idx"), int) and item.get("name"):
            names[int(item["idx"])] = str(item["name"])
    known: dict[str, Any] = {}
    try:
        for model, _ in _models().values():
            known.update({s.name.lower(): s for s in model.segments if not s.includes})
    except HTTPException:
        pass
    out = []
    for v in sorted(values):
        name = names.get(v, f"Label {v}")
        same = known.get(name.lower())
        category = same.category if same else ANATOMICAL_STRUCTURE
        kind = same.type if same else Code(TISSUE.value, TISSUE.scheme, TISSUE.meaning)
        color = same.color if same else None
        out.append(Segment(v, name, category, kind, color=color))
    return tuple(out)


def _save_label(state: WebState, uid: str, label: bytes, params: dict[str, Any]) -> dict[str, Any]:
    from pixels.ml.seg import build_seg, default_root, write_seg

    vol = _series(state, uid, None)
    if label.startswith(b"NRRD000"):
        try:
            array = nrrd.decode(label).array
        except nrrd.NrrdError as e:
            raise HTTPException(400, f"label of series {uid}: {e}") from e
    elif len(label) == vol.array.size:
        array = np.frombuffer(label, np.uint8).reshape(vol.array.shape, order="F")
    else:
        raise HTTPException(
            400,
            f"label of series {uid}: neither NRRD nor {vol.array.size} raw uint8 voxels "
            f"({len(label)} bytes)",
        )
    if array.shape != vol.array.shape:
        raise HTTPException(
            400, f"label of series {uid} has sizes {array.shape}; the series is {vol.array.shape}"
        )
    values = {int(v) for v in np.unique(array)} - {0}
    if not values:
        raise HTTPException(400, f"label of series {uid} is empty (every voxel is 0)")
    if max(values) > 255 or min(values) < 0:
        raise HTTPException(400, f"label of series {uid} holds values outside 1..255")
    labels = np.asarray(array, np.uint8)
    model = _Submitted(_submitted_segments(params, values))
    seg = build_seg(vol, labels, model)  # type: ignore[arg-type]
    path = write_seg(seg, default_root(state.table.uri))
    with state.write_lock:
        state.catalog.catalog(path, workers=0)
    return {
        "image": uid,
        "label": str(seg.SeriesInstanceUID),
        "SOPInstanceUID": str(seg.SOPInstanceUID),
        "StudyInstanceUID": str(seg.StudyInstanceUID),
    }


async def save_label(request: Request) -> Response:
    """``PUT datastore/label?image=<SeriesInstanceUID>``: a label volume -> a cataloged DICOM SEG."""
    state = state_of(request)
    uid = check_uid(request.query_params.get("image", ""), "image")
    fields = await _request_fields(request)
    label = fields.get("label")
    if not label:
        raise HTTPException(400, "no form field 'label' (the label volume) in the request")
    params = _params(fields.get("params"))
    return JSONResponse(await run_in_threadpool(_save_label, state, uid, label, params))


def routes() -> list[Route]:
    """The routes of the MONAI Label API under :data:`PREFIX` (with and without the final ``/``)."""
    p = PREFIX
    out = []
    for path, handler, methods in (
        ("/info", info, ["GET"]),
        ("/train", train, ["GET"]),
        ("/datastore", datastore, ["GET"]),
    ):
        out.append(Route(f"{p}{path}/", handler, methods=methods))
        out.append(Route(f"{p}{path}", handler, methods=methods))
    out.append(Route(f"{p}/infer/{{model}}", infer, methods=["POST"]))
    out.append(Route(f"{p}/datastore/label", save_label, methods=["PUT"]))
    return out
