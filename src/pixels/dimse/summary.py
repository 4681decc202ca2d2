"""C-FIND candidates at the PATIENT, STUDY and SERIES levels from the index's summaries.

A hospital archive's index (10M instances) answers a study search from its study
search table (``qs`` / ``qs_new``) in milliseconds, where grouping the per-instance
view ``inst`` takes seconds. These functions give C-FIND the same paths QIDO-RS
uses (:mod:`pixels.web.qido`):

- STUDY: QIDO's study search itself (:func:`pixels.web.qido._study_rows`), in its
  order (study date, newest first);
- SERIES: ``series_sum`` rows whose live groups (``grp``) pass the keys;
- PATIENT: live groups (``grp``) grouped by PatientID, with their studies' first
  instances (``study_sum``);
- IMAGE, when the query names its series: the instance rows of those series, read
  series by series as WADO-RS reads them (else the caller groups ``inst``).

The SQL narrows with the keys it can match exactly or more loosely (never missing an
entity that matches); :func:`pixels.dimse.query.find` then matches every key on the
entity's header (PS3.4 C.2.2.2), as for the other levels. Rows come a page at a time
(``limit``, ``offset``), so that a C-FIND stops reading at its cap.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from pixels.dimse.matching import Key, is_universal
from pixels.web import qido
from pixels.web.index import TableIndex

__all__ = ["image_rows", "patient_rows", "series_rows", "study_rows"]

#: C-FIND keys QIDO-RS matches in SQL: tag -> its QIDO keyword (:data:`qido.KEYS`).
_STUDY_KEYS = {
    "00100010": "PatientName",
    "00100020": "PatientID",
    "00100030": "PatientBirthDate",
    "00100040": "PatientSex",
    "0020000D": "StudyInstanceUID",
    "00080020": "StudyDate",
    "00080050": "AccessionNumber",
    "00081030": "StudyDescription",
}
_SERIES_KEYS = {"0020000E": "SeriesInstanceUID", "00080060": "Modality", "00200011": "SeriesNumber"}
_PATIENT_KEYS = ("00100010", "00100020", "00100030", "00100040")
_MODALITIES = "00080061"


def _value(kind: str, value: str) -> str | None:
    """The QIDO-RS value that selects every entity a C-FIND ``value`` matches (None:
    the key is matched on the header only)."""
    v = value.strip(" ")
    if kind == "date":
        lo, dash, hi = v.partition("-")
        parts = (lo, hi) if dash else (lo,)
        if any(p and (len(p) != 8 or not p.isdigit()) for p in parts) or not (lo or hi):
            return None
        return v
    if kind == "modalities":
        return None if "*" in v or "?" in v else v
    if kind == "pn":  # QIDO matches a name with "=" whole; C-FIND group by group
        return None if "=" in v else v
    if kind in ("uid", "int"):
        return v
    return None if "\\" in v else v  # text alternatives: matched on the header


def _qido_query(keys: list[Key], wanted: dict[str, str]) -> qido._Query:
    """A QIDO-RS query of the keys among ``wanted`` (tag -> keyword) it matches in SQL."""
    q = qido._Query()
    for key in keys:
        kw = wanted.get(key.tag)
        if kw is None or is_universal(key.value):
            continue
        spec = qido.KEYS[kw]
        value = _value(spec.kind, key.value)
        if value is None:
            continue
        try:
            cond, params = qido._condition(kw, spec, value)
        except HTTPException:  # a value QIDO refuses (a bad UID): matched on the header
            continue
        q.keys.append(kw)
        q.pairs.append((kw, value))
        if spec.kind == "modalities":
            if params:
                q.of_study.append(cond)
                q.study_params.extend(params)
        else:
            q.conds.append(cond)
            q.params.extend(params)
    return q


def study_rows(index: TableIndex, keys: list[Key], limit: int, offset: int) -> list[dict[str, Any]]:
    """Studies that may match ``keys``: QIDO-RS's study search, a page of them.

    Each row: ``k`` (StudyInstanceUID), ``path`` of its first instance, ``qmeta``,
    ``n_series``, ``n_inst``, ``n_studies`` (1) and ``mods``.
    """
    q = _qido_query(keys, {**_STUDY_KEYS, _MODALITIES: "ModalitiesInStudy"})
    q.limit, q.offset = limit, offset
    snap = index.current()
    rows = qido._study_rows(index, snap, q)[:limit]
    return [
        {
            "k": r["StudyInstanceUID"],
            "path": r["path"],
            "qmeta": r["qmeta"],
            "n_studies": 1,
            "n_series": r["study_series"],
            "n_inst": r["study_inst"],
            "mods": r["mods"],
        }
        for r in rows
    ]


def series_rows(
    index: TableIndex, keys: list[Key], limit: int, offset: int
) -> list[dict[str, Any]]:
    """Series that may match ``keys`` (``series_sum`` rows whose live groups pass them),
    in SeriesInstanceUID order; rows as :func:`study_rows` (counts of the series)."""
    q = _qido_query(keys, {**_STUDY_KEYS, **_SERIES_KEYS})
    where = " AND ".join(["n > 0", *q.conds])
    sql = (
        "SELECT c.SeriesInstanceUID AS k, c.first AS path, c.qmeta, 1 AS n_studies, "
        "1 AS n_series, c.n_inst, (SELECT list(DISTINCT Modality) FROM grp g WHERE "
        "g.SeriesInstanceUID = c.SeriesInstanceUID AND g.n > 0) AS mods FROM series_sum c "
        f"WHERE c.SeriesInstanceUID IN (SELECT SeriesInstanceUID FROM grp WHERE {where}) "
        "ORDER BY c.SeriesInstanceUID LIMIT ? OFFSET ?"
    )
    snap = index.current()
    return qido._rows(index, snap, sql, [*q.params, limit, offset])


def patient_rows(
    index: TableIndex, keys: list[Key], limit: int, offset: int
) -> list[dict[str, Any]]:
    """Patients (by PatientID) that may match ``keys``, grouped from the live groups
    (``grp``) and their studies' first instances (``study_sum``); in PatientID order."""
    q = _qido_query(keys, {t: _STUDY_KEYS[t] for t in _PATIENT_KEYS})
    # a patient is all its instances: one of its groups passing the keys makes it a
    # candidate (its header, that of its first instance, is matched after)
    having = f"HAVING bool_or({' AND '.join(q.conds)}) " if q.conds else ""
    sql = (
        "SELECT g.PatientID AS k, arg_min(s.first, s.first_sop) AS path, "
        "arg_min(s.qmeta, s.first_sop) AS qmeta, "
        "count(DISTINCT g.StudyInstanceUID) AS n_studies, "
        "count(DISTINCT g.SeriesInstanceUID) AS n_series, sum(g.n) AS n_inst, "
        "list(DISTINCT g.Modality) AS mods FROM grp g JOIN study_sum s ON s.sk = g.sk "
        f"WHERE g.n > 0 GROUP BY g.PatientID {having}ORDER BY k NULLS LAST LIMIT ? OFFSET ?"
    )
    snap = index.current()
    return qido._rows(index, snap, sql, [*q.params, limit, offset])


