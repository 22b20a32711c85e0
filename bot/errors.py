"""The bot's exception tree.

    SeatbotError
    ├── ConfigError                 a setting is missing or malformed (start-up stops)
    ├── ParseError                  a /seat command cannot be read (the message says what to type)
    ├── StoreUnavailable            Redis cannot be reached
    ├── OutdatedRecord              a stored record of another format version, or unreadable: not used
    └── SeatsError                  anything the Cloudflare adapter raises
        ├── InvalidRequest          input rejected before sending, or HTTP 400/422
        ├── AuthenticationFailed    HTTP 401
        ├── PermissionDenied        HTTP 403
        ├── NotFound                HTTP 404
        ├── RateLimited             HTTP 429 after the retry budget
        │   └── BudgetExhausted     the shared rate budget (Redis) has no room soon enough; nothing sent
        ├── LookupIncomplete        a user listing stopped early (page cap): absence proves nothing
        └── Unavailable             5xx, timeouts, connection errors after the retry budget

Messages never contain credentials: they are built from Cloudflare's codes and messages only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:  # bot.domain.models raises OutdatedRecord from here
    from bot.domain.models import Seat


@dataclass(frozen=True)
class CloudflareMessage:
    code: int | None
    message: str


class SeatbotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(SeatbotError):
    """A setting is missing or malformed; the message names the variable."""


class ParseError(SeatbotError):
    """A /seat command that cannot be read; the message is shown to the person who typed it."""


class StoreUnavailable(SeatbotError):
    """Redis could not be reached."""


class OutdatedRecord(SeatbotError):
    """A stored record this release cannot use (another format version, or unreadable): never acted on."""


class SeatsError(SeatbotError):
    """A Cloudflare call failed. Carries the HTTP status, Cloudflare's errors and the cf-ray."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: tuple[CloudflareMessage, ...] = (),
        cf_ray: str | None = None,
        attempts: int = 1,
        completed: tuple[Seat, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors
        self.cf_ray = cf_ray
        self.attempts = attempts
        self.completed = completed  # seats Cloudflare confirmed (earlier chunks) before the failure

    def but(
        self,
        *,
        message: str | None = None,
        attempts: int | None = None,
        completed: tuple[Seat, ...] | None = None,
    ) -> Self:
        """A new error of the same class with some fields replaced (errors are never changed in place)."""
        return type(self)(
            self.message if message is None else message,
            status=self.status,
            errors=self.errors,
            cf_ray=self.cf_ray,
            attempts=self.attempts if attempts is None else attempts,
            completed=self.completed if completed is None else completed,
        )

    def describe(self) -> str:
        """One line for people: Cloudflare's codes and messages, else the HTTP status."""
        if self.errors:
            return "; ".join(f"{e.code}: {e.message}" if e.code else e.message for e in self.errors)
        return self.message


class InvalidRequest(SeatsError):
    """Input rejected before sending, or Cloudflare answered 400/405/409/422."""


class AuthenticationFailed(SeatsError):
    """Cloudflare rejected the credentials (401)."""


class PermissionDenied(SeatsError):
    """The credentials lack the permission (403)."""


class NotFound(SeatsError):
    """Unknown account or route (404)."""


class RateLimited(SeatsError):
    """Still rate limited (429) when the retry budget ran out."""


class BudgetExhausted(RateLimited):
    """The token's shared rate budget has no room within the wait allowed; the request was not sent."""


class LookupIncomplete(SeatsError):
    """A user listing stopped before its end, so a seat not seen in it may still exist."""


class Unavailable(SeatsError):
    """5xx, timeouts or connection errors outlasted the retry budget."""
