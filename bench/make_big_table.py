"""Build a big catalog table (100k to 10M rows) without that many files on disk.

Each row is a real catalog row of a real DICOM file (pydicom's test files, cataloged
once by the real per-file code) with fresh, consistent identities: patients,
studies of 1-8 series, series of 1-1,000 instances, a mix of modalities, study
dates over 20 years, names, accession numbers. The header (``meta``) of every row
is the template's DICOM JSON with those values written in (Study / Series / SOP
Instance UIDs, Patient's Name and ID, dates, numbers, descriptions), the key
columns agree with it, and the rows are written through the table module's own
writer (:meth:`pixels.table.CatalogTable.append`), in commits of ``--commit``
rows. Every row is new by construction (fresh UIDs and paths), so each commit is
told that the table's files were checked (``checked=``): the identity look-up of a
commit's paths against every earlier file (random UIDs in the paths defeat the
writer's path-range pruning) made a 10M build quadratic. Memory stays flat: a
commit's rows are all that is held (peak RSS 1.68 GB at 1M; 1.72 and 2.93 GB at 10M in two
builds, the second on a faster host; not investigated).

Every row's ``path`` is unique (``{pool}/v/{study}/{series}/{sop}.dcm``, not on
disk); its ``local_path`` is the real file in ``{pool}/files/`` it was made from,
so WADO retrieves (instances, frames, bulk data) read real bytes (whose own UIDs
are the template's).

One series of exactly 500 CT instances is written first; its UIDs and other
facts go to ``{table}.json`` next to the table (the benchmark's look-ups).

Usage::

    python bench/make_big_table.py /work/bigdata/t1m --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from pixels.dicom.record import RecordOptions
from pixels.engines import worker
from pixels.schema import SCHEMA
from pixels.sources.local import local_ref
from pixels.table import CatalogTable


def _words(text: str) -> list[str]:
    return text.split()


#: Templates by modality, and how often each modality's series occur.
TEMPLATES: dict[str, tuple[str, float, tuple[int, int]]] = {
    # modality: (pydicom test file, share of series, instances per series (min, max))
    "CT": ("CT_small.dcm", 0.38, (20, 1000)),
    "MR": ("MR_small.dcm", 0.30, (10, 400)),
    "US": ("examples_ybr_color.dcm", 0.12, (1, 60)),
    "NM": ("JPEG2000.dcm", 0.08, (1, 120)),
    "SR": ("test-SR.dcm", 0.07, (1, 2)),
    "SEG": ("liver_1frame.dcm", 0.05, (1, 1)),
}

FAMILY = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Mueller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann "
    "Dubois Durand Lefebvre Moreau Laurent Simon Michel Rossi Russo Ferrari Esposito Bianchi "
    "Romano Colombo Ricci Yamada Tanaka Suzuki Watanabe Ito Nakamura Kobayashi Kato Kim Park "
    "Chen Wang Li Zhang Liu Yang Huang Zhao Wu Zhou Silva Santos Oliveira Souza Costa Pereira"
)
GIVEN = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony "
    "Betty Mark Sandra Donald Ashley Steven Emily Paul Kimberly Andrew Donna Joshua Michelle "
    "Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca "
    "Anna Lukas Sophie Jonas Marie Leon Emma Hiroshi Yuki Wei Mei Ana Joao Lucas Julia"
)
STUDY_DESC = {
    "CT": ["CT CHEST W/O CONTRAST", "CT ABDOMEN PELVIS W CONTRAST", "CT HEAD W/O", "CTA CHEST"],
    "MR": ["MRI BRAIN W/WO", "MRI KNEE LEFT", "MRI LUMBAR SPINE", "MR PROSTATE"],
    "US": ["US ABDOMEN COMPLETE", "US THYROID", "ECHO TTE"],
    "NM": ["NM BONE SCAN WHOLE BODY", "NM MYOCARDIAL PERFUSION"],
    "SR": ["REPORT"],
    "SEG": ["SEGMENTATION"],
}
SERIES_DESC = {
    "CT": ["AXIAL 1.25mm", "AXIAL 5mm", "CORONAL MPR", "SAGITTAL MPR", "SCOUT"],
    "MR": ["T1 AX", "T2 SAG", "FLAIR AX", "DWI", "T1 POST GAD"],
    "US": ["CINE", "STILLS"],
    "NM": ["WHOLE BODY ANT", "SPECT"],
    "SR": ["Structured Report"],
    "SEG": ["AI Segmentation"],
}
BODY = {"CT": "CHEST", "MR": "BRAIN", "US": "ABDOMEN", "NM": "WHOLEBODY", "SR": None, "SEG": None}

#: Tags whose values each generated row gets; written into the template's JSON.
VARYING = {
    "0020000D": "UI",  # StudyInstanceUID
    "0020000E": "UI",  # SeriesInstanceUID
    "00080018": "UI",  # SOPInstanceUID
    "00100010": "PN",  # PatientName
    "00100020": "LO",  # PatientID
    "00100030": "DA",  # PatientBirthDate
    "00100040": "CS",  # PatientSex
    "00080020": "DA",  # StudyDate
    "00080050": "SH",  # AccessionNumber
    "00081030": "LO",  # StudyDescription
    "0008103E": "LO",  # SeriesDescription
    "00200011": "IS",  # SeriesNumber
    "00200013": "IS",  # InstanceNumber
    "00200010": "SH",  # StudyID
    "00080090": "PN",  # ReferringPhysicianName
}
_MARK = "@@PIXELS{}@@"


def _template_pieces(meta: str) -> tuple[list[str], list[str]]:
    """``meta`` cut around the values of :data:`VARYING`: pieces and the tag between each two."""
    js = json.loads(meta)
    for tag, vr in VARYING.items():
        value: Any = {"Alphabetic": _MARK.format(tag)} if vr == "PN" else _MARK.format(tag)
        js[tag] = {"vr": vr, "Value": [value]}
    text = json.dumps(dict(sorted(js.items())), separators=(",", ":"))
    parts = re.split(r"@@PIXELS([0-9A-F]{8})@@", text)
    pieces, tags = parts[0::2], parts[1::2]
    return pieces, tags


class Templates:
    """Real catalog rows of the template files, with their metas cut into pieces."""

    def __init__(self, pool: Path):
        from pydicom.data import get_testdata_file

        files = pool / "files"
        files.mkdir(parents=True, exist_ok=True)
        self.modalities = list(TEMPLATES)
        refs = []
        for mod in self.modalities:
            name = TEMPLATES[mod][0]
            src = get_testdata_file(name, download=False)
            if src is None:
                raise SystemExit(f"pydicom test file {name} is missing")
            dst = files / name
            if not dst.exists():
                shutil.copyfile(src, dst)
            refs.append(local_ref(str(dst), os.stat(dst), name))
        batch = worker.run(refs, RecordOptions())
        self.rows = pa.Table.from_batches([batch])
        errors = [e for e in self.rows["error"].to_pylist() if e]
        if errors:
            raise SystemExit(f"template files did not catalog: {errors}")
        self.cut = [_template_pieces(m) for m in self.rows["meta"].to_pylist()]

    def meta(self, t: int, values: dict[str, str]) -> str:
        pieces, tags = self.cut[t]
        out = [pieces[0]]
        for tag, piece in zip(tags, pieces[1:], strict=True):
            out.append(json.dumps(values[tag])[1:-1])
            out.append(piece)
        return "".join(out)


def _uid(rng: random.Random) -> str:
    return "2.25." + str(rng.getrandbits(120))


def _dicom_date(d: date) -> str:
    return d.strftime("%Y%m%d")


class Generator:
    """Yields batches of rows: patients, studies, series, instances."""

    def __init__(self, templates: Templates, pool: Path, seed: int = 13):
        self.t = templates
        self.pool = pool
        self.rng = random.Random(seed)
        self.n_patients = 0
        self.n_studies = 0
        self.n_series = 0
        self.start = date(2006, 1, 1)
        self.days = 20 * 365
        self.now = datetime.now(UTC)

    def _series_size(self, mod: str) -> int:
        lo, hi = TEMPLATES[mod][2]
        if lo == hi:
            return lo
        # log-uniform: most series small, a few large
        return round(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))

    def _modality(self) -> str:
        r = self.rng.random()
        acc = 0.0
        for mod, (_, share, _) in TEMPLATES.items():
            acc += share
            if r < acc:
                return mod
        return "CT"

    def study(self, forced: tuple[str, int] | None = None) -> dict[str, Any]:
        """One study: its attributes and its series ``(modality, uid, n, number, desc)``."""
        rng = self.rng
        self.n_studies += 1
        if self.n_patients == 0 or rng.random() < 0.6:
            self.n_patients += 1
            self.patient = {
                "00100010": f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}",
                "00100020": f"PID{self.n_patients:08d}",
                "00100030": _dicom_date(date(1930, 1, 1) + timedelta(days=rng.randrange(80 * 365))),
                "00100040": rng.choice("MF"),
            }
        primary = forced[0] if forced else self._modality()
        n_series = 1 if forced else min(8, max(1, int(rng.expovariate(1 / 2.2)) + 1))
        d = self.start + timedelta(days=rng.randrange(self.days))
        study = dict(self.patient)
        study.update(
            {
                "0020000D": _uid(rng),
                "00080020": _dicom_date(d),
                "00080050": f"ACC{self.n_studies:09d}",
                "00081030": rng.choice(STUDY_DESC[primary]),
                "00200010": str(self.n_studies % 100000),
                "00080090": f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}^^Dr",
            }
        )
        series = []
        for k in range(n_series):
            mod = primary if k == 0 or rng.random() < 0.8 else self._modality()
            n = forced[1] if forced else self._series_size(mod)
            series.append((mod, _uid(rng), n, k + 1, rng.choice(SERIES_DESC[mod])))
        return {"attrs": study, "series": series, "date": d}

    def rows(self, study: dict[str, Any]) -> pa.Table:
        """The instance rows of one study."""
        rng = self.rng
        attrs = study["attrs"]
        idx, metas, cols = [], [], {k: [] for k in _COLS}
        for mod, se_uid, n, number, desc in study["series"]:
            t = self.t.modalities.index(mod)
            self.n_series += 1
            for i in range(1, n + 1):
                sop = _uid(rng)
                values = dict(attrs)
                values.update(
                    {
                        "0020000E": se_uid,
                        "00080018": sop,
                        "0008103E": desc,
                        "00200011": str(number),
                        "00200013": str(i),
                    }
                )
                idx.append(t)
                metas.append(self.t.meta(t, values))
                path = f"{self.pool}/v/{attrs['0020000D']}/{se_uid}/{sop}.dcm"
                cols["path"].append(path)
                cols["relative_path"].append(f"v/{attrs['0020000D']}/{se_uid}/{sop}.dcm")
                cols["SOPInstanceUID"].append(sop)
                cols["SeriesInstanceUID"].append(se_uid)
                cols["SeriesNumber"].append(number)
                cols["SeriesDescription"].append(desc)
                cols["InstanceNumber"].append(i)
                cols["BodyPartExamined"].append(BODY[mod])
        base = self.t.rows.take(pa.array(idx, pa.int32()))
        n = base.num_rows
        d = study["date"]
        birth = attrs["00100030"]
        set_cols: dict[str, pa.Array] = {
            "path": pa.array(cols["path"], pa.string()),
            "relative_path": pa.array(cols["relative_path"], pa.string()),
            "path_tags": pa.array([p.split("/") for p in cols["relative_path"]]),
            "meta": pa.array(metas, pa.string()),
            "PatientName": pa.array([attrs["00100010"]] * n, pa.string()),
            "PatientID": pa.array([attrs["00100020"]] * n, pa.string()),
            "PatientBirthDate": pa.array(
                [date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))] * n, pa.date32()
            ),
            "PatientSex": pa.array([attrs["00100040"]] * n, pa.string()),
            "StudyInstanceUID": pa.array([attrs["0020000D"]] * n, pa.string()),
            "StudyDate": pa.array([d] * n, pa.date32()),
            "AccessionNumber": pa.array([attrs["00080050"]] * n, pa.string()),
            "StudyDescription": pa.array([attrs["00081030"]] * n, pa.string()),
            "SeriesInstanceUID": pa.array(cols["SeriesInstanceUID"], pa.string()),
            "SeriesNumber": pa.array(cols["SeriesNumber"], pa.int64()),
            "SeriesDescription": pa.array(cols["SeriesDescription"], pa.string()),
            "BodyPartExamined": pa.array(cols["BodyPartExamined"], pa.string()),
            "SOPInstanceUID": pa.array(cols["SOPInstanceUID"], pa.string()),
            "InstanceNumber": pa.array(cols["InstanceNumber"], pa.int64()),
            "cataloged_at": pa.array([self.now] * n, SCHEMA.field("cataloged_at").type),
        }
        for name, arr in set_cols.items():
            i = base.schema.get_field_index(name)
            base = base.set_column(i, SCHEMA.field(name), arr.cast(SCHEMA.field(name).type))
        return base


_COLS = (
    "path",
    "relative_path",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "InstanceNumber",
    "BodyPartExamined",
)


def build(table_dir: Path, rows: int, *, pool: Path | None = None, commit: int = 100_000) -> dict:
    """Write about ``rows`` generated rows (whole studies) into a new table at ``table_dir``."""
    if table_dir.exists():
        raise SystemExit(f"{table_dir} exists: remove it first")
    pool = pool or table_dir.parent / "pool"
    t0 = time.perf_counter()
    templates = Templates(pool)
    gen = Generator(templates, pool)
    table = CatalogTable(str(table_dir))
    info: dict[str, Any] = {"rows": 0, "commits": 0}
    pending: list[pa.Table] = []
    n_pending = 0
    first = True
    while info["rows"] + n_pending < rows:
        study = gen.study(("CT", 500) if first else None)
        part = gen.rows(study)
        if first:
            se = study["series"][0]
            info["series500"] = {
                "study": study["attrs"]["0020000D"],
                "series": se[1],
                "instances": se[2],
            }
            first = False
        pending.append(part)
        n_pending += part.num_rows
        if n_pending >= commit:
            info["rows"] += table.append(pa.concat_tables(pending), checked=table.file_uris())
            info["commits"] += 1
            pending, n_pending = [], 0
            print(f"  {info['rows']:>10,} rows  {time.perf_counter() - t0:7.1f} s", flush=True)
    if pending:
        info["rows"] += table.append(pa.concat_tables(pending), checked=table.file_uris())
        info["commits"] += 1
    info.update(
        seconds=round(time.perf_counter() - t0, 1),
        patients=gen.n_patients,
        studies=gen.n_studies,
        series=gen.n_series,
        bytes=sum(f.stat().st_size for f in table_dir.rglob("*") if f.is_file()),
        files=len(table.file_uris()),
        pool=str(pool),
    )
    (table_dir.parent / f"{table_dir.name}.json").write_text(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table", type=Path, help="new table folder (keep it out of git)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--commit", type=int, default=100_000, help="rows per commit")
    ap.add_argument("--pool", type=Path, help="folder of the real files (default: next to table)")
    args = ap.parse_args(argv)
    info = build(args.table.resolve(), args.rows, pool=args.pool, commit=args.commit)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
