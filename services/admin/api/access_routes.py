"""`/admin/v1/principals`, their `tokens`, `/admin/v1/roles`, `/admin/v1/permissions` and `/admin/v1/me`.

Nobody hands out more than they hold (`roles.missing_to_grant`): to create or change a principal,
or to issue, rotate or revoke its tokens, the caller must hold every permission the principal's roles
grant, before and after the change; a custom role may hold only permissions its author holds. The
last owner cannot be removed, disabled or demoted. The bootstrap token may create one principal, an
owner, and nothing else.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Response

from libs.common.contracts.admin_principals import OWNER, PRINCIPAL_NAME, ApiToken, Principal, RoleBinding

from ..roles import (
    AUTHENTICATED,
    BUILTIN_ROLES,
    OWNER_ONLY,
    PERMISSIONS,
    SCOPABLE,
    missing_to_grant,
    unknown_permissions,
)
from .access_models import (
    Me,
    PermissionOut,
    PrincipalCreate,
    PrincipalCreated,
    PrincipalOut,
    PrincipalPatch,
    RoleCreate,
    RoleOut,
    RoleUpdate,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from .access_store import AccessStore, CustomRole
from .auth import BOOTSTRAP, Authenticator
from .errors import AdminError, forbidden, invalid
from .identity import Identity, current
from .models import FieldError
from .route_table import Route, register
from .routes import api_router
from .store import AdminStore
from .tables import Conflict, Versioned

__all__ = ["access_routes"]

log = logging.getLogger(__name__)

NameParam = Annotated[str, Path(pattern=PRINCIPAL_NAME.pattern)]


@dataclass(frozen=True, slots=True)
class AccessParts:
    """What the access routes share: the store, and the lifetime of a token whose request names none."""

    store: AdminStore
    token_days: int

    @property
    def access(self) -> AccessStore:
        return self.store.access


def _principal_out(found: Versioned[Principal]) -> PrincipalOut:
    return PrincipalOut(**found.value.model_dump(exclude={"v"}), revision=found.revision)


def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut(**token.model_dump(exclude={"v"}))


def _is_owner(principal: Principal) -> bool:
    return not principal.disabled and any(b.role == OWNER and not b.scoped for b in principal.roles)


async def _check_roles(parts: AccessParts, bindings: Iterable[RoleBinding], roles: dict[str, frozenset[str]]) -> None:
    """422 naming a role that does not exist, or a scope whose team or customer does not."""
    detail: list[FieldError] = []
    for index, binding in enumerate(bindings):
        where: list[str | int] = ["body", "roles", index]
        if binding.role not in BUILTIN_ROLES and binding.role not in roles:
            detail.append(FieldError(loc=[*where, "role"], msg=f"no role {binding.role!r}", type="unknown_role"))
        for kind, entity in (("team", binding.team_id), ("customer", binding.customer_id)):
            if entity is not None and not await parts.store.entities[kind].exists(entity):
                msg = f"{kind} {entity!r} does not exist"
                detail.append(FieldError(loc=[*where, f"{kind}_id"], msg=msg, type="unknown_reference"))
    if detail:
        raise invalid(detail, "unknown_reference")


async def _may_manage(parts: AccessParts, identity: Identity, *bindings: Iterable[RoleBinding]) -> None:
    """403 unless the caller holds everything these bindings grant."""
    roles = await parts.access.custom_roles()
    for group in bindings:
        if (missing := missing_to_grant(identity.grants, group, roles)) is not None:
            permission, scope = missing
            raise forbidden(identity, permission, scope)


async def _keeps_an_owner(parts: AccessParts, name: str, after: Principal | None) -> None:
    """409 when the change would leave no owner (while one exists)."""
    others = [n for n in await parts.access.owners() if n != name]
    if not others and (after is None or not _is_owner(after)) and name in await parts.access.owners():
        raise Conflict(f"{name!r} is the last owner: make another principal owner first")


def _days(parts: AccessParts, body: TokenCreate | None) -> float:
    return float(body.expires_in_days if body is not None and body.expires_in_days is not None else parts.token_days)


async def _principal(parts: AccessParts, name: str) -> Versioned[Principal]:
    return await parts.access.principals.get(name)


async def _user_taken(parts: AccessParts, user_id: str | None, by: str) -> None:
    if user_id is None:
        return
    if not await parts.store.entities["user"].exists(user_id):
        loc: list[str | int] = ["body", "user_id"]
        raise invalid([FieldError(loc=loc, msg=f"user {user_id!r} does not exist", type="unknown_reference")])
    for other, found in await parts.access.principals.list():
        if found.value.user_id == user_id and other != by:
            raise Conflict(f"user {user_id!r} already signs in as principal {other!r}")


# who am I, what exists


async def me(parts: AccessParts) -> Me:
    """The principal behind this credential, its roles and what they let it do."""
    identity = current()
    scoped = {p: sorted(f"{s.kind}:{s.id}" for s in scopes) for p, scopes in identity.grants.scoped.items()}
    return Me(
        principal=identity.principal,
        kind=identity.kind,
        roles=list(identity.roles),
        permissions=sorted(identity.grants.everywhere),
        scoped=scoped,
        via=identity.via,
    )


async def rotate_own_token(parts: AccessParts, body: TokenCreate | None = None) -> TokenCreated:
    """Replace the API token this request was made with by a new one (same principal and label) and revoke it.

    Automation rotates its own credential before it expires."""
    identity = current()
    if identity.via != "token":
        raise AdminError(409, "conflict", "only a request made with an API token can rotate it")
    secret, new = await parts.access.rotate_token(
        await parts.access.tokens.get(identity.credential), _days(parts, body), identity.principal
    )
    return TokenCreated(secret=secret, token=_token_out(new.value))


async def list_permissions(parts: AccessParts) -> list[PermissionOut]:
    """Every permission a role may hold, with what it opens."""
    return [
        PermissionOut(name=n, description=d, scopable=n in SCOPABLE, owner_only=n in OWNER_ONLY)
        for n, d in PERMISSIONS.items()
    ]


# roles


async def list_roles(parts: AccessParts) -> list[RoleOut]:
    """The built-in roles and the custom ones."""
    builtin = [
        RoleOut(name=n, description=d, permissions=sorted(p), builtin=True) for n, (d, p) in BUILTIN_ROLES.items()
    ]
    made = [
        RoleOut(
            name=n,
            description=f.value.description,
            permissions=f.value.permissions,
            builtin=False,
            revision=f.revision,
        )
        for n, f in await parts.access.roles.list()
    ]
    return builtin + made


async def get_role(parts: AccessParts, name: str) -> RoleOut:
    if name in BUILTIN_ROLES:
        description, permissions = BUILTIN_ROLES[name]
        return RoleOut(name=name, description=description, permissions=sorted(permissions), builtin=True)
    found = await parts.access.roles.get(name)
    value = found.value
    return RoleOut(
        name=name,
        description=value.description,
        permissions=value.permissions,
        builtin=False,
        revision=found.revision,
    )


def _checked_permissions(permissions: list[str]) -> list[str]:
    loc: list[str | int] = ["body", "permissions"]
    if unknown := unknown_permissions(permissions):
        raise invalid([FieldError(loc=loc, msg=f"unknown permission(s) {unknown}", type="unknown_permission")])
    for permission in sorted(OWNER_ONLY.keys() & set(permissions)):
        msg = f"{permission!r} is the owner role's alone: {OWNER_ONLY[permission]} (bind the owner role instead)"
        raise invalid([FieldError(loc=loc, msg=msg, type="owner_only_permission")])
    identity = current()
    for permission in sorted(set(permissions)):
        if permission not in identity.grants.everywhere:  # a role holds no more than its author
            raise forbidden(identity, permission)
    return sorted(set(permissions))


async def create_role(parts: AccessParts, body: RoleCreate) -> RoleOut:
    """A custom role: a set of permissions under a name principals can be bound to."""
    if body.name in BUILTIN_ROLES:
        raise Conflict(f"{body.name!r} is a built-in role")
    permissions = _checked_permissions(body.permissions)
    record = CustomRole(name=body.name, description=body.description, permissions=permissions)
    revision = await parts.access.roles.create(body.name, record)
    return RoleOut(
        name=body.name, description=body.description, permissions=permissions, builtin=False, revision=revision
    )


async def update_role(parts: AccessParts, name: str, body: RoleUpdate) -> RoleOut:
    """Change a custom role's permissions: every principal bound to it gets them at its next request."""
    if name in BUILTIN_ROLES:
        raise Conflict(f"{name!r} is a built-in role: it cannot change (make a custom role instead)")
    current_role = await parts.access.roles.get(name)
    held = [p for p in current_role.value.permissions if p not in OWNER_ONLY]  # those it never granted
    _checked_permissions(held)  # changing it is granting what it held, too
    permissions = _checked_permissions(body.permissions)
    record = current_role.value.model_copy(
        update={"description": body.description, "permissions": permissions, "updated_at": time.time()}
    )
    revision = await parts.access.roles.update(name, record, current_role.revision)
    return RoleOut(name=name, description=body.description, permissions=permissions, builtin=False, revision=revision)