def image_rows(index: TableIndex, keys: list[Key]) -> list[dict[str, Any]] | None:
    """The instances of the series an IMAGE-level query names (its SeriesInstanceUID
    list), read series by series with their ``meta``, in SOPInstanceUID order; None
    when it names none (the caller groups ``inst``)."""
    series = next((k for k in keys if k.tag == "0020000E" and not is_universal(k.value)), None)
    uids = [u.strip() for u in series.value.split("\\") if u.strip()] if series else []
    if not uids or any("*" in u or "?" in u for u in uids):
        return None
    snap = index.current()
    pairs = qido._rows(
        index,
        snap,
        "SELECT StudyInstanceUID, SeriesInstanceUID FROM series_sum WHERE SeriesInstanceUID "
        f"IN ({', '.join('?' * len(uids))})",
        uids,
    )
    rows = []
    for pair in pairs:
        for r in snap.instance_rows(
            pair["StudyInstanceUID"], pair["SeriesInstanceUID"], None,
            "SOPInstanceUID, SOPClassUID, Modality, meta",
        ):  # fmt: skip
            rows.append(
                {
                    "k": r["SOPInstanceUID"],
                    "path": r["path"],
                    "meta": r["meta"],
                    "n_studies": 1,
                    "n_series": 1,
                    "n_inst": 1,
                    "mods": [r["Modality"]],
                    "classes": [r["SOPClassUID"]],
                }
            )
    rows.sort(key=lambda r: (r["k"] is None, r["k"] or ""))
    return rows
