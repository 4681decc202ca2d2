"""De-identify one DICOM file: bytes (or a pydicom Dataset) in, de-identified bytes out.

:func:`deidentify_file` is a pure function of the input, the key and the options (no
engine, no table, no clock): the same input, key and options give the same output bytes,
in any process, in any run. It applies :data:`pixels.deid.profile.TABLE` recursively
into every sequence, replaces UIDs, Patient ID and Patient's Name with the key's
mappings, shifts dates by the patient's offset when asked, removes private elements
(but for the safe list when asked), and refuses or blacks out pixel data that may show
burned-in text (:mod:`pixels.deid.pixelclean`).

The input is checked first with :func:`pixels.dicom.meta.read_header`, which refuses
truncated and corrupt files naming the element (pydicom alone reads a cut file without
a word); anything the walk cannot clean raises :class:`~pixels.errors.DeidError` naming
the file and the tag. Nothing half-cleaned is ever returned.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> from pixels.deid import DeidKey, deidentify_file
>>> res = deidentify_file(open(get_testdata_file("CT_small.dcm"), "rb").read(),
...                       DeidKey(bytes(32)), path="CT_small.dcm")
>>> res.status, res.sop_uid.startswith("2.25.")
('written', True)
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pixels.deid.dates import shift_da, shift_dt
from pixels.deid.endian import swap_words
from pixels.deid.graphics import (
    Identity,
    black_out_overlays,
    fit_overlays,
    identity_of,
    kept_overlay_groups,
    overlay_action,
)
from pixels.deid.iod import action_for
from pixels.deid.keys import DeidKey
from pixels.deid.pixelclean import (
    PIXEL_KEYWORDS,
    SUSPECT_SETS,
    BlackoutRule,
    black_out,
    burned_in_reason,
    clear_embedded_overlays,
    matching_rule,
    trim_native_pixel_data,
)
from pixels.deid.private import remove_private
from pixels.deid.profile import (
    DEID_METHOD_CODES,
    STANDARD,
    Option,
    cleaned_action,
    resolve,
    rule_for,
)
from pixels.deid.streams import strip_stream_metadata
from pixels.dicom import codecs
from pixels.errors import DeidError, DicomReadError, PixelsError

__all__ = ["BURNED_IN_PREFIX", "DeidOptions", "DeidResult", "deidentify_dataset", "deidentify_file"]

#: How the reason of a file skipped for burned-in text begins (the rest names the rule).
BURNED_IN_PREFIX = "possible burned-in text"
_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_ISSUER = 0x00100021
#: UI elements that name a class, syntax or scheme, never an instance: kept.
_KEEP_UI_SUFFIXES = ("ClassUID", "SyntaxUID", "ClassUIDInFile", "SyntaxUIDInFile")
_KEEP_UI = frozenset({"CodingSchemeUID", "ContextUID", "MappingResourceUID"})
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY = {
    "PN": "ANONYMIZED",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000D",
    "IS": "0",
    "DS": "0",
}
#: Inside a plain-``D`` sequence, unlisted values of these VRs become dummies...
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "UR", "PN", "AE"})
#: ...but for the coded-entry attributes (Code Sequence Macro), kept (codes are vocabulary)...
_CODE_KEYWORDS = frozenset(
    {
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ContextIdentifier",
        "ContextGroupVersion",
        "ContextGroupLocalVersion",
        "MappingResource",
        "MappingResourceName",
    }
)
#: The sequences Clean Structured Content keeps (``C`` in its column): items cleaned in place.
_STRUCTURED_SEQUENCES = frozenset(
    {"ContentSequence", "AcquisitionContextSequence", "SpecimenPreparationSequence"}
)
#: Free text the Clean Graphics Option keeps in annotations unless it holds an identity.
_GRAPHIC_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})
#: ...except under these sequences, whose codes identify a person.
_IDENTITY_CODE_SEQUENCES = frozenset({"PersonIdentificationCodeSequence"})
#: URLs and URIs that name a code system, not a place: kept (every other one is removed,
#: since a URL names a host and often the original instance, e.g. Retrieve URL).
_CODE_URLS = frozenset({"CodingSchemeURL", "URNCodeValue"})
#: Free-text values of content items and annotations: a dummy wherever they are (in a plain-D
#: sequence, e.g. Content Sequence, they would be anyway; elsewhere, e.g. Protocol Context
#: Sequence or Waveform Annotation Sequence, they were kept).
_FREE_TEXT = frozenset({"TextValue", "UnformattedTextValue"})
#: Free-text VRs of unlisted comments (removed like the table's comments).
_COMMENT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
#: The VRs whose kept values must match their format (PS3.5 6.2), else they are emptied.
_FORMATS = {
    "IS": re.compile(r"[+-]?\d{1,12}"),
    "DS": re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"),
    "TM": re.compile(
        r"(\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?)?(-(\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?)?)?"
    ),
    "AS": re.compile(r"\d{3}[DWMY]"),
    "UI": re.compile(r"\d+(\.\d+)*"),
}
_NUMERIC = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
_BINARY = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})


@dataclass(frozen=True)
class DeidOptions:
    """What :func:`deidentify_file` does beyond the Basic Profile.

    Parameters
    ----------
    options : frozenset of Option
        Profile options switched on (:class:`pixels.deid.profile.Option`).
    keep_descriptors : frozenset of str
        With :attr:`Option.CLEAN_DESCRIPTORS`: keywords of descriptors (``SeriesDescription``)
        the user has checked hold no identity; they are kept, every other one is removed.
    blackout : tuple of BlackoutRule
        Rectangles to black out; a file with possible burned-in text is written only when a
        rule matches it.
    burned_in_suspects : str
        Which images are suspect of burned-in text when Burned In Annotation does not say NO:
        ``"conservative"`` (default: projection radiography, fluoroscopy, angiography,
        ultrasound, secondary capture, visible light) or ``"narrow"`` (ultrasound and
        secondary capture only, the earlier default); see :mod:`pixels.deid.pixelclean`.
    """

    options: frozenset[Option] = frozenset()
    keep_descriptors: frozenset[str] = frozenset()
    blackout: tuple[BlackoutRule, ...] = ()
    burned_in_suspects: str = "conservative"

    def __post_init__(self) -> None:
        if {Option.RETAIN_DATES, Option.RETAIN_FULL_DATES} <= self.options:
            raise ValueError(
                "de-identification options retain-dates and retain-full-dates exclude each "
                "other: dates are either shifted or kept"
            )
        if self.burned_in_suspects not in SUSPECT_SETS:
            raise ValueError(
                f"unknown burned-in suspect set {self.burned_in_suspects!r}; valid: "
                + ", ".join(SUSPECT_SETS)
            )

    @classmethod
    def of(
        cls,
        *options: Option | str,
        keep_descriptors: tuple[str, ...] | frozenset[str] = (),
        blackout: tuple[BlackoutRule, ...] = (),
        burned_in_suspects: str = "conservative",
    ) -> DeidOptions:
        """``DeidOptions.of("retain-dates", Option.RETAIN_DEVICE_IDENTITY)``."""
        opts = frozenset(o if isinstance(o, Option) else Option.parse(o) for o in options)
        return cls(opts, frozenset(keep_descriptors), tuple(blackout), burned_in_suspects)

    def describe(self) -> str:
        """A stable text of the options (in the audit, in DeidentificationMethod)."""
        names = sorted(o.value for o in self.options)
        if self.keep_descriptors:
            names.append("keep=" + ",".join(sorted(self.keep_descriptors)))
        if self.blackout:
            text = repr(self.blackout).encode()
            names.append(
                f"blackout-rules={len(self.blackout)}:{hashlib.sha256(text).hexdigest()[:12]}"
            )
        if self.burned_in_suspects != "conservative":  # the default says nothing (older audits)
            names.append(f"burned-in-suspects={self.burned_in_suspects}")
        return ";".join(names) or "basic"


@dataclass(frozen=True)
class DeidResult:
    """What :func:`deidentify_file` did to one file.

    Attributes
    ----------
    path : str
        The source, as given (for messages and the audit).
    status : str
        ``"written"`` (``data`` holds the file) or ``"skipped"`` (``reason`` says why).
    reason : str or None
        Why the file was skipped (possible burned-in text and no blackout rule); for a
        file written, what was removed that its options would have kept, naming the
        element (an overlay plane whose bitmap cannot be read), else None.
    data : bytes or None
        The de-identified DICOM file (Part 10, with file meta).
    study_uid, series_uid, sop_uid : str or None
        The new UIDs (what the output is filed under).
    transfer_syntax : str or None
        The output's transfer syntax.
    actions : dict of str to int
        How many elements each action touched: ``removed``, ``emptied``, ``dummy``,
        ``uid``, ``pseudonym``, ``shifted``, ``kept_private``, ``blacked_out``,
        ``overlay_bits_cleared``, ``overlay_planes_kept``, ``overlay_planes_removed``,
        ``overlay_bytes_dropped`` and ``overlay_bits_blacked_out`` (Clean Graphics Option), ``pixel_bytes_dropped``, ``stream_segments_removed``,
        ``stream_bytes_dropped`` (after a compressed frame's end of codestream),
        ``words_swapped`` (big endian binary values written little endian:
        :mod:`pixels.deid.endian`).
    """

    path: str
    status: str
    reason: str | None = None
    data: bytes | None = field(default=None, repr=False)
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    transfer_syntax: str | None = None
    actions: Mapping[str, int] = field(default_factory=dict)


_QUOTED = re.compile(r"(?<!\w)b?'(?:[^'\\]|\\.)*'" + r'|(?<!\w)b?"(?:[^"\\]|\\.)*"')


def error_text(e: BaseException) -> str:
    """A library error's type and message with every quoted value cut out.

    pydicom quotes the offending value in its messages (``received b'Smith^John' with
    length 10``); a de-identification error goes to the audit and the console, and must
    name the element, never repeat what it held.
    """
    return f"{type(e).__name__}: {_QUOTED.sub('<value>', str(e))}"


def _tag(t: int) -> str:
    return f"({t >> 16:04X},{t & 0xFFFF:04X})"


class _Walk:
    def __init__(self, key: DeidKey, opts: DeidOptions, path: str, patient: str):
        self.key = key
        self.opts = opts
        self.on = opts.options
        self.path = path
        self.patient = patient
        self.days = key.date_offset_days(patient)
        self.counts: Counter[str] = Counter()
        #: With the Clean Graphics Option: the source's identity, the overlay planes kept.
        self.identity = Identity(frozenset())
        self.overlays: frozenset[int] = frozenset()
        #: The object's SOP Class UID: what its IOD requires (:mod:`pixels.deid.iod`).
        self.sop_class = ""

    # ------------------------------------------------------------------ values
    def _uid(self, value: Any) -> Any:
        def one(v: str) -> str:
            v = str(v).strip().rstrip("\x00")
            return v if not v or v.startswith("1.2.840.10008.") else self.key.uid(v)

        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            return [one(v) for v in value]
        return one(value) if value not in (None, "") else value

    def _shift(self, elem: Any) -> Any:
        text = elem.value
        if isinstance(text, list | tuple) or type(text).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in text)
        text = str(text or "").strip()
        if not text:
            return text
        return shift_da(text, self.days) if elem.VR == "DA" else shift_dt(text, self.days)

    @staticmethod
    def _empty(elem: Any) -> Any:
        if elem.VR == "SQ":
            return []
        if elem.VR in _BINARY:
            return b""
        if elem.VR in _NUMERIC:
            return None
        return ""

    @staticmethod
    def _dummy(elem: Any) -> Any:
        if elem.VR in _BINARY:
            return b"\x00" * 8  # not empty (a D value has a length), whole words of any VR
        if elem.VR in _NUMERIC:
            return 0
        return _DUMMY.get(elem.VR, _DUMMY_TEXT)

    # ------------------------------------------------------------------ walking
    def clean(self, ds: Any, depth: int = 0, dummy: str = "") -> None:
        """Clean ``ds`` in place; ``dummy`` is ``"text"`` or ``"all"`` inside a plain-D sequence."""
        removed, kept = remove_private(ds, keep_safe=Option.RETAIN_SAFE_PRIVATE in self.on)
        if removed:
            self.counts["removed"] += removed
        if kept:
            self.counts["kept_private"] += kept
        for tag in list(ds.keys()):
            t = int(tag)
            group, el = t >> 16, t & 0xFFFF
            if group & 1:
                continue  # kept safe private element (the others are gone)
            overlay = 0x6000 <= group <= 0x60FF
            kept_overlay = overlay and depth == 0 and group in self.overlays
            if (
                el == 0
                or group in (0, 2)
                or 0x5000 <= group <= 0x50FF
                or (overlay and not kept_overlay)
            ):
                # group lengths, command elements, file meta elements outside the file meta
                # (it is written anew: a Source AE Title in the body or an item is no meta),
                # curves and overlays (but for those Clean Graphics keeps)
                del ds[tag]
                self.counts["removed"] += 1
                continue
            try:
                elem = ds[tag]  # converts a raw element: may fail on bad values
                if kept_overlay:
                    self._apply(ds, elem, overlay_action(elem, self.identity), depth, dummy)
                else:
                    self._element(ds, elem, t, depth, dummy)
            except PixelsError:
                raise
            except Exception as e:
                raise DeidError(
                    f"element {_tag(t)} cannot be de-identified: {error_text(e)}",
                    self.path or None,
                ) from e

    def _element(self, ds: Any, elem: Any, t: int, depth: int, dummy: str) -> None:
        rule = rule_for(t)
        is_sq = elem.VR == "SQ"
        if t == _PATIENT_ID:
            # the same identity as the name and the date offset; a nested Patient ID (another
            # patient, e.g. in a referenced request) gets its own, by the same formula
            elem.value = self.key.patient_id(self.patient if depth == 0 else _patient_identity(ds))
            self.counts["pseudonym"] += 1
            return
        if t == _PATIENT_NAME:
            elem.value = self.key.patient_name(self.patient) if depth == 0 else ""
            self.counts["pseudonym" if depth == 0 else "emptied"] += 1
            return
        structured = self._structured(elem) if dummy == "structured" and not is_sq else None
        if structured is not None:
            act = structured  # a content item's date, time or name: cleaned, not a dummy
        elif rule is not None:
            chosen = rule.action(self.on)
            act = resolve(chosen, is_sq)
            if depth == 0:  # what the IOD requires: a dummy, not removed (never the original)
                act = action_for(self.sop_class, t, act, is_sq)
            if act == "C" and is_sq and rule.keyword in _STRUCTURED_SEQUENCES:
                act, dummy = "K", "structured"  # Clean Structured Content: keep the tree
            elif act == "C" and is_sq and rule.keyword == "GraphicAnnotationSequence":
                # Clean Graphics: keep text that names no one (but inside a plain-D sequence,
                # whose text is all dummies, the annotations' too)
                act, dummy = "K", "graphics" if dummy in ("", "graphics") else dummy
            elif act == "C":
                act = self._clean_action(elem, rule.keyword, resolve(cleaned_action(rule), is_sq))
            if is_sq and chosen == "D":  # a dummy sequence: its items' text becomes dummies
                # (inside annotations too: a Content Sequence in one is no annotation text)
                dummy = (
                    "all"
                    if rule.keyword in _IDENTITY_CODE_SEQUENCES
                    else "text"
                    if dummy in ("", "graphics")
                    else dummy
                )
        elif (
            dummy == "graphics"
            and elem.VR in _GRAPHIC_TEXT_VRS
            and elem.keyword not in _CODE_KEYWORDS
        ):
            act = "D" if self.identity.holds(elem.value) else "K"
        elif (
            dummy
            and elem.VR in _TEXT_VRS
            and (dummy == "all" or elem.keyword not in _CODE_KEYWORDS)
        ):
            act = "D"
        else:
            act = self._default(elem)
        self._apply(ds, elem, act, depth, dummy)

    def _structured(self, elem: Any) -> str | None:
        """The action on a value inside cleaned structured content, or None for the usual one.

        Dates are shifted (kept with full dates), times kept (whole-day offsets), names given
        the key's pseudonym; the rest (TEXT a dummy, UIDREF replaced, codes and numbers kept)
        is what the walk does anyway in a plain-D sequence.
        """
        if elem.VR in ("DA", "DT"):
            return "K" if Option.RETAIN_FULL_DATES in self.on else "C"
        if elem.VR == "TM":
            return "K"
        if elem.VR == "PN":
            return "P"
        return None

    def _clean_action(self, elem: Any, keyword: str, basic: str) -> str:
        if elem.VR in ("DA", "DT"):
            return "C"
        if elem.VR == "TM":
            return "K"  # whole-day offsets leave times of day as they are
        return "K" if keyword in self.opts.keep_descriptors else basic

    def _default(self, elem: Any) -> str:
        from pydicom.datadict import dictionary_VR

        vr = elem.VR
        kw = elem.keyword or ""
        if vr == "UN" or not kw:
            # a public tag the dictionary cannot name (a newer edition's, a vendor's in an even
            # group), whatever VR an explicit file gives it: its meaning cannot be judged
            return "X"
        if vr in _BINARY and not _BINARY & set(dictionary_VR(int(elem.tag)).split(" or ")):
            # bytes where the dictionary says text or numbers (an explicit file's VR, e.g.
            # OB for Graphic Annotation Units): what they say cannot be checked
            return "X"
        if vr == "PN" or kw in _FREE_TEXT:
            return "D"  # a person's name the table does not list (Evaluator Name...), free text
        if vr == "UR":
            return "K" if kw in _CODE_URLS else "X"
        if "Comment" in kw and vr in _COMMENT_VRS:
            # free text the table does not list (Comments on the Scheduled Procedure Step...):
            # removed like the table's comments, kept only as a descriptor the user names
            named = Option.CLEAN_DESCRIPTORS in self.on and kw in self.opts.keep_descriptors
            return "K" if named else "X"
        if vr == "UI":
            if kw.endswith(_KEEP_UI_SUFFIXES) or kw in _KEEP_UI or Option.RETAIN_UIDS in self.on:
                return "K"
            return "U"
        if vr in ("DA", "DT", "TM"):
            if Option.RETAIN_FULL_DATES in self.on:
                return "K"
            if Option.RETAIN_DATES in self.on:
                return "K" if vr == "TM" else "C"
            return "X"
        return "K"

    def _apply(self, ds: Any, elem: Any, act: str, depth: int, dummy: str) -> None:
        if act == "X":
            del ds[elem.tag]
            self.counts["removed"] += 1
        elif act == "Z":
            elem.value = self._empty(elem)
            self.counts["emptied"] += 1
        elif act == "D" and elem.VR == "UI":  # a dummy UID: the key's, as valid as any
            elem.value = self._uid(elem.value) or self.key.uid(_tag(int(elem.tag)))
            self.counts["uid"] += 1
        elif act == "D":
            elem.value = self._dummy(elem)
            self.counts["dummy"] += 1
        elif act == "U":
            elem.value = self._uid(elem.value)
            self.counts["uid"] += 1
        elif act == "P":  # another person's name in structured content: the key's pseudonym
            value = elem.value
            multi = isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
            names = [str(v) for v in (value if multi else [value]) if str(v or "").strip()]
            elem.value = (
                [self.key.person_name(v) for v in names]
                if multi
                else (self.key.person_name(names[0]) if names else "")
            )
            self.counts["pseudonym"] += 1
        elif act == "C":
            try:
                elem.value = self._shift(elem)
                self.counts["shifted"] += 1
            except ValueError:
                elem.value = ""  # not a date: nothing to keep
                self.counts["emptied"] += 1
        elif act == "K":
            if elem.VR == "SQ":
                for item in elem.value:
                    self.clean(item, depth + 1, dummy)
            elif elem.VR in _FORMATS and not _well_formed(elem):
                # a kept number, time, age or UID holding something else (a name in Instance
                # Number): nothing of it can be kept
                elem.value = self._empty(elem)
                self.counts["emptied"] += 1
        else:  # pragma: no cover - the table is checked at import
            raise DeidError(f"unknown action {act!r} for {_tag(int(elem.tag))}", self.path or None)


def _well_formed(elem: Any) -> bool:
    """Whether every value of ``elem`` (IS, DS, TM, AS or UI) matches its VR's format."""
    value = elem.value
    if value is None or value == "":
        return True
    multi = isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
    pattern = _FORMATS[elem.VR]
    for v in value if multi else [value]:
        text = (v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)).strip(" \x00")
        if text and not pattern.fullmatch(text):
            return False
    return True


