"""QIDO-RS (PS3.18 10.6): search for studies, series and instances.

Answered from the catalog table only: matching runs in DuckDB on the typed key
columns (and on ``meta`` through DuckDB's JSON functions for the few attributes
without a column); the returned attributes come from one instance's ``meta``
plus computed ones (counts, ModalitiesInStudy, RetrieveURL). Every value from the
request reaches SQL as a bound parameter, never inside the SQL text.

Matching follows PS3.4 C.2.2.2: single value (``*`` and ``?`` wildcards, case
insensitive for PatientName), UID lists (``,`` or ``\\`` separated), date ranges
(``20200101-20201231``, ``-20201231``, ``20200101-``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pixels.web.index import index_of
from pixels.web.state import base_url, check_uid, state_of

__all__ = ["search"]

STUDY, SERIES, INSTANCE = "study", "series", "instance"


@dataclass(frozen=True, slots=True)
class _Key:
    level: str
    sql: str  # expression over ``inst``
    kind: str  # uid | text | pn | date | int | modalities


#: Matching keys and how each is matched.
KEYS: dict[str, _Key] = {
    "PatientName": _Key(STUDY, "PatientName", "pn"),
    "PatientID": _Key(STUDY, "PatientID", "text"),
    "PatientBirthDate": _Key(STUDY, "PatientBirthDate", "date"),
    "PatientSex": _Key(STUDY, "PatientSex", "text"),
    "StudyInstanceUID": _Key(STUDY, "StudyInstanceUID", "uid"),
    "StudyDate": _Key(STUDY, "StudyDate", "date"),
    "AccessionNumber": _Key(STUDY, "AccessionNumber", "text"),
    "StudyDescription": _Key(STUDY, "StudyDescription", "pn"),
    "StudyID": _Key(STUDY, "StudyID", "text"),  # extracted from meta by the index
    "ReferringPhysicianName": _Key(STUDY, "ReferringPhysicianName", "pn"),
    "ModalitiesInStudy": _Key(STUDY, "Modality", "modalities"),
    "SeriesInstanceUID": _Key(SERIES, "SeriesInstanceUID", "uid"),
    "Modality": _Key(SERIES, "Modality", "text"),
    "SeriesNumber": _Key(SERIES, "SeriesNumber", "int"),
    "SeriesDescription": _Key(SERIES, "SeriesDescription", "pn"),
    "BodyPartExamined": _Key(SERIES, "BodyPartExamined", "text"),
    "SOPInstanceUID": _Key(INSTANCE, "SOPInstanceUID", "uid"),
    "SOPClassUID": _Key(INSTANCE, "SOPClassUID", "uid"),
    "InstanceNumber": _Key(INSTANCE, "InstanceNumber", "int"),
}

#: Default return attributes (PS3.18 Tables 10.6.3-3 to 10.6.3-5), by level.
DEFAULTS: dict[str, tuple[str, ...]] = {
    STUDY: (
        "00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
        "00080201", "00081030", "00081190", "00100010", "00100020", "00100030", "00100040",
        "0020000D", "00200010", "00201206", "00201208",
    ),
    SERIES: (
        "00080005", "00080060", "00080201", "0008103E", "00081190", "0020000E", "00200011",
        "00201209", "00400244", "00400245", "00400275", "0020000D",
    ),
    INSTANCE: (
        "00080005", "00080016", "00080018", "00080056", "00080201", "00081190", "00200013",
        "00280010", "00280011", "00280100", "00280008", "0020000D", "0020000E",
    ),
}  # fmt: skip

_CONTROL = {"includefield", "limit", "offset", "fuzzymatching"}
_MAX_LIMIT = 10000
_HINT_MAX = 200


def _tag_of(name: str) -> str:
    """Tag (``GGGGEEEE``) of a keyword or tag given in a query; HTTP 400 when unknown."""
    first = name.split(".", 1)[0].strip()
    if len(first) == 8 and all(c in "0123456789abcdefABCDEF" for c in first):
        return first.upper()
    tag = tag_for_keyword(first)
    if tag is None:
        raise HTTPException(400, f"unknown attribute {first[:64]!r} (neither a keyword nor a tag)")
    return f"{tag:08X}"


def _keyword(name: str) -> str:
    tag = _tag_of(name)
    kw = keyword_for_tag(int(tag, 16))
    return kw or tag


def _wildcard(value: str) -> tuple[str, bool]:
    """A LIKE pattern for a DICOM wildcard value (``\\`` escapes), and whether it has one."""
    out = []
    for ch in value:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out), ("*" in value or "?" in value)


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.replace("\\", ",").split(",") if v.strip()]


def _parse_da(text: str, key: str) -> dt.date:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError as e:
        raise HTTPException(400, f"{key}: {text[:40]!r} is not a date (YYYYMMDD)") from e


def _condition(key: str, spec: _Key, value: str) -> tuple[str, list[Any]]:
    """One SQL condition with its parameters for ``key=value``."""
    col = spec.sql
    if spec.kind == "uid":
        uids = _split_list(value)
        for u in uids:
            check_uid(u, key)
        if not uids:
            return "TRUE", []
        return f"{col} IN ({', '.join('?' * len(uids))})", list(uids)
    if spec.kind == "modalities":
        mods = _split_list(value)
        if not mods:
            return "TRUE", []
        return (
            "StudyInstanceUID IN (SELECT StudyInstanceUID FROM inst WHERE Modality IN "
            f"({', '.join('?' * len(mods))}))",
            mods,
        )
    if spec.kind == "date":
        if "-" not in value:
            return f"{col} = ?", [_parse_da(value, key)]
        lo, _, hi = value.partition("-")
        conds, params = [], []
        if lo:
            conds.append(f"{col} >= ?")
            params.append(_parse_da(lo, key))
        if hi:
            conds.append(f"{col} <= ?")
            params.append(_parse_da(hi, key))
        return (" AND ".join(conds) or "TRUE"), params
    if spec.kind == "int":
        vals = _split_list(value)
        try:
            nums = [int(v) for v in vals]
        except ValueError as e:
            raise HTTPException(400, f"{key}: {value[:40]!r} is not an integer") from e
        return f"{col} IN ({', '.join('?' * len(nums))})", list(nums)
    pattern, wild = _wildcard(value)
    if spec.kind == "pn":
        # case-insensitive; a bare family name also matches "Family^Given"
        if not wild and "^" not in value:
            return f"({col} ILIKE ? ESCAPE '\\' OR {col} ILIKE ? ESCAPE '\\')", [
                pattern,
                pattern + "^%",
            ]
        return f"{col} ILIKE ? ESCAPE '\\'", [pattern]
    if wild:
        return f"{col} LIKE ? ESCAPE '\\'", [pattern]
    return f"{col} = ?", [value]


def _parse_query(request: Request) -> tuple[list[str], list[Any], list[str], bool, int, int]:
    """Conditions and parameters, include tags, ``all``, limit, offset."""
    conds: list[str] = []
    params: list[Any] = []
    include: list[str] = []
    include_all = False
    limit, offset = _MAX_LIMIT, 0
    for raw_key, value in request.query_params.multi_items():
        key = raw_key.strip()
        lower = key.lower()
        if lower in _CONTROL:
            if lower == "includefield":
                for name in _split_list(value):
                    if name.lower() == "all":
                        include_all = True
                    else:
                        include.append(_tag_of(name))
            elif lower in ("limit", "offset"):
                try:
                    n = int(value)
                    if n < 0:
                        raise ValueError
                except ValueError as e:
                    raise HTTPException(400, f"{key} must be an integer >= 0") from e
                if lower == "limit":
                    limit = min(n, _MAX_LIMIT)
                else:
                    offset = n
            continue  # fuzzymatching: accepted, matching stays exact
        try:
            kw = _keyword(key)
        except HTTPException as e:
            raise HTTPException(400, f"unknown query parameter {key[:64]!r}") from e
        spec = KEYS.get(kw)
        if spec is None:
            raise HTTPException(
                400,
                f"cannot match on {key[:64]!r}; supported: {', '.join(sorted(KEYS))}, "
                "includefield, limit, offset, fuzzymatching",
            )
        if value == "":
            continue  # universal matching
        c, p = _condition(kw, spec, value)
        conds.append(c)
        params.extend(p)
    return conds, params, include, include_all, limit, offset


def _level(request: Request) -> str:
    path = request.url.path.rstrip("/")
    if path.endswith("/studies"):
        return STUDY
    if path.endswith("/series"):
        return SERIES
    return INSTANCE


def _pick(meta: dict[str, Any], tags: list[str], include_all: bool) -> dict[str, Any]:
    if include_all:
        return {k: v for k, v in meta.items() if "BulkDataURI" not in v and "InlineBinary" not in v}
    return {t: meta[t] for t in tags if t in meta}


def search(request: Request) -> Response:
    """``GET /studies``, ``/series``, ``/instances`` and their nested forms."""
    state = state_of(request)
    level = _level(request)
    conds, params, include, include_all, limit, offset = _parse_query(request)
    for name in ("study", "series"):
        if name in request.path_params:
            col = "StudyInstanceUID" if name == "study" else "SeriesInstanceUID"
            conds.insert(0, f"{col} = ?")
            params.insert(0, check_uid(request.path_params[name], col))
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    base = base_url(request) + "/dicomweb"
    # the default attributes of the enclosing levels the resource is not nested in
    levels = {STUDY: [STUDY], SERIES: [SERIES], INSTANCE: [INSTANCE]}[level]
    if level in (SERIES, INSTANCE) and "study" not in request.path_params:
        levels.insert(0, STUDY)
    if level == INSTANCE and "series" not in request.path_params:
        levels.insert(-1, SERIES)
    tags = [t for lv in levels for t in DEFAULTS[lv]] + include
    if level == STUDY:
        sql = (
            "SELECT s.StudyInstanceUID, s.path, c.n_series, c.n_inst, c.mods FROM ("
            "SELECT StudyInstanceUID, arg_min(path, SOPInstanceUID) AS path, "
            "max(StudyDate) AS d FROM inst " + where + " GROUP BY StudyInstanceUID) s "
            "JOIN study_sum c USING (StudyInstanceUID) "
            "ORDER BY d DESC NULLS LAST, StudyInstanceUID LIMIT ? OFFSET ?"
        )
    elif level == SERIES:
        sql = (
            "SELECT s.*, c.n_inst FROM (SELECT StudyInstanceUID, SeriesInstanceUID, "
            "arg_min(path, SOPInstanceUID) AS path, min(SeriesNumber) AS n FROM inst "
            + where
            + " GROUP BY StudyInstanceUID, SeriesInstanceUID) s "
            "JOIN series_sum c USING (SeriesInstanceUID) "
            "ORDER BY StudyInstanceUID, n NULLS LAST, SeriesInstanceUID LIMIT ? OFFSET ?"
        )
    else:
        sql = (
            "SELECT StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, path FROM inst "
            + where
            + " ORDER BY StudyInstanceUID, SeriesNumber NULLS LAST, SeriesInstanceUID, "
            "InstanceNumber NULLS LAST, SOPInstanceUID LIMIT ? OFFSET ?"
        )
    snap = index_of(state).current()
    rows = snap.rows(sql, [*params, limit, offset])
    # meta of the rows; for instances, a condition on their studies lets DuckDB skip files
    studies = sorted({r["StudyInstanceUID"] for r in rows})
    hint, hint_params = "", []
    if level == INSTANCE and 0 < len(studies) <= _HINT_MAX:
        hint = f"StudyInstanceUID IN ({', '.join('?' * len(studies))})"
        hint_params = studies
    metas = snap.metas((r["path"] for r in rows), hint, hint_params)
    out = [
        _result(level, row | {"meta": metas[row["path"]]}, tags, include_all, base)
        for row in rows
        if row["path"] in metas
    ]
    return Response(json.dumps(out), media_type="application/dicom+json")


def _result(
    level: str, row: dict[str, Any], tags: list[str], include_all: bool, base: str
) -> dict[str, Any]:
    meta = json.loads(row["meta"])
    res = _pick(meta, tags, include_all)
    wanted = set(tags)
    study = row["StudyInstanceUID"]
    url = f"{base}/studies/{study}"
    if level == STUDY:
        _put(res, wanted, "00201206", "IS", [row["n_series"]])
        _put(res, wanted, "00201208", "IS", [row["n_inst"]])
        mods = sorted({m for m in (row["mods"] or []) if m})
        _put(res, wanted, "00080061", "CS", mods or None)
    elif level == SERIES:
        url += f"/series/{row['SeriesInstanceUID']}"
        _put(res, wanted, "00201209", "IS", [row["n_inst"]])
    else:
        url += f"/series/{row['SeriesInstanceUID']}/instances/{row['SOPInstanceUID']}"
    _put(res, wanted, "00080056", "CS", ["ONLINE"])
    _put(res, wanted, "00081190", "UR", [url])
    return dict(sorted(res.items()))


def _put(res: dict[str, Any], wanted: set[str], tag: str, vr: str, value: list[Any] | None) -> None:
    """Set a computed attribute; one with no value is left out.

    An attribute without ``Value`` is valid DICOM JSON, but OHIF's study list reads
    ``ModalitiesInStudy.Value.length`` and fails on the whole page when it is missing
    (a study none of whose instances has a Modality).
    """
    if tag in wanted:
        if value:
            res[tag] = {"vr": vr, "Value": value}
        else:
            res.pop(tag, None)