async def delete_role(parts: AccessParts, name: str) -> Response:
    """Delete a custom role no principal is bound to."""
    if name in BUILTIN_ROLES:
        raise Conflict(f"{name!r} is a built-in role")
    bound = [n for n, f in await parts.access.principals.list() if any(b.role == name for b in f.value.roles)]
    if bound:
        raise Conflict(f"role {name!r} is still bound to {', '.join(map(repr, bound[:5]))}; unbind it first")
    await parts.access.roles.delete(name)
    return Response(status_code=204)


# principals


async def list_principals(parts: AccessParts) -> list[PrincipalOut]:
    """Every principal (never a token: `GET .../tokens` lists their ids)."""
    return [_principal_out(found) for _, found in await parts.access.principals.list()]


async def get_principal(parts: AccessParts, name: NameParam) -> PrincipalOut:
    return _principal_out(await _principal(parts, name))


async def create_principal(parts: AccessParts, body: PrincipalCreate) -> PrincipalCreated:
    """A person (who signs in through the oauth service as `user_id`) or automation, with its roles.

    `token` issues an API token at once (shown in this answer only). With the bootstrap token: the first
    owner, and nothing else."""
    identity = current()
    if body.name == BOOTSTRAP:
        msg = "reserved: audit events name the bootstrap token so"
        raise invalid([FieldError(loc=["body", "name"], msg=msg, type="reserved")])
    roles = await parts.access.custom_roles()
    await _check_roles(parts, body.roles, roles)
    if identity.via == "bootstrap":
        if not any(b.role == OWNER and not b.scoped for b in body.roles):
            raise forbidden(identity, "principals:write", None) from None
    else:
        await _may_manage(parts, identity, body.roles)
    await _user_taken(parts, body.user_id, body.name)
    record = Principal(
        name=body.name, kind=body.kind, user_id=body.user_id, roles=body.roles, created_by=identity.principal
    )
    revision = await parts.access.principals.create(body.name, record)
    log.info(
        "admin: %s created principal %r (%s)",
        identity.principal,
        body.name,
        ",".join(b.label() for b in body.roles),
    )
    created = PrincipalCreated(principal=_principal_out(Versioned(record, revision)))
    if body.token is not None:
        secret, token = await parts.access.issue_token(
            body.name, body.token.label, _days(parts, body.token), identity.principal
        )
        created.token = TokenCreated(secret=secret, token=_token_out(token.value))
    return created