def _patient_identity(ds: Any) -> str:
    """What makes a patient one patient for the key: Patient ID and issuer, else name and birth."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return f"id:{pid}^{str(ds.get('IssuerOfPatientID', '') or '').strip()}"
    name = str(ds.get("PatientName", "") or "").strip()
    birth = str(ds.get("PatientBirthDate", "") or "").strip()
    return f"name:{name}^{birth}"


def _input_syntax(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts:
        return ts
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        return codecs.EXPLICIT_BE
    return codecs.IMPLICIT_LE if implicit else codecs.EXPLICIT_LE


def _read(source: bytes | BinaryIO | Any, path: str) -> Any:
    from pydicom import dcmread
    from pydicom.dataset import Dataset

    from pixels.dicom.frames import index_from_header
    from pixels.dicom.meta import read_header

    if isinstance(source, Dataset):
        return copy.deepcopy(source)
    data = source if isinstance(source, bytes | bytearray | memoryview) else source.read()
    fp = io.BytesIO(data)
    header = read_header(fp, path=path)  # DicomReadError names file and tag
    if header.problem:
        raise DeidError(header.problem, path or None)
    if header.trailing:
        raise DeidError(header.trailing, path or None)
    # encapsulated pixel data cut before its sequence delimiter: pydicom reads the file as
    # an empty data set (with a warning naming no file), which looked like a file without
    # a SOP Instance UID; the frame index names the fragment where it ends. Its other
    # complaints (a wrong Basic Offset Table...) are the pixel walk's to handle, as before.
    model = header.model if header.model is not None else json.loads(header.meta)
    try:
        index_from_header(fp, model, path=path, transfer_syntax=header.transfer_syntax)
    except DicomReadError as e:
        if e.reason.startswith("truncated"):
            raise
    try:
        return dcmread(io.BytesIO(data), force=True)
    except Exception as e:
        raise DeidError(f"not a readable DICOM file: {error_text(e)}", path or None) from e


def _method(ds: Any, opts: DeidOptions, pixels_cleaned: bool) -> None:
    from pydicom.dataset import Dataset

    from pixels.version import __version__

    used = sorted(o.value for o in opts.options)
    if pixels_cleaned:
        used.append("clean-pixel-data")
    ds.PatientIdentityRemoved = "YES"
    # LO holds 64 characters: one value per part (VM 1-n)
    ds.DeidentificationMethod = [f"Pixels {__version__}", STANDARD, "Basic Profile", *used]
    items = []
    for name in ["basic", *used]:
        value, meaning = DEID_METHOD_CODES[name]
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = (
        "MODIFIED"
        if Option.RETAIN_DATES in opts.options
        or (
            Option.CLEAN_STRUCTURED_CONTENT in opts.options
            and Option.RETAIN_FULL_DATES not in opts.options
        )
        else "UNMODIFIED"
        if Option.RETAIN_FULL_DATES in opts.options
        else "REMOVED"
    )


def deidentify_dataset(
    ds: Any, key: DeidKey, options: DeidOptions | None = None, *, path: str = ""
) -> tuple[Any, DeidResult]:
    """De-identify a pydicom Dataset **in place**; see :func:`deidentify_file`.

    Returns the dataset (with new file meta) and the result (``data`` is None: the
    caller writes it, or uses :func:`deidentify_file`). A skipped file is returned
    unchanged.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

    opts = options or DeidOptions()
    notes: tuple[str, ...] = ()
    ts = _input_syntax(ds)
    rule = matching_rule(ds, opts.blackout)
    reason = burned_in_reason(ds, opts.burned_in_suspects)
    if reason and rule is None:
        return ds, DeidResult(path, "skipped", reason=f"{BURNED_IN_PREFIX}: {reason}")
    walk = _Walk(key, opts, path, _patient_identity(ds))
    if Option.CLEAN_GRAPHICS in opts.options:  # read before anything is cleaned
        walk.identity = identity_of(ds, opts.options)
        walk.overlays, notes = kept_overlay_groups(ds, rule is not None, ts == codecs.EXPLICIT_BE)
        if notes:
            walk.counts["overlay_planes_removed"] += len(notes)
    overlays = clear_embedded_overlays(ds, ts, path=path)  # before the 60xx groups go
    trailing = trim_native_pixel_data(ds, ts)
    segments, after_end = strip_stream_metadata(ds, ts, path=path)
    sop_class = str(
        ds.get("SOPClassUID", "")
        or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", "")
        or ""
    )
    walk.sop_class = sop_class
    walk.clean(ds)
    if ts == codecs.EXPLICIT_BE:  # written little endian: words of binary values swapped
        swapped = swap_words(ds, skip=PIXEL_KEYWORDS)
        if swapped:
            walk.counts["words_swapped"] += swapped
    if overlays:
        walk.counts["overlay_bits_cleared"] += overlays
    if trailing:
        walk.counts["pixel_bytes_dropped"] += trailing
    if segments:
        walk.counts["stream_segments_removed"] += segments
    if after_end:
        walk.counts["stream_bytes_dropped"] += after_end
    if "SOPInstanceUID" not in ds or not str(ds.SOPInstanceUID or ""):
        raise DeidError(
            "(0008,0018) SOP Instance UID is missing: no name for the output", path or None
        )
    cleaned = False
    has_pixels = any(kw in ds for kw in PIXEL_KEYWORDS)
    if has_pixels and (rule is not None or ts == codecs.EXPLICIT_BE):
        rects = rule.rectangles if rule is not None else ()
        ts = black_out(ds, rects, ts, path=path)
        if rule is not None:
            cleaned = True
            ds.BurnedInAnnotation = "NO"
            walk.counts["blacked_out"] += len(rects)
    elif ts == codecs.EXPLICIT_BE:
        ts = codecs.EXPLICIT_LE
    if walk.overlays:
        walk.counts["overlay_planes_kept"] += len(walk.overlays)
        cut = fit_overlays(ds, walk.overlays)
        if cut:
            walk.counts["overlay_bytes_dropped"] += cut
        if rule is not None and rule.rectangles:
            bits = black_out_overlays(ds, walk.overlays, rule.rectangles)
            walk.counts["overlay_bits_blacked_out"] += bits
    _method(ds, opts, cleaned)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(str(ds.SOPInstanceUID))
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PIXELS_DEID"
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    result = DeidResult(
        path,
        "written",
        reason="; ".join(notes) or None,
        study_uid=str(ds.get("StudyInstanceUID", "") or "") or None,
        series_uid=str(ds.get("SeriesInstanceUID", "") or "") or None,
        sop_uid=str(ds.SOPInstanceUID),
        transfer_syntax=ts,
        actions=dict(sorted(walk.counts.items())),
    )
    return ds, result


