"""C-FIND (Patient Root and Study Root) and the instances a C-GET / C-MOVE retrieves.

Both are answered from the DICOMweb server's index of the catalog
(:class:`pixels.web.index.TableIndex`: the view ``inst``, one row per kept
instance with its key columns), never from the files:

- the keys that have a column of ``inst`` at or above the query's level narrow the
  instances in DuckDB (bound parameters only), which are grouped into the level's
  entities (patients by PatientID, studies, series, instances) with their counts,
  modalities and SOP classes;
- each entity's first instance's ``meta`` (DICOM JSON, read from the table) is then
  matched against every key (:mod:`pixels.dimse.matching`: PS3.4 C.2.2.2) and gives
  the values returned: the requested keys only, plus QueryRetrieveLevel and the
  SpecificCharacterSet they are written in (:mod:`pixels.dimse.charset`: the query's
  when they fit it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from pixels.dimse.charset import answer_charset, terms
from pixels.dimse.matching import Key, is_universal, json_values, matches
from pixels.dimse.summary import image_rows, patient_rows, series_rows, study_rows
from pixels.web.index import QMETA_TAGS, Snapshot, TableIndex

__all__ = [
    "LEVELS",
    "FindError",
    "InstanceFile",
    "find",
    "instances_for",
    "parse_identifier",
]

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
PATIENT, STUDY, SERIES, IMAGE = LEVELS

#: Columns of ``inst`` matched in SQL: tag -> (column, level rank, kind).
_COLUMNS: dict[str, tuple[str, int, str]] = {
    "00100010": ("PatientName", 0, "pn"),
    "00100020": ("PatientID", 0, "text"),
    "00100030": ("PatientBirthDate", 0, "date"),
    "00100040": ("PatientSex", 0, "text"),
    "0020000D": ("StudyInstanceUID", 1, "uid"),
    "00080020": ("StudyDate", 1, "date"),
    "00080050": ("AccessionNumber", 1, "text"),
    "00200010": ("StudyID", 1, "text"),
    "0020000E": ("SeriesInstanceUID", 2, "uid"),
    "00080060": ("Modality", 2, "text"),
    "00200011": ("SeriesNumber", 2, "int"),
    "00080018": ("SOPInstanceUID", 3, "uid"),
    "00080016": ("SOPClassUID", 3, "uid"),
    "00200013": ("InstanceNumber", 3, "int"),
}
#: The column naming each level's entities.
_ENTITY = {PATIENT: "PatientID", STUDY: "StudyInstanceUID", SERIES: "SeriesInstanceUID"}
_ENTITY[IMAGE] = "SOPInstanceUID"

_QR_LEVEL, _CHARSET = "00080052", "00080005"
_RETRIEVE_AE, _AVAILABILITY = "00080054", "00080056"
#: Attributes computed from the entity's instances: tag -> (VR, lowest level it is returned at).
_COMPUTED = {
    "00080061": ("CS", STUDY),  # ModalitiesInStudy
    "00080062": ("UI", STUDY),  # SOPClassesInStudy
    "00201200": ("IS", PATIENT),  # NumberOfPatientRelatedStudies
    "00201202": ("IS", PATIENT),  # NumberOfPatientRelatedSeries
    "00201204": ("IS", PATIENT),  # NumberOfPatientRelatedInstances
    "00201206": ("IS", STUDY),  # NumberOfStudyRelatedSeries
    "00201208": ("IS", STUDY),  # NumberOfStudyRelatedInstances
    "00201209": ("IS", SERIES),  # NumberOfSeriesRelatedInstances
}


class FindError(ValueError):
    """A query that cannot be answered: its status (``0xA900``, ``0xC000``...) and why."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _text(elem: DataElement) -> str:
    """An identifier element's value as query text (multiple values joined by ``\\``)."""
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


@dataclass
class Query:
    """A parsed C-FIND / C-GET / C-MOVE identifier."""

    level: str
    keys: list[Key]
    charset: str | None = None