async def update_principal(parts: AccessParts, name: NameParam, body: PrincipalPatch) -> PrincipalOut:
    """Change a principal's roles, `user_id`, or disable it (its tokens and sessions are refused while disabled).

    Absent fields stay as they are."""
    identity = current()
    found = await _principal(parts, name)
    changes = body.model_dump(include=body.model_fields_set)
    if "roles" in changes and body.roles is None:
        raise invalid([FieldError(loc=["body", "roles"], msg="may not be null", type="null")])
    if "disabled" in changes and body.disabled is None:
        raise invalid([FieldError(loc=["body", "disabled"], msg="may not be null", type="null")])
    new_roles = body.roles if body.roles is not None else found.value.roles
    await _check_roles(parts, new_roles, await parts.access.custom_roles())
    await _may_manage(parts, identity, found.value.roles, new_roles)
    if "user_id" in changes:
        await _user_taken(parts, body.user_id, name)
    updated = found.value.model_copy(update={**changes, "roles": new_roles, "updated_at": time.time()})
    await _keeps_an_owner(parts, name, updated)
    revision = await parts.access.principals.update(name, updated, found.revision)
    return _principal_out(Versioned(updated, revision))


async def delete_principal(parts: AccessParts, name: NameParam) -> Response:
    """Delete a principal with its API tokens and sessions (its audit events stay)."""
    identity = current()
    found = await _principal(parts, name)
    await _may_manage(parts, identity, found.value.roles)
    await _keeps_an_owner(parts, name, None)
    await parts.access.principals.delete(name, found.revision)
    await parts.access.forget(name)
    return Response(status_code=204)