def deidentify_file(
    source: bytes | BinaryIO | Any,
    key: DeidKey,
    options: DeidOptions | None = None,
    *,
    path: str = "",
) -> DeidResult:
    """De-identify one DICOM file.

    Parameters
    ----------
    source : bytes, binary file or pydicom Dataset
        The file (a Dataset is copied, never changed).
    key : DeidKey
        The secret behind UIDs, pseudonyms and date offsets.
    options : DeidOptions, optional
        Profile options, descriptors to keep, blackout rules (default: Basic Profile).
    path : str
        Named in errors and in the result.

    Returns
    -------
    DeidResult
        ``status="written"`` with ``data``, or ``status="skipped"`` with ``reason``.

    Raises
    ------
    DicomReadError
        Not DICOM, truncated or corrupt (names the file and the element).
    DeidError
        An element or the pixel data cannot be cleaned (names the file and the tag).
    """
    from pydicom.filewriter import dcmwrite

    ds = _read(source, path)
    try:
        ds, result = deidentify_dataset(ds, key, options, path=path)
    except (DeidError, DicomReadError):
        raise
    except PixelsError as e:
        raise DeidError(e.reason, path or None) from e
    if result.status != "written":
        return result
    ts = result.transfer_syntax or codecs.EXPLICIT_LE
    buf = io.BytesIO()
    try:
        dcmwrite(
            buf,
            ds,
            enforce_file_format=True,
            implicit_vr=ts == codecs.IMPLICIT_LE,
            little_endian=True,
        )
    except Exception as e:
        raise DeidError(
            f"cannot write the de-identified file: {error_text(e)}", path or None
        ) from e
    return DeidResult(**{**result.__dict__, "data": buf.getvalue()})
