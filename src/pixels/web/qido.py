"""QIDO-RS (PS3.18 10.6): search for studies, series and instances.

Answered from the catalog table only: matching runs in DuckDB on the typed key
columns (and on ``meta`` through DuckDB's JSON functions for the few attributes
without a column); the returned attributes come from one instance's ``meta``
plus computed ones (counts, ModalitiesInStudy, RetrieveURL). Every value from the
request reaches SQL as a bound parameter, never inside the SQL text.

Matching follows PS3.4 C.2.2.2: single value (``*`` and ``?`` wildcards; a value
of ``*`` alone is universal matching, empty values included), person names case
insensitive on each component group, UID lists (``,`` or ``\\`` separated), date
ranges (``20200101-20201231``, ``-20201231``, ``20200101-``).

Query parameters that are not matching keys Pixels supports are ignored and named
in a ``Warning`` header (PS3.18 8.3.4); invalid values of known keys answer 400.
An answer cut at ``limit`` carries ``Warning: 299 ...: "There are additional
results that can be requested"``. ``includefield=all`` returns the attributes of
the query's levels (:mod:`pixels.web.levels`).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import duckdb
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pixels.web.index import QMETA_TAGS, Snapshot, TableIndex, index_of
from pixels.web.index_tables import STUDY_ORDER, STUDY_SEARCH, modality_key
from pixels.web.levels import SERIES_TAGS, STUDY_TAGS, is_instance_level
from pixels.web.qido_answers import answers_of
from pixels.web.state import base_url, check_uid, state_of

__all__ = ["search"]

STUDY, SERIES, INSTANCE = "study", "series", "instance"


@dataclass(frozen=True, slots=True)
class _Key:
    level: str
    sql: str  # expression over ``inst``
    kind: str  # uid | text | ci (case-insensitive text) | pn | date | int | modalities


#: Matching keys and how each is matched.
KEYS: dict[str, _Key] = {
    "PatientName": _Key(STUDY, "PatientName", "pn"),
    "PatientID": _Key(STUDY, "PatientID", "text"),
    "PatientBirthDate": _Key(STUDY, "PatientBirthDate", "date"),
    "PatientSex": _Key(STUDY, "PatientSex", "text"),
    "StudyInstanceUID": _Key(STUDY, "StudyInstanceUID", "uid"),
    "StudyDate": _Key(STUDY, "StudyDate", "date"),
    "AccessionNumber": _Key(STUDY, "AccessionNumber", "text"),
    "StudyDescription": _Key(STUDY, "StudyDescription", "ci"),
    "StudyID": _Key(STUDY, "StudyID", "text"),  # extracted from meta by the index
    "ReferringPhysicianName": _Key(STUDY, "ReferringPhysicianName", "pn"),
    "ModalitiesInStudy": _Key(STUDY, "Modality", "modalities"),
    "SeriesInstanceUID": _Key(SERIES, "SeriesInstanceUID", "uid"),
    "Modality": _Key(SERIES, "Modality", "text"),
    "SeriesNumber": _Key(SERIES, "SeriesNumber", "int"),
    "SeriesDescription": _Key(SERIES, "SeriesDescription", "ci"),
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

#: Attributes computed from the index, not read from an instance's header.
_COMPUTED = ("00080056", "00080061", "00081190", "00201206", "00201208", "00201209")
_CONTROL = {"includefield", "limit", "offset", "fuzzymatching"}
_MAX_LIMIT = 10000
#: Largest offset (and limit) accepted: DuckDB's BIGINT.
_MAX_OFFSET = 2**63 - 1
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


def _like(op: str, pattern: str) -> str:
    """``{op} ?`` for a pattern made by :func:`_wildcard`, with ``ESCAPE '\\'`` only when
    it escapes a character: DuckDB runs a ``LIKE`` / ``ILIKE`` with an ``ESCAPE``
    clause 2-3x slower, and without one turns a prefix into a range on the column."""
    return f"{op} ? ESCAPE '\\'" if "\\" in pattern else f"{op} ?"


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.replace("\\", ",").split(",") if v.strip()]


def _pn_condition(col: str, value: str, pattern: str, wild: bool) -> tuple[str, list[Any]]:
    """Person name matching, case insensitive, on each component group.

    ``Yamada^Tarou`` finds ``Yamada^Tarou=山田^太郎=やまだ^たろう`` (its alphabetic
    group), ``山田^太郎`` its ideographic one; a value with ``=`` is matched against
    the whole name. A bare family name without wildcards also matches
    ``Family^Given...``.
    """
    if "=" in value:
        return f"{col} {_like('ILIKE', pattern)}", [pattern]
    group = f"g {_like('ILIKE', pattern)}"
    params = [pattern]
    if not wild and "^" not in value:
        group += f" OR g {_like('ILIKE', pattern)}"
        params.append(pattern + "^%")
    # a name of one group (nearly all) is matched as it is; only names with ``=`` are
    # split (the lambda over every name cost a quarter of a study search)
    return (
        f"CASE WHEN strpos({col}, '=') = 0 THEN ({group.replace('g ', col + ' ')}) ELSE "
        f"coalesce(list_bool_or(list_transform(string_split({col}, '='), lambda g: {group})), "
        "false) END",
        params + params,
    )


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
        # a condition on the study as a whole, over its groups (see _Query.of_study)
        mods = _split_list(value)
        if not mods:
            return "TRUE", []
        return f"Modality IN ({', '.join('?' * len(mods))})", mods
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
        return _pn_condition(col, value, pattern, wild)
    if spec.kind == "ci":
        return f"{col} {_like('ILIKE', pattern)}", [pattern]
    if wild:
        return f"{col} {_like('LIKE', pattern)}", [pattern]
    return f"{col} = ?", [value]


@dataclass
class _Query:
    """A parsed QIDO-RS query string."""

    #: conditions on one group (``grp`` / ``sgrp``) or instance (``inst``) row
    conds: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    #: conditions on a study as a whole (ModalitiesInStudy): a filter of ``grp`` rows,
    #: the study matching when one of its live groups passes it; their parameters
    of_study: list[str] = field(default_factory=list)
    study_params: list[Any] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    include_all: bool = False
    limit: int = _MAX_LIMIT
    offset: int = 0
    #: Query parameters ignored (PS3.18 8.3.4: unknown ones are ignored, not refused).
    ignored: list[str] = field(default_factory=list)
    #: The matching keys used (keywords of :data:`KEYS`).
    keys: list[str] = field(default_factory=list)
    #: The matching keys with their values, as given (non-universal ones).
    pairs: list[tuple[str, str]] = field(default_factory=list)


def _count(key: str, value: str, most: int) -> int:
    try:
        n = int(value.strip())
    except ValueError as e:
        raise HTTPException(400, f"{key} must be an integer >= 0, not {value[:40]!r}") from e
    if not 0 <= n <= most:
        raise HTTPException(400, f"{key} must be an integer from 0 to {most}, not {value[:40]!r}")
    return n


def _parse_query(request: Request) -> _Query:
    """Conditions and parameters, include tags, ``all``, limit, offset, ignored keys."""
    q = _Query()
    for raw_key, value in request.query_params.multi_items():
        key = raw_key.strip()
        lower = key.lower()
        if not key:
            continue  # "?&limit=10" (Weasis sends it)
        if lower in _CONTROL:
            if lower == "includefield":
                for name in _split_list(value):
                    if name.lower() == "all":
                        q.include_all = True
                    else:
                        try:
                            q.include.append(_tag_of(name))
                        except HTTPException as e:
                            raise HTTPException(400, f"{key}: {e.detail}") from e
            elif lower == "limit":
                q.limit = min(_count(key, value, _MAX_OFFSET), _MAX_LIMIT)
            elif lower == "offset":
                q.offset = _count(key, value, _MAX_OFFSET)
            continue  # fuzzymatching: accepted, matching stays exact
        try:
            kw = _keyword(key)
        except HTTPException:
            kw = None
        spec = KEYS.get(kw) if kw else None
        if spec is None or "." in key:
            q.ignored.append(key[:64])
            continue
        if value == "" or value.strip("*") == "":
            continue  # universal matching (PS3.4 C.2.2.2.3; "*" alone is the same)
        c, p = _condition(kw or key, spec, value)
        q.keys.append(kw or key)
        q.pairs.append((kw or key, value))
        if spec.kind == "modalities":
            if p:
                q.of_study.append(c)
                q.study_params.extend(p)
        else:
            q.conds.append(c)
            q.params.extend(p)
    return q


def _of_study(cond: str, key: str = "sk") -> str:
    """A condition on the study as a whole (:attr:`_Query.of_study`) over rows with the
    study's ``key``: ``sk`` (its hash: ``grp``, ``sgrp``, ``study_sum``; an integer join)
    or ``StudyInstanceUID`` (``inst``)."""
    return f"{key} IN (SELECT {key} FROM grp WHERE n > 0 AND {cond})"


def _level(request: Request) -> str:
    path = request.url.path.rstrip("/")
    if path.endswith("/studies"):
        return STUDY
    if path.endswith("/series"):
        return SERIES
    return INSTANCE


def _in_level(tag: str, level: str) -> bool:
    if level == STUDY:
        return tag in STUDY_TAGS
    if level == SERIES:
        return tag in SERIES_TAGS
    return is_instance_level(tag)


def _pick(
    meta: dict[str, Any], tags: list[str], include_all: bool, levels: list[str]
) -> dict[str, Any]:
    """The ``tags`` of ``meta``; with ``includefield=all``, every attribute of ``levels`` too."""
    out = {t: meta[t] for t in tags if t in meta}
    if include_all:
        for k, v in meta.items():
            if (
                k not in out
                and "BulkDataURI" not in v
                and "InlineBinary" not in v
                and any(_in_level(k, lv) for lv in levels)
            ):
                out[k] = v
    return out


def _warning(request: Request, text: str) -> str:
    """A ``Warning`` header value (RFC 7234 5.5, code 299 as PS3.18 8.3.4 uses it)."""
    agent = request.url.netloc or "pixels"
    safe = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "?" for c in text)
    return f'299 {agent}: "{safe}"'


def search(request: Request) -> Response:
    """``GET /studies``, ``/series``, ``/instances`` and their nested forms."""
    state = state_of(request)
    level = _level(request)
    q = _parse_query(request)
    conds, params = q.conds, q.params
    for name in ("study", "series"):
        if name in request.path_params:
            col = "StudyInstanceUID" if name == "study" else "SeriesInstanceUID"
            conds.insert(0, f"{col} = ?")
            params.insert(0, check_uid(request.path_params[name], col))
    # instance rows: every condition on the row; a study's groups: by its key ``sk``
    on_inst = conds + [_of_study(c, "StudyInstanceUID") for c in q.of_study]
    on_grp = conds + [_of_study(c) for c in q.of_study]
    params = params + q.study_params  # in that order in every search below
    where = ("WHERE " + " AND ".join(on_inst)) if on_inst else ""
    base = base_url(request) + "/dicomweb"
    # the default attributes of the enclosing levels the resource is not nested in
    levels = {STUDY: [STUDY], SERIES: [SERIES], INSTANCE: [INSTANCE]}[level]
    if level in (SERIES, INSTANCE) and "study" not in request.path_params:
        levels.insert(0, STUDY)
    if level == INSTANCE and "series" not in request.path_params:
        levels.insert(-1, SERIES)
    tags = [t for lv in levels for t in DEFAULTS[lv]] + q.include
    study_sums = "t.n_series AS study_series, t.n_inst AS study_inst, t.mods"
    # study and series searches match on the index's groups (one row per distinct
    # combination of study/series attributes), never on every instance
    grouped = all(KEYS[k].level != INSTANCE for k in q.keys)
    # ``sgrp`` joins each group to its series' StudyID and ReferringPhysicianName: only
    # for a query on those; the others match on the live groups alone
    on_series = {"StudyID", "ReferringPhysicianName"} & set(q.keys)

    def groups(cs: list[str]) -> str:
        """The groups (live ones: ``sgrp`` has only those) that pass ``cs``."""
        passed = " AND ".join(cs)
        return f"sgrp WHERE {passed}" if on_series else f"grp WHERE n > 0 AND {passed}"

    fast = level == STUDY and all(k in _STUDY_SEARCH for k in q.keys)
    index = index_of(state)
    snap = index.current()
    # (the overlay's views have no row ids: rows named by their keys then)
    row_sk, row_seh = snap.row_key("sk"), snap.row_key("seh")
    if fast:
        sql = ""  # made below, with the index's flags (:func:`_study_search`)
    elif level == STUDY and grouped:
        # studies matched by their key ``sk`` (an integer join: on UID strings the join
        # cost more than the rest of the search); the page is chosen on the narrow
        # columns first, then only its rows' ``qmeta`` (1-2 kB each) are read: a scan of
        # every study's ``qmeta`` cost 2-3x the search
        on_study = ([f"sk IN (SELECT sk FROM {groups(conds)})"] if conds else []) + [
            _of_study(c) for c in q.of_study
        ]
        sql = (
            f"SELECT t.StudyInstanceUID, t.first AS path, t.qmeta, {study_sums} FROM study_sum t "
            f"WHERE t.{row_sk} IN (SELECT {row_sk} FROM study_sum "
            + (f"WHERE {' AND '.join(on_study)} " if on_study else "")
            + "ORDER BY d DESC NULLS LAST, StudyInstanceUID LIMIT ? OFFSET ?) "
            "ORDER BY t.d DESC NULLS LAST, t.StudyInstanceUID"
        )
    elif level == SERIES and grouped:
        sql = (
            "SELECT c.StudyInstanceUID, c.SeriesInstanceUID, c.first AS path, c.qmeta, "
            f"c.n_inst AS series_inst, {study_sums} FROM series_sum c "
            f"JOIN study_sum t USING (StudyInstanceUID) WHERE c.{row_seh} IN (SELECT {row_seh} FROM series_sum "
            + (
                f"WHERE SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM {groups(on_grp)}) "
                if on_grp
                else ""
            )
            + "ORDER BY StudyInstanceUID, n NULLS LAST, SeriesInstanceUID LIMIT ? OFFSET ?) "
            "ORDER BY c.StudyInstanceUID, c.n NULLS LAST, c.SeriesInstanceUID"
        )
    elif level == STUDY:
        sql = (
            f"SELECT s.StudyInstanceUID, s.path, NULL AS qmeta, {study_sums} FROM ("
            "SELECT StudyInstanceUID, arg_min(path, SOPInstanceUID) AS path, "
            "max(StudyDate) AS d FROM inst " + where + " GROUP BY StudyInstanceUID) s "
            "JOIN study_sum t USING (StudyInstanceUID) "
            "ORDER BY s.d DESC NULLS LAST, StudyInstanceUID LIMIT ? OFFSET ?"
        )
    elif level == SERIES:
        sql = (
            f"SELECT s.*, NULL AS qmeta, c.n_inst AS series_inst, {study_sums} FROM ("
            "SELECT StudyInstanceUID, SeriesInstanceUID, arg_min(path, SOPInstanceUID) AS path, "
            "min(SeriesNumber) AS n FROM inst " + where + " GROUP BY StudyInstanceUID, "
            "SeriesInstanceUID) s JOIN series_sum c USING (SeriesInstanceUID) "
            "JOIN study_sum t ON t.StudyInstanceUID = s.StudyInstanceUID "
            "ORDER BY s.StudyInstanceUID, s.n NULLS LAST, SeriesInstanceUID LIMIT ? OFFSET ?"
        )
    else:
        sql = (
            "SELECT i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID, i.path, "
            f"NULL AS qmeta, c.n_inst AS series_inst, {study_sums} FROM (SELECT * FROM inst "
            f"{where}) i JOIN series_sum c USING (SeriesInstanceUID) "
            "JOIN study_sum t ON t.StudyInstanceUID = i.StudyInstanceUID "
            "ORDER BY i.StudyInstanceUID, i.SeriesNumber NULLS LAST, i.SeriesInstanceUID, "
            "i.InstanceNumber NULLS LAST, i.SOPInstanceUID LIMIT ? OFFSET ?"
        )
    key = (
        snap.version,
        base,
        request.url.netloc,
        request.url.path,
        tuple(request.query_params.multi_items()),
    )
    answers = answers_of(index)
    kept = answers.get(key) if snap.version is not None else None
    if kept is not None:
        return Response(kept[0], media_type="application/dicom+json", headers=kept[1])
    # one row more than asked for says whether the answer was cut (PS3.18 8.3.4.4)
    if fast:
        rows = _study_rows(index, snap, q)
    else:
        rows = _rows(index, snap, sql, [*params, q.limit + 1, q.offset])
    cut = len(rows) > q.limit
    del rows[q.limit :]
    # the study/series attributes the index holds answer unless other tags are asked for
    held = all(t in QMETA_TAGS or t in _COMPUTED for t in tags)
    # a result's JSON is the same for the same row, shape and version: made once
    shape = (level, base, tuple(tags), q.include_all, tuple(levels))

    def ident(r: dict[str, Any]) -> tuple[Any, ...]:
        from_qmeta = held and r["qmeta"] is not None
        return (r["StudyInstanceUID"], r.get("SeriesInstanceUID"), r.get("SOPInstanceUID"),
                r["path"], from_qmeta)  # fmt: skip

    known = answers.items(snap.version, shape, [ident(r) for r in rows])
    need = [r for r, k in zip(rows, known, strict=True) if k is None]
    metas = {r["path"]: r["qmeta"] for r in need if held and r["qmeta"] is not None}
    todo = [r for r in need if r["path"] not in metas]
    if todo:
        # for instances, a condition on their studies lets DuckDB skip files
        studies = sorted({r["StudyInstanceUID"] for r in todo})
        hint, hint_params = "", []
        if level == INSTANCE and 0 < len(studies) <= _HINT_MAX:
            hint = f"StudyInstanceUID IN ({', '.join('?' * len(studies))})"
            hint_params = studies
        metas.update(snap.metas((r["path"] for r in todo), hint, hint_params))
    out: list[str] = []
    for row, text in zip(rows, known, strict=True):
        if text is None:
            if row["path"] not in metas:
                continue
            result = _result(
                level, row | {"meta": metas[row["path"]]}, tags, q.include_all, levels, base
            )
            text = json.dumps(result)
            answers.keep_item(snap.version, shape, ident(row), text)
        out.append(text)
    warnings = []
    if cut:
        warnings.append(_warning(request, "There are additional results that can be requested"))
    if q.ignored:
        warnings.append(
            _warning(
                request,
                "The following query parameters were ignored: " + ", ".join(q.ignored),
            )
        )
    headers = {"Warning": ", ".join(warnings)} if warnings else None
    body = ("[" + ", ".join(out) + "]").encode()  # as json.dumps(list) writes it
    if snap.version is not None:
        answers.put(key, body, headers)
    return Response(body, media_type="application/dicom+json", headers=headers)


#: Keys a study search answers from the study search table alone (``qs``, ``qs_new``:
#: :mod:`pixels.web.index_tables`).
_STUDY_SEARCH = frozenset((*STUDY_SEARCH, "ModalitiesInStudy"))
_QS_COLUMNS = (
    "d, StudyInstanceUID, first AS path, qmeta, n_series AS study_series, "
    "n_inst AS study_inst, mods"
)


@dataclass(frozen=True, slots=True)
class _Flags:
    """What the study search table holds that needs the slower forms of a search."""

    #: studies whose live groups differ in a study-level column (matched through ``grp``)
    mixed: bool
    #: person names of several component groups (``=``): matched group by group
    groups: bool
    #: studies in ``qs_new`` (none: ``qs`` alone is read, in its order)
    new: bool


#: The flags of each index, by the ``state`` row (version, next file id) they were read at.
_FLAGS: weakref.WeakKeyDictionary[TableIndex, tuple[tuple[Any, ...], _Flags]] = (
    weakref.WeakKeyDictionary()
)


def _study_rows(index: TableIndex, snap: Snapshot, q: _Query) -> list[dict[str, Any]]:
    """A study search on the study search table (:func:`_study_search`), in one
    transaction with the read of the flags it is made with: the index's ``state`` row
    names the flags kept (an update changes it; a sort of ``qs_new`` into ``qs`` does
    not, and leaves kept flags true but for ``new``, whose stale True costs a union)."""

    def work(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        cur.execute("BEGIN TRANSACTION")
        try:
            state = cur.execute("SELECT version, next_fid FROM state").fetchone()
            kept = _FLAGS.get(index)
            if kept is not None and kept[0] == state:
                flags = kept[1]
            else:
                row = cur.execute(
                    "SELECT count(*) FILTER (mixed), count(*) FILTER "
                    "(strpos(PatientName, '=') > 0), count(*) FILTER (NOT sorted) FROM "
                    "(SELECT mixed, PatientName, true AS sorted FROM qs UNION ALL "
                    "SELECT mixed, PatientName, false FROM qs_new)"
                ).fetchone()
                assert row is not None and state is not None
                flags = _Flags(mixed=row[0] > 0, groups=row[1] > 0, new=row[2] > 0)
                _FLAGS[index] = (tuple(state), flags)
            sql, params = _study_search(q, flags)
            rows = _dicts(cur.execute(sql, [*params, q.limit + 1, q.offset]))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return rows

    return _on_cursor(index, snap, work)


def _study_search(q: _Query, flags: _Flags) -> tuple[str, list[Any]]:
    """A study search on :data:`_STUDY_SEARCH` keys over the study search table, and its
    parameters but the last two (limit + 1, offset).

    ``qs`` is in answer order (:data:`~pixels.web.index_tables.STUDY_ORDER`): its first
    ``offset + limit + 1`` matches are read and the scan stops there; the studies
    updates moved to ``qs_new`` (a few thousand at most) are matched whole, and the two
    merged. Matching is that of the group tables: ``pn`` is ``lower(PatientName)``, as
    ``ILIKE`` compares; a study whose groups differ in a study-level column (``mixed``)
    is matched on its groups; ModalitiesInStudy on the study's modalities.
    """
    attrs: list[str] = []
    attr_params: list[Any] = []
    mods: list[str] = []
    mod_params: list[Any] = []
    for kw, value in q.pairs:
        spec = KEYS[kw]
        if spec.kind == "modalities":
            wanted = _split_list(value)
            if wanted:
                mods.append("(" + " OR ".join("contains(modstr, ?)" for _ in wanted) + ")")
                mod_params += [modality_key(m) for m in wanted]
            continue
        if spec.kind == "pn" and not flags.groups and "=" not in value:
            pattern, wild = _wildcard(value)
            like = _like("LIKE", pattern).replace("?", "lower(?)", 1)
            cond = f"pn {like}"
            cond_params: list[Any] = [pattern]
            if not wild and "^" not in value:
                cond = f"({cond} OR pn {like})"
                cond_params.append(pattern + "^%")
        else:
            cond, cond_params = _condition(kw, spec, value)
        attrs.append(cond)
        attr_params += cond_params
    where = " AND ".join(attrs) or "true"
    params = attr_params
    if attrs and flags.mixed:
        # (a mixed study's columns are NULL: it passes only through its groups)
        where = (
            f"(({where}) OR (mixed AND sk IN (SELECT sk FROM grp WHERE n > 0 AND "
            f"{' AND '.join(q.conds)})))"
        )
        params = attr_params + q.params
    if mods:
        where = " AND ".join([where, *mods])
        params = params + mod_params
    if not flags.new:  # ``qs`` alone, in answer order: its page is its page
        return f"SELECT {_QS_COLUMNS} FROM qs WHERE {where} LIMIT ? OFFSET ?", params
    sql = (
        "SELECT StudyInstanceUID, path, qmeta, study_series, study_inst, mods FROM ("
        f"(SELECT {_QS_COLUMNS} FROM qs WHERE {where} LIMIT ?) UNION ALL "
        f"(SELECT {_QS_COLUMNS} FROM qs_new WHERE {where})) "
        f"ORDER BY {STUDY_ORDER} LIMIT ? OFFSET ?"
    )
    first = min(q.limit + 1 + q.offset, _MAX_OFFSET)  # (BIGINT)
    return sql, [*params, first, *params]


def _rows(index: TableIndex, snap: Snapshot, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """Run a search on this thread's cursor of the index; rows as dicts."""
    return _on_cursor(index, snap, lambda cur: _dicts(cur.execute(sql, params)))