def parse_identifier(identifier: Dataset, model: str = "STUDY") -> Query:
    """The level and keys of an identifier; :class:`FindError` when it cannot be used.

    ``model`` is ``PATIENT`` (Patient Root) or ``STUDY`` (Study Root: no PATIENT level).
    """
    try:
        raw = identifier.get("QueryRetrieveLevel", None)
        elements = list(identifier)
    except Exception as e:  # a data set that does not decode
        raise FindError(0xC000, f"the identifier cannot be decoded: {e}") from e
    level = str(raw or "").strip().upper()
    if level not in LEVELS:
        raise FindError(
            0xA900,
            f"QueryRetrieveLevel (0008,0052) {str(raw or '')[:16]!r} is not one of "
            + ", ".join(LEVELS),
        )
    if model == "STUDY" and level == PATIENT:
        raise FindError(0xA900, "the Study Root model has no PATIENT level")
    keys, charset = [], None
    for elem in elements:
        tag = f"{int(elem.tag):08X}"
        if tag == _QR_LEVEL or elem.tag.group == 0x0000 or elem.tag.element == 0:
            continue
        if tag == _CHARSET:
            charset = _text(elem)
            continue
        try:
            text = "" if elem.VR == "SQ" else _text(elem)
        except Exception as e:
            raise FindError(0xC000, f"key ({tag[:4]},{tag[4:]}) cannot be decoded: {e}") from e
        keys.append(Key(tag, elem.VR, text))
    return Query(level, keys, charset)


def _condition(kind: str, column: str, value: str) -> tuple[str, list[Any]] | None:
    """A SQL condition that every match passes (None: none narrows it safely)."""
    v = value.strip(" ")
    if kind == "uid":
        uids = [u.strip() for u in v.split("\\") if u.strip()]
        return f"{column} IN ({', '.join('?' * len(uids))})", list(uids)
    if kind == "int":
        try:
            nums = [int(x) for x in v.split("\\")]
        except ValueError:
            return None
        return f"{column} IN ({', '.join('?' * len(nums))})", list(nums)
    if kind == "date":
        if "*" in v or "?" in v or "\\" in v:
            return None
        digits = v.replace("-", "")
        if not digits.isdigit() or any(len(p) not in (0, 8) for p in v.split("-")):
            return None
        lo, dash, hi = v.partition("-")
        if not dash:
            return f"{column} = strptime(?, '%Y%m%d')::DATE", [v]
        conds, params = [], []
        if lo:
            conds.append(f"{column} >= strptime(?, '%Y%m%d')::DATE")
            params.append(lo)
        if hi:
            conds.append(f"{column} <= strptime(?, '%Y%m%d')::DATE")
            params.append(hi)
        return (" AND ".join(conds) or "TRUE"), params
    if "\\" in v:
        return None
    if kind == "pn":
        return None  # component groups and case: matched on the header
    if "*" in v or "?" in v:
        pattern = "".join(
            "\\" + c if c in "%_\\" else "%" if c == "*" else "_" if c == "?" else c for c in v
        )
        return f"rtrim({column}) LIKE ? ESCAPE '\\'", [pattern]
    return f"rtrim({column}) = ?", [v]


def _computed(tag: str, row: dict[str, Any]) -> list[Any]:
    if tag == "00080061":
        return sorted({m for m in row["mods"] or [] if m})
    if tag == "00080062":
        return sorted({c for c in row["classes"] or [] if c})
    return [
        {
            "00201200": row["n_studies"],
            "00201202": row["n_series"],
            "00201204": row["n_inst"],
            "00201206": row["n_series"],
            "00201208": row["n_inst"],
            "00201209": row["n_inst"],
        }[tag]
    ]


def _rank(level: str) -> int:
    return LEVELS.index(level)


#: Candidate rows read per page from the index's summaries.
_PAGE = 500


def find(
    snap: Snapshot,
    query: Query,
    ae_title: str,
    limit: int | None = None,
    index: TableIndex | None = None,
) -> Iterator[Dataset]:
    """The identifiers that answer a C-FIND ``query``, at most ``limit`` of them.

    With the ``index``, the PATIENT, STUDY and SERIES levels are answered from its
    summaries (:mod:`pixels.dimse.summary`: studies in QIDO-RS's order, newest first;
    patients and series in order of their key), read a page at a time until ``limit``
    answers are made; IMAGE level, and every level without ``index``, groups the
    instance rows of ``inst`` (in order of the entity key).
    """
    if index is None or query.level == IMAGE:
        rows = image_rows(index, query.keys) if index is not None else None
        if rows is None:
            rows = _inst_rows(snap, query)
        yield from _limited(_answers(snap, rows, query, ae_title), limit)
        return
    pages = {PATIENT: patient_rows, STUDY: study_rows, SERIES: series_rows}[query.level]

    def answers() -> Iterator[Dataset]:
        offset = 0
        while True:
            rows = pages(index, query.keys, _PAGE, offset)
            if any(k.tag == "00080062" for k in query.keys):
                _add_classes(index.current(), query.level, rows)
            yield from _answers(index.current(), rows, query, ae_title)
            if len(rows) < _PAGE:
                return
            offset += _PAGE

    yield from _limited(answers(), limit)


