"""The one place where errors become HTTP answers.

Handlers raise :class:`starlette.exceptions.HTTPException` for bad requests and
let Pixels' own errors (:mod:`pixels.errors`) through; :data:`HANDLERS` turns
those into a plain-text answer whose status says what happened (PS3.18 8.6.3):

=====================================  ======  ==========================================
error                                  status  meaning
=====================================  ======  ==========================================
``FileNotFoundError`` (a cataloged     410     Gone: the catalog lists the instance but its
file that no longer exists)                    file was removed or moved
``MissingDecoderError``                406     Not Acceptable: no installed codec can make the
                                               representation asked for (the stored one may
                                               still be asked for)
``TranscodeError``                   406     the instance cannot be sent in the syntax
                                               asked for (video, too large)
``SourceError`` (cannot open)          503     the storage is unreachable now
``DecodeError``, ``DicomReadError``,   500     the stored file is corrupt or changed since
other ``PixelsError``                          it was cataloged (the reason is in the body)
=====================================  ======  ==========================================

Because every handler opens its files and reads the headers it needs *before*
a streamed answer starts (see :mod:`pixels.web.wado`), these errors always
arrive in time to set the status; a handled error also keeps the connection
open for the client's next request.

Any other exception is answered by :class:`ErrorAnswers`, an ASGI middleware:
500 with a generic body, the traceback in the ``pixels.web`` log. Starlette's
own last-resort handler re-raises after answering 500 and uvicorn then closes
the connection, so a keep-alive client's next request failed with a reset; here
the exception is answered and not re-raised. Only an error after the answer has
started (a body cut mid-stream) is re-raised, so that the server closes the
connection and the client sees a truncated answer, not a complete-looking one.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixels.errors import MissingDecoderError, PixelsError, SourceError, TranscodeError

__all__ = ["HANDLERS", "ErrorAnswers", "status_of"]

log = logging.getLogger("pixels.web")


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error raised while answering a request."""
    if isinstance(exc, FileNotFoundError):
        return 410
    if isinstance(exc, MissingDecoderError | TranscodeError):
        return 406
    if isinstance(exc, SourceError):
        return 503
    return 500


async def _pixels_error(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    text = str(exc)
    if status == 410:
        text = f"the cataloged file no longer exists: {text}"
    return PlainTextResponse(text, status)


#: Exception handlers for :class:`starlette.applications.Starlette`.
HANDLERS = {PixelsError: _pixels_error, FileNotFoundError: _pixels_error}


class ErrorAnswers:
    """ASGI middleware answering every other exception a handler lets escape (see the module)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise  # the answer is on its way: only closing the connection can say so
            log.error("%s %s failed: %r", scope.get("method"), scope.get("path"), exc, exc_info=exc)
            body = "internal server error (the server's log has the details)"
            await PlainTextResponse(body, 500)(scope, receive, send)
