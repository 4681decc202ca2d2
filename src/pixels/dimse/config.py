"""What a DIMSE service is configured with: peers, move destinations, users, TLS, limits.

:class:`Peer` names a remote application entity (``AE@host:port``);
:class:`ServerConfig` is everything the SCP (:mod:`pixels.dimse.server`) needs, and
:func:`check_listen` the rule it starts by: an address other than loopback is
listened on only when callers must authenticate (user identity negotiation with a
username and passcode, or TLS with client certificates).
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pixels.errors import PixelsError

__all__ = [
    "DimseError",
    "Peer",
    "ServerConfig",
    "associate_patiently",
    "check_listen",
    "client_tls",
    "failed_association",
    "parse_ae_title",
]

_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE: no backslash, no control


class DimseError(PixelsError):
    """A DIMSE operation failed: association refused, a peer's error status, bad settings."""


def parse_ae_title(value: str, what: str = "AE title") -> str:
    """``value`` stripped, or :class:`DimseError` when it is not a valid AE title (1-16
    printable characters, no backslash, not only spaces)."""
    text = value.strip()
    if not text or not _AE.match(text):
        raise DimseError(f"{what} {value!r} is not an AE title (1-16 characters, no '\\')")
    return text


@dataclass(frozen=True)
class Peer:
    """A remote application entity: its AE title, host and port.

    Examples
    --------
    >>> Peer.parse("ORTHANC@127.0.0.1:4242")
    Peer(ae_title='ORTHANC', host='127.0.0.1', port=4242)
    """

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``AE@host:port`` (``AE@[::1]:104`` for an IPv6 address)."""
        ae, sep, where = text.rpartition("@")
        host, colon, port = where.rpartition(":")
        if not sep or not colon or not port.isdigit() or not host:
            raise DimseError(f"peer {text!r} is not AE@host:port")
        number = int(port)
        if not 0 < number < 65536:
            raise DimseError(f"peer {text!r}: port {number} is out of range")
        return cls(parse_ae_title(ae), host.strip("[]"), number)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    """Settings of the DIMSE SCP.

    Parameters
    ----------
    port : int
        TCP port to listen on (0: an ephemeral port, see ``DimseServer.port``).
    host : str
        Address to bind; loopback unless authentication is configured.
    ae_title : str
        The SCP's AE title; an association calling another one is rejected.
    allowed_callers : tuple of str
        Calling AE titles accepted (empty: any).
    destinations : mapping of str to (host, port)
        C-MOVE destinations by AE title; another one answers ``0xA801``.
    users : mapping of str to str
        Username -> passcode: when given, every association must negotiate user
        identity (username and passcode) and match one.
    tls_cert, tls_key : str, optional
        The server's certificate and key (PEM): the SCP speaks TLS.
    tls_ca : str, optional
        CA certificates (PEM) that callers' client certificates must chain to (with
        ``tls_cert``): a caller without one is refused.
    commit_every : int
        Stored instances committed to the table together at most this many at a time.
    commit_seconds : float
        ...and at most this long after the first of them was stored.
    timeout : float
        Seconds a peer may stay silent (association request, DIMSE message, network)
        before the association is aborted.
    max_pdu : int
        Largest P-DATA PDU the SCP accepts (its Maximum Length); a peer sending a larger
        one is aborted.
    find_limit : int
        Most answers a C-FIND gets: when more entities match, the first ``find_limit``
        are sent and the C-FIND ends with status ``0xFE00`` (matching terminated), as
        Orthanc's ``LimitFindResults`` does, instead of Success.
    """

    port: int = 11112
    host: str = "127.0.0.1"
    ae_title: str = "PIXELS"
    allowed_callers: tuple[str, ...] = ()
    destinations: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    users: Mapping[str, str] = field(default_factory=dict)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    commit_every: int = 200
    commit_seconds: float = 2.0
    timeout: float = 30.0
    max_pdu: int = 1 << 20
    find_limit: int = 1000

    @property
    def authenticated(self) -> bool:
        """Whether callers must prove who they are (passcodes or client certificates)."""
        return bool(self.users) or bool(self.tls_cert and self.tls_ca)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (None without a certificate)."""
        if not self.tls_cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.tls_ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.tls_cert, self.tls_key)
        if self.tls_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def client_tls(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """An SCU's TLS context: the peer's certificate checked against ``ca`` (default: the
    system's), ``cert``/``key`` presented as the client certificate when given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(config: ServerConfig) -> None:
    """Refuse to listen on an address other than loopback without authentication.

    Raises
    ------
    DimseError
        ``config.host`` is not loopback and neither users (user identity
        negotiation) nor TLS client certificates (``tls_cert`` with ``tls_ca``) are
        configured.
    """
    if not _is_loopback(config.host) and not config.authenticated:
        raise DimseError(
            f"refusing to listen for DIMSE on {config.host}: that is not loopback and no "
            "authentication is configured: give users for user identity negotiation "
            "(--user NAME=PASSCODE), or a TLS certificate with a CA for client certificates "
            "(--tls-cert, --tls-key, --tls-ca)"
        )
    if config.tls_ca and not config.tls_cert:
        raise DimseError("a TLS CA was given without the server's certificate (tls_cert)")


def failed_association(assoc: Any) -> str:
    """Why a requested association (pynetdicom) was not established, shortly: the
    A-ASSOCIATE-RJ's reason, result and source; no answer at all (no connection);
    no presentation context accepted; or an abort."""
    if getattr(assoc, "is_rejected", False):
        rsp: Any = getattr(assoc.acceptor, "primitive", None)
        try:
            return f"rejected: {rsp.reason_str} ({rsp.result_str}, {rsp.source_str})"
        except Exception:
            return "rejected"
    if getattr(assoc.acceptor, "primitive", None) is None:
        return "did not answer (connection refused or timed out)"
    if not assoc.accepted_contexts:
        return "accepted no proposed presentation context"
    return "aborted the association"


#: Requests of one association :func:`associate_patiently` makes at most.
_ASKS = 3


def associate_patiently(make: Callable[[], Any], timeout: float) -> Any:
    """The association ``make()`` requests (pynetdicom), asked again (up to :data:`_ASKS`
    times in all) while the peer closes the connection without an answer in less than half
    of ``timeout``.

    A peer that rejects may close its end as it sends the A-ASSOCIATE-RJ (dcmtk's
    dcmqrscp and storescp, about 1 time in 20): pynetdicom then loses the reject and the
    association reads as aborted, with no reason. Negotiation changes nothing at the
    peer, so asking again gives its reason (asking once more left 1 in ~400 without it:
    a clean-clone CI met one); a timeout is not waited twice.
    """
    t0 = time.monotonic()
    for _ in range(_ASKS - 1):
        assoc = make()
        if assoc.is_established or assoc.is_rejected or time.monotonic() - t0 >= timeout / 2:
            return assoc
    return make()