def _limited(answers: Iterator[Dataset], limit: int | None) -> Iterator[Dataset]:
    for sent, answer in enumerate(answers):
        if limit is not None and sent >= limit:
            return
        yield answer


def _add_classes(snap: Snapshot, level: str, rows: list[dict[str, Any]]) -> None:
    """SOPClassesInStudy (asked for): the SOP classes of each row's instances."""
    if not rows:
        return
    col = {PATIENT: "PatientID", STUDY: "StudyInstanceUID", SERIES: "SeriesInstanceUID"}[level]
    keys = [r["k"] for r in rows if r["k"] is not None]
    got = (
        {
            r["k"]: r["classes"]
            for r in snap.rows(
                f"SELECT {col} AS k, list(DISTINCT SOPClassUID) AS classes FROM inst "
                f"WHERE {col} IN ({', '.join('?' * len(keys))}) GROUP BY {col}",
                keys,
            )
        }
        if keys
        else {}
    )
    for r in rows:
        r["classes"] = got.get(r["k"], [])


def _inst_rows(snap: Snapshot, query: Query) -> list[dict[str, Any]]:
    """The query's entities grouped from the instance rows of ``inst``."""
    level, rank = query.level, _rank(query.level)
    conds: list[str] = []
    params: list[Any] = []
    for key in query.keys:
        spec = _COLUMNS.get(key.tag)
        if spec is None or spec[1] > rank or is_universal(key.value):
            continue
        made = _condition(spec[2], spec[0], key.value)
        if made is not None:
            conds.append(made[0])
            params.extend(made[1])
    entity = _ENTITY[level]
    where = ("WHERE " + " AND ".join(conds)) if conds else ""
    sql = (
        f"SELECT {entity} AS k, arg_min(path, SOPInstanceUID) AS path, NULL AS qmeta, "
        "count(*) AS n_inst, count(DISTINCT SeriesInstanceUID) AS n_series, "
        "count(DISTINCT StudyInstanceUID) AS n_studies, "
        "list(DISTINCT Modality) AS mods, list(DISTINCT SOPClassUID) AS classes "
        f"FROM inst {where} GROUP BY {entity} ORDER BY k NULLS LAST"
    )
    return snap.rows(sql, params)


def _answers(
    snap: Snapshot, rows: list[dict[str, Any]], query: Query, ae_title: str
) -> Iterator[Dataset]:
    """The answers of candidate ``rows`` that match every key (their headers read 200 at
    a time; a row's ``qmeta`` stands for its header when it holds every key's tag)."""
    header_tags = {k.tag for k in query.keys if k.tag not in _COMPUTED} | {_CHARSET}
    held = header_tags <= QMETA_TAGS
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        metas = {r["path"]: r["meta"] for r in chunk if r.get("meta") is not None}
        metas.update((r["path"], r["qmeta"]) for r in chunk if held and r.get("qmeta") is not None)
        todo = [r["path"] for r in chunk if r["path"] not in metas]
        if todo:
            metas.update(snap.metas(todo))
        for row in chunk:
            text = metas.get(row["path"])
            if text is None:
                continue
            answer = _answer(json.loads(text), row, query, ae_title)
            if answer is not None:
                yield answer


#: Attributes of a series or of an instance the index has no column for (PS3.4 C.6.1.1.4-5
#: keys and the General Series / Equipment / Image modules'): tag -> level rank. At a level
#: above theirs, one entity's first instance does not speak for the others.
_LOWER_LEVEL = dict.fromkeys(
    [
        "0008103E", "00080021", "00080031", "00180015", "00181030", "00200060", "00200052",
        "00400244", "00400245", "00400275", "00081010", "00081050", "00081070", "00080070",
        "00081090", "00181000",
    ],
    2,
) | dict.fromkeys(
    [
        "00080008", "00080012", "00080013", "00080022", "00080023", "00080032", "00080033",
        "00200012", "00200032", "00200037", "00201041", "00180050", "00280002", "00280004",
        "00280008", "00280010", "00280011", "00280100", "00280101", "00281050", "00281051",
    ],
    3,
)  # fmt: skip


