"""One root exception for the project; subclasses carry a stable code.

Each error carries its message in English and, for the people who use PipeTwin, in Chinese
(``zh=``; :attr:`TwinError.message_zh`). The API maps these to HTTP statuses in one place and
answers in the language the client asks for; the CLI prints both and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "TwinError",
    "ConfigError",
    "DatabaseError",
    "InputError",
    "NotFound",
    "InvalidGeometry",
    "Conflict",
    "Unauthorised",
    "Forbidden",
    "TooBusy",
    "Overloaded",
]


class TwinError(Exception):
    """Root of every error PipeTwin raises on purpose."""

    code = "TWIN"

    def __init__(self, message: str, *, code: str | None = None, zh: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.zh = zh

    @property
    def message(self) -> str:
        """The message in English."""
        return str(self.args[0]) if self.args else self.code

    @property
    def message_zh(self) -> str | None:
        """The message in Chinese, when the raiser gave one."""
        return self.zh


class ConfigError(TwinError):
    """Settings or environment cannot work (CRS unknown, PostgreSQL missing, ...)."""

    code = "CONFIG"


class DatabaseError(TwinError):
    """The database cannot be reached or is not in the expected state."""

    code = "DATABASE"


class InputError(TwinError):
    """A user-supplied file or value is malformed."""

    code = "INPUT"


class NotFound(TwinError):
    """A named feature does not exist."""

    code = "NOT_FOUND"


class InvalidGeometry(TwinError):
    """A geometry is empty, degenerate or outside the twin's CRS."""

    code = "INVALID_GEOMETRY"


class Conflict(TwinError):
    """A change was made against a state that has moved on (stale version, wrong status)."""

    code = "CONFLICT"


class Unauthorised(TwinError):
    """No valid sign-in: a missing, wrong, expired or revoked credential (HTTP 401)."""

    code = "UNAUTHORIZED"


class Forbidden(TwinError):
    """Signed in, but not allowed to do this: the role, or four eyes (HTTP 403)."""

    code = "FORBIDDEN"


class TooBusy(TwinError):
    """Too much work at once: the user's or the server's limit is reached (HTTP 429).

    ``retry_after`` is how many seconds to wait before trying again (the ``Retry-After`` header).
    """

    code = "TOO_BUSY"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None,
                 zh: str | None = None) -> None:
        super().__init__(message, code=code, zh=zh)
        self.retry_after = max(1, int(retry_after))


class Overloaded(TwinError):
    """The server could not start the work within its deadline: its pool for that kind of work
    stayed full (HTTP 503). ``retry_after``: seconds to wait before trying again."""

    code = "OVERLOADED"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None,
                 zh: str | None = None) -> None:
        super().__init__(message, code=code, zh=zh)
        self.retry_after = max(1, int(retry_after))
