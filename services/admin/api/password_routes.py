"""`PUT /admin/v1/users/{id}/password`: set a user's password in the built-in user store.

The password is handed to the oauth service over NATS (`subjects.OAUTH_PASSWORD`), which hashes
it (scrypt) and keeps only the hash; the admin service never stores it, and nothing logs it. The change is an
admin audit event that names the user, never the password.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Response
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts import subjects
from libs.common.contracts.oauth import PasswordChange, PasswordChanged

from .changes import ChangeLog
from .errors import AdminError
from .route_table import Route, register

__all__ = ["PasswordSet", "password_routes"]


class PasswordSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=8, max_length=1024, repr=False)


@dataclass(frozen=True, slots=True)
class Passwords:
    """What the password route needs: NATS to reach the oauth service.

    `changes` records each password set as an admin event (`user.set_password`: who, which user; never
    the password)."""

    nc: NATS
    changes: ChangeLog | None


async def set_password(
    passwords: Passwords,
    user_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")],
    body: PasswordSet,
) -> Response:
    """Let the user log in through Bastion's own login form (OAuth for agents)."""
    change = PasswordChange(user_id=user_id, password=body.password)
    try:
        reply = await passwords.nc.request(subjects.OAUTH_PASSWORD, change.model_dump_json().encode(), timeout=10)
    except NoRespondersError:
        raise AdminError(503, "unavailable", "the oauth service is not running") from None
    except NatsTimeout:
        raise AdminError(503, "unavailable", "the oauth service did not answer within 10s") from None
    answer = PasswordChanged.model_validate_json(reply.data)
    if not answer.ok:
        if answer.error and answer.error.startswith("there is no user"):
            raise AdminError(404, "not_found", answer.error)
        raise AdminError(422, "invalid", answer.error or "the oauth service refused the password")
    if passwords.changes is not None:
        passwords.changes.record("user", "set_password", user_id, None, None)
    return Response(status_code=204)


PASSWORD_ROUTES = (Route("PUT", "/users/{user_id}/password", "users:password", set_password, 204, (404, 422, 503)),)


def password_routes(router: APIRouter, nc: NATS, changes: ChangeLog | None = None) -> None:
    register(router, PASSWORD_ROUTES, "users", Passwords(nc, changes))