def _lower(tag: str, rank: int) -> bool:
    """A key of a level below the query's (not matched, returned empty)."""
    spec = _COLUMNS.get(tag)
    if spec is not None:
        return spec[1] > rank
    below = _LOWER_LEVEL.get(tag)
    if below is not None:
        return below > rank
    computed = _COMPUTED.get(tag)
    return computed is not None and _rank(computed[1]) > rank


def _answer(
    meta: dict[str, Any], row: dict[str, Any], query: Query, ae_title: str
) -> Dataset | None:
    rank = _rank(query.level)
    out = Dataset()
    for key in query.keys:
        tag = key.tag
        if _lower(tag, rank):
            out.add(DataElement(int(tag, 16), key.vr, _empty(key.vr)))
            continue
        if tag in _COMPUTED:
            values = _computed(tag, row)
            if not matches(key, [str(v) for v in values]):
                return None
            vr = _COMPUTED[tag][0]
            out.add(DataElement(int(tag, 16), vr, values if len(values) != 1 else values[0]))
            continue
        if tag == _RETRIEVE_AE:
            out.add(DataElement(int(tag, 16), "AE", ae_title))
            continue
        if tag == _AVAILABILITY:
            out.add(DataElement(int(tag, 16), "CS", "ONLINE"))
            continue
        element = meta.get(tag)
        if not matches(key, json_values(element)):
            return None
        out.add(_element(tag, key.vr, element))
    out.QueryRetrieveLevel = query.level
    held = terms([str(v) for v in json_values(meta.get(_CHARSET))])
    charset = answer_charset(out, terms(query.charset), held)
    if charset or query.charset is not None:
        out.SpecificCharacterSet = charset[0] if len(charset) == 1 else charset or ""
    return out


def _empty(vr: str) -> Any:
    return [] if vr == "SQ" else None


def _element(tag: str, vr: str, element: dict[str, Any] | None) -> DataElement:
    """The entity's element ``tag`` (from its DICOM JSON), or an empty one."""
    if element and "BulkDataURI" not in element and "InlineBinary" not in element:
        try:
            ds = Dataset.from_json({tag: element})
            return ds[int(tag, 16)]
        except Exception:
            pass
    return DataElement(int(tag, 16), (element or {}).get("vr", vr), _empty(vr))


@dataclass(frozen=True)
class InstanceFile:
    """A catalog row to send by C-STORE: its file and what the association needs."""

    row: dict[str, Any]
    sop_class: str
    sop_instance: str
    transfer_syntax: str


#: Catalog columns that open a row's file (:meth:`pixels.sources.ref.FileRef.from_row`).
FILE_COLUMNS = (
    "path, modificationTime, length, original_path, relative_path, local_path, extension, "
    "path_tags, version_tag, SOPClassUID, SOPInstanceUID, TransferSyntaxUID"
)


def instances_for(snap: Snapshot, query: Query) -> list[InstanceFile]:
    """The instances a C-GET / C-MOVE identifier names (unique keys of its level and
    above), in study, series and instance order."""
    rank = _rank(query.level)
    conds: list[str] = []
    params: list[Any] = []
    for key in query.keys:
        spec = _COLUMNS.get(key.tag)
        if spec is None or spec[1] > rank or is_universal(key.value):
            continue
        if spec[2] not in ("uid", "text") or spec[0] not in (*_ENTITY.values(),):
            continue
        made = _condition("uid", spec[0], key.value)
        if made is not None:
            conds.append(made[0])
            params.extend(made[1])
    unique = _ENTITY[query.level]
    if not any(unique in c for c in conds):
        raise FindError(0xA900, f"the identifier has no {unique} for the {query.level} level")
    pairs = snap.rows(
        "SELECT DISTINCT StudyInstanceUID, SeriesInstanceUID FROM inst WHERE "
        + " AND ".join(conds)
        + " ORDER BY 1, 2",
        params,
    )
    sops = None
    if query.level == IMAGE:
        key = next(k for k in query.keys if k.tag == "00080018")
        sops = {u.strip() for u in key.value.split("\\") if u.strip()}
    out = []
    for pair in pairs:
        for row in snap.instance_rows(
            pair["StudyInstanceUID"], pair["SeriesInstanceUID"], None, FILE_COLUMNS
        ):
            if sops is not None and row["SOPInstanceUID"] not in sops:
                continue
            out.append(
                InstanceFile(
                    row,
                    row["SOPClassUID"] or "",
                    row["SOPInstanceUID"] or "",
                    row["TransferSyntaxUID"] or "1.2.840.10008.1.2.1",
                )
            )
    return out
