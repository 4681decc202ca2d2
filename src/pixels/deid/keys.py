"""The secret key behind every consistent replacement: UIDs, pseudonyms, date offsets.

One key, 32 random bytes, makes every mapping of a de-identification reproducible across
files and runs: HMAC-SHA256 of the original value under the key. Without the key nothing
can be recomputed (nor reversed: HMAC is one way). The key file is written once, owner-only
(mode 0600), and refused when others may read it; keep it outside the de-identified output.

Examples
--------
>>> key = DeidKey(bytes(32))
>>> key.uid("1.2.3")
'2.25.180417962722659209853097883419413458424'
>>> key.uid("1.2.3") == key.uid("1.2.3"), key.uid("1.2.3") == key.uid("1.2.4")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field

from pixels.errors import DeidError

__all__ = ["KEY_BYTES", "DeidKey", "load_or_create_key"]

KEY_BYTES = 32
_MAGIC = "pixels-deid-key-v1"
#: Dates move back by a whole number of days in [MIN, MAX] per patient.
MIN_OFFSET_DAYS = 365
MAX_OFFSET_DAYS = 10 * 365


@dataclass(frozen=True)
class DeidKey:
    """A secret key and the mappings derived from it.

    Parameters
    ----------
    secret : bytes
        At least 16 bytes (32 when generated).
    """

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise DeidError(
                f"a de-identification key needs at least 16 bytes, got {len(self.secret)}"
            )

    def _mac(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming the key (in the audit) without revealing it."""
        return self._mac("fingerprint", "").hex()[:16]

    def uid(self, original: str) -> str:
        """``2.25.<int>``: a UUID (version 8, RFC 9562) made from the HMAC of ``original``."""
        b = bytearray(self._mac("uid", original.strip().rstrip("\x00"))[:16])
        b[6] = (b[6] & 0x0F) | 0x80  # version 8: custom
        b[8] = (b[8] & 0x3F) | 0x80  # RFC variant
        return "2.25." + str(int.from_bytes(b, "big"))

    def token(self, purpose: str, original: str, length: int = 12) -> str:
        """``length`` upper-case hex digits from the HMAC of ``original`` for ``purpose``."""
        return self._mac(purpose, original).hex()[:length].upper()

    def patient_id(self, original: str) -> str:
        """The pseudonymous Patient ID for an original Patient ID (and issuer)."""
        return "PX" + self.token("patient-id", original, 14)

    def patient_name(self, original_id: str) -> str:
        """The pseudonymous Patient's Name, from the original Patient ID: one per patient."""
        return "ANON^" + self.token("patient-name", original_id, 10)

    def person_name(self, original: str) -> str:
        """A pseudonym for another person's name (an observer in an SR's content): the same
        name (case and surrounding spaces aside) gets the same pseudonym in every file."""
        return "ANON^" + self.token("person-name", original.strip().upper(), 10)

    def date_offset_days(self, original_id: str) -> int:
        """Days (negative) every date of the patient ``original_id`` is moved by."""
        n = int.from_bytes(self._mac("date-offset", original_id)[:8], "big")
        return -(MIN_OFFSET_DAYS + n % (MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1))

    @classmethod
    def generate(cls) -> DeidKey:
        """A new random key."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeidKey:
        """Read a key file written by :meth:`save`; refuse one that others may read."""
        name = os.fspath(path)
        try:
            st = os.stat(name)
            with open(name, encoding="ascii") as f:
                lines = f.read().split()
        except FileNotFoundError as e:
            raise DeidError("key file not found", name) from e
        except (OSError, UnicodeDecodeError) as e:
            raise DeidError(f"cannot read key file: {e}", name) from e
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise DeidError(
                f"key file is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                "run chmod 600 on it",
                name,
            )
        if len(lines) != 2 or lines[0] != _MAGIC:
            raise DeidError(f"not a key file (expected a {_MAGIC} line and a hex key)", name)
        try:
            secret = bytes.fromhex(lines[1])
        except ValueError as e:
            raise DeidError("key file holds no hexadecimal key", name) from e
        try:
            return cls(secret)
        except DeidError as e:
            raise DeidError(e.reason, name) from e

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key to a new file, mode 0600 (refuses to overwrite one)."""
        name = os.fspath(path)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as e:
            raise DeidError("key file exists already; not overwritten", name) from e
        except OSError as e:
            raise DeidError(f"cannot write key file: {e}", name) from e
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{_MAGIC}\n{self.secret.hex()}\n")


def load_or_create_key(path: str | os.PathLike[str]) -> tuple[DeidKey, bool]:
    """The key in ``path``, generated and saved (mode 0600) when the file does not exist.

    Returns the key and whether it was created now.
    """
    if os.path.exists(path):
        return DeidKey.load(path), False
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    key = DeidKey.generate()
    key.save(path)
    return key, True
