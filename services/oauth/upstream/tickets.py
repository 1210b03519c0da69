"""Authorization links: who may bind which upstream account to which owner.

The link Bastion shows (`<public url>/oauth/upstream/authorize?ticket=...`) decides whose token the
upstream account becomes: the shared one of a server, or one user's. So it carries a ticket sealed
with the Fernet keys of `BASTION_SECRETS_KEY` (authenticated encryption with a timestamp): it cannot
be forged or edited, and it expires (`BASTION_UPSTREAM_LINK_TTL`). Links for the shared token are only
minted for admins (admin API, `bastion servers list`); a user's link only in that user's own error.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, SecretStr, ValidationError

__all__ = ["Ticket", "TicketError", "Tickets"]


class TicketError(ValueError):
    pass


class Ticket(BaseModel):
    server: str
    url: str
    transport: str
    user: str | None = None


class Tickets:
    def __init__(self, keys: SecretStr | str, ttl: float) -> None:
        raw = keys.get_secret_value() if isinstance(keys, SecretStr) else keys
        try:
            fernets = [Fernet(k.strip().encode()) for k in raw.split(",") if k.strip()]
        except (ValueError, TypeError):
            raise TicketError("BASTION_SECRETS_KEY is not a comma-separated list of Fernet keys") from None
        if not fernets:
            raise TicketError("authorization links need BASTION_SECRETS_KEY")
        self._fernet = MultiFernet(fernets)
        self._ttl = int(ttl)

    def issue(self, ticket: Ticket) -> str:
        return self._fernet.encrypt(ticket.model_dump_json().encode()).decode()

    def open(self, text: str) -> Ticket:
        try:
            return Ticket.model_validate_json(self._fernet.decrypt(text.encode(), ttl=self._ttl))
        except (InvalidToken, ValidationError, UnicodeEncodeError):
            raise TicketError("this authorization link is invalid or has expired: ask for a new one") from None
