"""Presentation contexts: the transfer syntaxes Pixels accepts and proposes.

Storage is accepted in every transfer syntax the project decodes
(:mod:`pixels.dicom.codecs`: native little / big endian, deflated, JPEG, JPEG-LS,
JPEG 2000, RLE, HTJ2K) and in the video ones it reads (kept as sent): the bytes are
stored as received, so accepting a syntax only needs the catalog to read it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom._uid_dict import UID_dictionary
from pydicom.uid import UID
from pynetdicom import sop_class as sop_classes
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    build_context,
)
from pynetdicom.service_class import StorageServiceClass

from pixels.dicom import codecs

__all__ = [
    "ACCEPT_ORDER",
    "FIND_MODELS",
    "GET_MODELS",
    "MOVE_MODELS",
    "NATIVE",
    "STORAGE_CLASSES",
    "STORAGE_SYNTAXES",
    "Verification",
    "storage_contexts",
    "takes_as_stored",
]

#: Uncompressed syntaxes every storage context also offers (conversion between them is lossless).
NATIVE = (codecs.EXPLICIT_LE, codecs.IMPLICIT_LE, codecs.EXPLICIT_BE)

#: Every transfer syntax a C-STORE is accepted in.
STORAGE_SYNTAXES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *NATIVE,
            codecs.DEFLATED_LE,
            *sorted(codecs.JPEG_SYNTAXES),
            *sorted(codecs.JPEG_LS_SYNTAXES),
            *sorted(getattr(codecs, "JPEG2000_SYNTAXES", ())),
            "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
            "1.2.840.10008.1.2.4.91",  # JPEG 2000
            "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
            "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
            "1.2.840.10008.1.2.4.203",  # HTJ2K
            codecs.RLE_LOSSLESS,
            *sorted(codecs.VIDEO_SYNTAXES),
        ]
    )
)

#: The order the SCP prefers a proposed syntax in (an acceptor picks one per context): the
#: encapsulated and deflated ones first, since a requestor offers those only for data it
#: holds so, then the uncompressed ones. The data set is then stored as the peer had it.
ACCEPT_ORDER: tuple[str, ...] = tuple(
    [s for s in STORAGE_SYNTAXES if s not in NATIVE and s != codecs.DEFLATED_LE]
    + [codecs.DEFLATED_LE, *NATIVE]
)


def _storage_classes() -> tuple[str, ...]:
    """pynetdicom's storage SOP classes, and those it leaves out under the storage branch
    (``1.2.840.10008.5.1.4.1.1.``) that pydicom's dictionary knows: the retired ones old
    archives still hold (Ultrasound Image / Multi-frame, Nuclear Medicine, VL, trial SR:
    what a migration sends) and newer ones (protocols, inventory). The added ones are
    registered with pynetdicom's storage service (:func:`pynetdicom.sop_class.register_uid`),
    without which a C-STORE of one aborts the association."""
    known = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
    extra = []
    for uid, (name, kind, _, _, keyword) in UID_dictionary.items():
        if kind != "SOP Class" or "Storage" not in name or uid in known:
            continue
        if not uid.startswith("1.2.840.10008.5.1.4.1.1."):
            continue
        if not hasattr(sop_classes, keyword):
            sop_classes.register_uid(uid, keyword, StorageServiceClass)
        extra.append(uid)
    return tuple(known + sorted(extra))


#: Every storage SOP class a C-STORE is accepted for (and a C-GET asks for).
STORAGE_CLASSES: tuple[str, ...] = _storage_classes()

#: The Verification SOP class (C-ECHO).
Verification = "1.2.840.10008.1.1"
#: Query/Retrieve information models (PS3.4 C.6) by SOP class: Patient Root or Study Root.
FIND_MODELS = {"1.2.840.10008.5.1.4.1.2.1.1": "PATIENT", "1.2.840.10008.5.1.4.1.2.2.1": "STUDY"}
GET_MODELS = {"1.2.840.10008.5.1.4.1.2.1.3": "PATIENT", "1.2.840.10008.5.1.4.1.2.2.3": "STUDY"}
MOVE_MODELS = {"1.2.840.10008.5.1.4.1.2.1.2": "PATIENT", "1.2.840.10008.5.1.4.1.2.2.2": "STUDY"}


def takes_as_stored(contexts: Iterable[PresentationContext], sop_class: str, syntax: str) -> bool:
    """Whether a peer that accepted ``contexts`` (we sending, as SCU of C-STORE) takes an
    instance of ``sop_class`` held in ``syntax`` without re-encoding its pixel data: a
    context of the class in that syntax, or in another uncompressed one of the same
    endianness (pynetdicom converts between explicit / implicit VR and deflate itself).
    When not, the instance is sent converted to Explicit VR Little Endian (a peer that
    accepts a class only uncompressed is common: storescp, getscu and many modalities)."""
    want = UID(syntax)
    for cx in contexts:
        if cx.abstract_syntax != sop_class or not cx.as_scu or not cx.transfer_syntax:
            continue
        have = UID(cx.transfer_syntax[0])
        if have == want:
            return True
        if not (have.is_compressed or want.is_compressed) and (
            have.is_little_endian == want.is_little_endian
        ):
            return True
    return False


def storage_contexts(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """Contexts to send instances of ``(SOP class, transfer syntax)``: per class one with the
    uncompressed syntaxes and, for each other syntax held, one of its own (an acceptor picks
    one syntax per context: a compressed one offered beside uncompressed ones is seldom
    picked, and a compressed data set cannot be sent uncompressed). At most 128 (PS3.8
    9.3.2.2)."""
    contexts: dict[tuple[str, str], PresentationContext] = {}
    for sop_class, syntax in pairs:
        keys = [(sop_class, "native")]
        if syntax not in NATIVE:
            keys.append((sop_class, syntax))
        for key in keys:
            if key in contexts or len(contexts) >= 128:
                continue
            syntaxes = list(NATIVE) if key[1] == "native" else [key[1]]
            contexts[key] = build_context(UID(sop_class), [UID(s) for s in syntaxes])
    return list(contexts.values())