# API tokens


async def _token_of(parts: AccessParts, name: str, token_id: str) -> Versioned[ApiToken]:
    found = await parts.access.tokens.get(token_id)
    if found.value.principal != name:
        raise parts.access.tokens.missing(token_id)  # another principal's: not found here
    return found


async def list_tokens(parts: AccessParts, name: NameParam) -> list[TokenOut]:
    """The principal's API tokens (ids, labels, expiry; never a token)."""
    await _principal(parts, name)
    return [_token_out(found.value) for found in await parts.access.tokens_of(name)]


async def issue_token(parts: AccessParts, name: NameParam, body: TokenCreate) -> TokenCreated:
    """Issue an API token; its secret is in this answer only."""
    identity = current()
    found = await _principal(parts, name)
    await _may_manage(parts, identity, found.value.roles)
    secret, token = await parts.access.issue_token(name, body.label, _days(parts, body), identity.principal)
    return TokenCreated(secret=secret, token=_token_out(token.value))


async def rotate_token(
    parts: AccessParts, name: NameParam, token_id: str, body: TokenCreate | None = None
) -> TokenCreated:
    """A new token with the same label, and the old one revoked."""
    identity = current()
    await _may_manage(parts, identity, (await _principal(parts, name)).value.roles)
    secret, new = await parts.access.rotate_token(
        await _token_of(parts, name, token_id), _days(parts, body), identity.principal
    )
    return TokenCreated(secret=secret, token=_token_out(new.value))


async def revoke_token(parts: AccessParts, name: NameParam, token_id: str) -> TokenOut:
    """Revoke a token: refused at once by every replica. Revoking twice is harmless."""
    identity = current()
    await _may_manage(parts, identity, (await _principal(parts, name)).value.roles)
    found = await _token_of(parts, name, token_id)
    if not found.value.revoked:
        await parts.access.tokens.update(token_id, found.value.model_copy(update={"revoked": True}), found.revision)
    return _token_out(found.value.model_copy(update={"revoked": True}))


ACCESS_ROUTES = (
    Route("GET", "/me", AUTHENTICATED, me),
    Route("POST", "/me/token/rotate", AUTHENTICATED, rotate_own_token, 201, (409,)),
    Route("GET", "/permissions", AUTHENTICATED, list_permissions),
    Route("GET", "/roles", "roles:read", list_roles),
    Route("GET", "/roles/{name}", "roles:read", get_role, errors=(404,)),
    Route("POST", "/roles", "roles:write", create_role, 201, (409, 422)),
    Route("PUT", "/roles/{name}", "roles:write", update_role, errors=(404, 409, 422)),
    Route("DELETE", "/roles/{name}", "roles:write", delete_role, 204, (404, 409)),
    Route("GET", "/principals", "principals:read", list_principals),
    Route("GET", "/principals/{name}", "principals:read", get_principal, errors=(404,)),
    Route("POST", "/principals", "principals:write", create_principal, 201, (409, 422)),
    Route("PATCH", "/principals/{name}", "principals:write", update_principal, errors=(404, 409, 422)),
    Route("DELETE", "/principals/{name}", "principals:write", delete_principal, 204, (404, 409)),
    Route("GET", "/principals/{name}/tokens", "principals:read", list_tokens, errors=(404,)),
    Route("POST", "/principals/{name}/tokens", "principals:write", issue_token, 201, (404, 422)),
    Route("POST", "/principals/{name}/tokens/{token_id}/rotate", "principals:write", rotate_token, 201, (404, 409)),
    Route("POST", "/principals/{name}/tokens/{token_id}/revoke", "principals:write", revoke_token, errors=(404,)),
)


def access_routes(store: AdminStore, auth: Authenticator, token_days: int) -> APIRouter:
    """`token_days`: the lifetime of a token whose request names none."""
    router = api_router(auth)
    register(router, ACCESS_ROUTES, "access", AccessParts(store, token_days))
    return router