def _dicts(res: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in res.description or ()]
    return [dict(zip(names, r, strict=True)) for r in res.fetchall()]


def _on_cursor(
    index: TableIndex, snap: Snapshot, work: Callable[[duckdb.DuckDBPyConnection], _T]
) -> _T:
    """``work`` on this thread's cursor of the index (made once: a cursor and its ``USE``
    per request cost more than a small search)."""
    cursors: weakref.WeakKeyDictionary[TableIndex, tuple[duckdb.DuckDBPyConnection, str]] | None
    cursors = getattr(_THREAD, "cursors", None)
    if cursors is None:
        cursors = _THREAD.cursors = weakref.WeakKeyDictionary()
    kept = cursors.get(index)
    cur = kept[0] if kept is not None else None
    for attempt in (0, 1):
        if cur is None:
            cur = snap.cursor()
            cursors[index] = (cur, snap.schema)
        elif kept is not None and kept[1] != snap.schema:  # the overlay's views, or not
            cur.execute(f"USE {snap.schema}")
            cursors[index] = (cur, snap.schema)
        try:
            return work(cur)
        except duckdb.ConnectionException:  # the index's connection was closed: a new one
            cursors.pop(index, None)
            cur = None
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


_THREAD = threading.local()
_T = TypeVar("_T")


def _result(
    level: str,
    row: dict[str, Any],
    tags: list[str],
    include_all: bool,
    levels: list[str],
    base: str,
) -> dict[str, Any]:
    meta = json.loads(row["meta"])
    res = _pick(meta, tags, include_all, levels)
    wanted = set(tags)
    if include_all:
        wanted |= {t for t in _COMPUTED if any(_in_level(t, lv) for lv in levels)}
    study = row["StudyInstanceUID"]
    url = f"{base}/studies/{study}"
    # the study's counts and modalities, wherever the study's attributes are returned
    _put(res, wanted, "00201206", "IS", [row["study_series"]])
    _put(res, wanted, "00201208", "IS", [row["study_inst"]])
    _put(res, wanted, "00080061", "CS", sorted({m for m in (row["mods"] or []) if m}))
    if level in (SERIES, INSTANCE):
        _put(res, wanted, "00201209", "IS", [row["series_inst"]])
        url += f"/series/{row['SeriesInstanceUID']}"
    if level == INSTANCE:
        url += f"/instances/{row['SOPInstanceUID']}"
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
