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
from typing import Annotated

from fastapi import APIRouter, Path, Response

from libs.common.admin_principals import OWNER, PRINCIPAL_NAME, ApiToken, Principal, RoleBinding

from ..roles import AUTHENTICATED, BUILTIN_ROLES, PERMISSIONS, SCOPABLE, missing_to_grant, unknown_permissions
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
from .access_store import CustomRole
from .auth import BOOTSTRAP, Authenticator
from .errors import AdminError, documented, forbidden, invalid, needs
from .identity import Identity, current
from .models import FieldError
from .routes import api_router
from .store import AdminStore
from .tables import Conflict, Versioned

__all__ = ["access_routes"]

log = logging.getLogger(__name__)

NameParam = Annotated[str, Path(pattern=PRINCIPAL_NAME.pattern)]


def _principal_out(found: Versioned[Principal]) -> PrincipalOut:
    return PrincipalOut(**found.value.model_dump(exclude={"v"}), revision=found.revision)


def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut(**token.model_dump(exclude={"v"}))


def _is_owner(principal: Principal) -> bool:
    return not principal.disabled and any(b.role == OWNER and not b.scoped for b in principal.roles)


def access_routes(store: AdminStore, auth: Authenticator, token_days: int) -> APIRouter:
    """`token_days`: the lifetime of a token whose request names none."""
    router = api_router(auth)
    access = store.access

    async def custom() -> dict[str, frozenset[str]]:
        return await access.custom_roles()

    async def check_roles(bindings: Iterable[RoleBinding], roles: dict[str, frozenset[str]]) -> None:
        """422 naming a role that does not exist, or a scope whose team or customer does not."""
        detail: list[FieldError] = []
        for index, binding in enumerate(bindings):
            where: list[str | int] = ["body", "roles", index]
            if binding.role not in BUILTIN_ROLES and binding.role not in roles:
                detail.append(FieldError(loc=[*where, "role"], msg=f"no role {binding.role!r}", type="unknown_role"))
            for kind, entity in (("team", binding.team_id), ("customer", binding.customer_id)):
                if entity is not None and not await store.entities[kind].exists(entity):
                    msg = f"{kind} {entity!r} does not exist"
                    detail.append(FieldError(loc=[*where, f"{kind}_id"], msg=msg, type="unknown_reference"))
        if detail:
            raise invalid(detail, "unknown_reference")

    async def may_manage(identity: Identity, *bindings: Iterable[RoleBinding]) -> None:
        """403 unless the caller holds everything these bindings grant."""
        roles = await custom()
        for group in bindings:
            if (missing := missing_to_grant(identity.grants, group, roles)) is not None:
                permission, scope = missing
                raise forbidden(identity, permission, scope)

    async def keeps_an_owner(name: str, after: Principal | None) -> None:
        """409 when the change would leave no owner (while one exists)."""
        others = [n for n in await access.owners() if n != name]
        if not others and (after is None or not _is_owner(after)) and name in await access.owners():
            raise Conflict(f"{name!r} is the last owner: make another principal owner first")

    def days(body: TokenCreate | None) -> float:
        return float(body.expires_in_days if body is not None and body.expires_in_days is not None else token_days)

    async def principal(name: str) -> Versioned[Principal]:
        return await access.principals.get(name)

    async def user_taken(user_id: str | None, by: str) -> None:
        if user_id is None:
            return
        if not await store.entities["user"].exists(user_id):
            loc: list[str | int] = ["body", "user_id"]
            raise invalid([FieldError(loc=loc, msg=f"user {user_id!r} does not exist", type="unknown_reference")])
        for other, found in await access.principals.list():
            if found.value.user_id == user_id and other != by:
                raise Conflict(f"user {user_id!r} already signs in as principal {other!r}")

    # ------------------------------------------------------------------ who am I, what exists

    @router.get("/me", tags=["access"], openapi_extra=needs(AUTHENTICATED))
    async def me() -> Me:
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

    @router.post(
        "/me/token/rotate",
        status_code=201,
        tags=["access"],
        responses=documented(409),
        openapi_extra=needs(AUTHENTICATED),
    )
    async def rotate_own_token(body: TokenCreate | None = None) -> TokenCreated:
        """Replace the API token this request was made with by a new one (same principal and label) and
        revoke it: automation rotates its own credential before it expires."""
        identity = current()
        if identity.via != "token":
            raise AdminError(409, "conflict", "only a request made with an API token can rotate it")
        secret, new = await access.rotate_token(
            await access.tokens.get(identity.credential), days(body), identity.principal
        )
        return TokenCreated(secret=secret, token=_token_out(new.value))

    @router.get("/permissions", tags=["access"], openapi_extra=needs(AUTHENTICATED))
    async def list_permissions() -> list[PermissionOut]:
        """Every permission a role may hold, with what it opens."""
        return [PermissionOut(name=n, description=d, scopable=n in SCOPABLE) for n, d in PERMISSIONS.items()]

    # ------------------------------------------------------------------ roles

    @router.get("/roles", tags=["access"], openapi_extra=needs("roles:read"))
    async def list_roles() -> list[RoleOut]:
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
            for n, f in await access.roles.list()
        ]
        return builtin + made

    @router.get("/roles/{name}", tags=["access"], responses=documented(404), openapi_extra=needs("roles:read"))
    async def get_role(name: str) -> RoleOut:
        if name in BUILTIN_ROLES:
            description, permissions = BUILTIN_ROLES[name]
            return RoleOut(name=name, description=description, permissions=sorted(permissions), builtin=True)
        found = await access.roles.get(name)
        value = found.value
        return RoleOut(
            name=name,
            description=value.description,
            permissions=value.permissions,
            builtin=False,
            revision=found.revision,
        )

    def checked_permissions(permissions: list[str]) -> list[str]:
        if unknown := unknown_permissions(permissions):
            loc: list[str | int] = ["body", "permissions"]
            raise invalid([FieldError(loc=loc, msg=f"unknown permission(s) {unknown}", type="unknown_permission")])
        identity = current()
        for permission in sorted(set(permissions)):
            if permission not in identity.grants.everywhere:  # a role holds no more than its author
                raise forbidden(identity, permission)
        return sorted(set(permissions))

    @router.post(
        "/roles", status_code=201, tags=["access"], responses=documented(409, 422), openapi_extra=needs("roles:write")
    )
    async def create_role(body: RoleCreate) -> RoleOut:
        """A custom role: a set of permissions under a name principals can be bound to."""
        if body.name in BUILTIN_ROLES:
            raise Conflict(f"{body.name!r} is a built-in role")
        permissions = checked_permissions(body.permissions)
        record = CustomRole(name=body.name, description=body.description, permissions=permissions)
        revision = await access.roles.create(body.name, record)
        return RoleOut(
            name=body.name, description=body.description, permissions=permissions, builtin=False, revision=revision
        )

    @router.put(
        "/roles/{name}", tags=["access"], responses=documented(404, 409, 422), openapi_extra=needs("roles:write")
    )
    async def update_role(name: str, body: RoleUpdate) -> RoleOut:
        """Change a custom role's permissions: every principal bound to it gets them at its next request."""
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role: it cannot change (make a custom role instead)")
        current_role = await access.roles.get(name)
        checked_permissions(current_role.value.permissions)  # changing it is granting what it held, too
        permissions = checked_permissions(body.permissions)
        record = current_role.value.model_copy(
            update={"description": body.description, "permissions": permissions, "updated_at": time.time()}
        )
        revision = await access.roles.update(name, record, current_role.revision)
        return RoleOut(
            name=name, description=body.description, permissions=permissions, builtin=False, revision=revision
        )

    @router.delete(
        "/roles/{name}",
        status_code=204,
        tags=["access"],
        responses=documented(404, 409),
        openapi_extra=needs("roles:write"),
    )
    async def delete_role(name: str) -> Response:
        """Delete a custom role no principal is bound to."""
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role")
        bound = [n for n, f in await access.principals.list() if any(b.role == name for b in f.value.roles)]
        if bound:
            raise Conflict(f"role {name!r} is still bound to {', '.join(map(repr, bound[:5]))}; unbind it first")
        await access.roles.delete(name)
        return Response(status_code=204)

    # ------------------------------------------------------------------ principals

    @router.get("/principals", tags=["access"], openapi_extra=needs("principals:read"))
    async def list_principals() -> list[PrincipalOut]:
        """Every principal (never a token: `GET .../tokens` lists their ids)."""
        return [_principal_out(found) for _, found in await access.principals.list()]

    @router.get(
        "/principals/{name}", tags=["access"], responses=documented(404), openapi_extra=needs("principals:read")
    )
    async def get_principal(name: NameParam) -> PrincipalOut:
        return _principal_out(await principal(name))

    @router.post(
        "/principals",
        status_code=201,
        tags=["access"],
        responses=documented(409, 422),
        openapi_extra=needs("principals:write"),
    )
    async def create_principal(body: PrincipalCreate) -> PrincipalCreated:
        """A person (who signs in through the oauth service as `user_id`) or automation, with its roles;
        `token` issues an API token at once (shown in this answer only). With the bootstrap token: the
        first owner, and nothing else."""
        identity = current()
        if body.name == BOOTSTRAP:
            msg = "reserved: audit events name the bootstrap token so"
            raise invalid([FieldError(loc=["body", "name"], msg=msg, type="reserved")])
        roles = await custom()
        await check_roles(body.roles, roles)
        if identity.via == "bootstrap":
            if not any(b.role == OWNER and not b.scoped for b in body.roles):
                raise forbidden(identity, "principals:write", None) from None
        else:
            await may_manage(identity, body.roles)
        await user_taken(body.user_id, body.name)
        record = Principal(
            name=body.name, kind=body.kind, user_id=body.user_id, roles=body.roles, created_by=identity.principal
        )
        revision = await access.principals.create(body.name, record)
        log.info(
            "admin: %s created principal %r (%s)",
            identity.principal,
            body.name,
            ",".join(b.label() for b in body.roles),
        )
        created = PrincipalCreated(principal=_principal_out(Versioned(record, revision)))
        if body.token is not None:
            secret, token = await access.issue_token(body.name, body.token.label, days(body.token), identity.principal)
            created.token = TokenCreated(secret=secret, token=_token_out(token.value))
        return created

    @router.patch(
        "/principals/{name}",
        tags=["access"],
        responses=documented(404, 409, 422),
        openapi_extra=needs("principals:write"),
    )
    async def update_principal(name: NameParam, body: PrincipalPatch) -> PrincipalOut:
        """Change a principal's roles, `user_id`, or disable it (its tokens and sessions are refused
        while disabled). Absent fields stay as they are."""
        identity = current()
        found = await principal(name)
        changes = body.model_dump(include=body.model_fields_set)
        if "roles" in changes and body.roles is None:
            raise invalid([FieldError(loc=["body", "roles"], msg="may not be null", type="null")])
        if "disabled" in changes and body.disabled is None:
            raise invalid([FieldError(loc=["body", "disabled"], msg="may not be null", type="null")])
        new_roles = body.roles if body.roles is not None else found.value.roles
        await check_roles(new_roles, await custom())
        await may_manage(identity, found.value.roles, new_roles)
        if "user_id" in changes:
            await user_taken(body.user_id, name)
        updated = found.value.model_copy(update={**changes, "roles": new_roles, "updated_at": time.time()})
        await keeps_an_owner(name, updated)
        revision = await access.principals.update(name, updated, found.revision)
        return _principal_out(Versioned(updated, revision))

    @router.delete(
        "/principals/{name}",
        status_code=204,
        tags=["access"],
        responses=documented(404, 409),
        openapi_extra=needs("principals:write"),
    )
    async def delete_principal(name: NameParam) -> Response:
        """Delete a principal with its API tokens and sessions (its audit events stay)."""
        identity = current()
        found = await principal(name)
        await may_manage(identity, found.value.roles)
        await keeps_an_owner(name, None)
        await access.principals.delete(name, found.revision)
        await access.forget(name)
        return Response(status_code=204)

    # ------------------------------------------------------------------ API tokens

    async def token_of(name: str, token_id: str) -> Versioned[ApiToken]:
        found = await access.tokens.get(token_id)
        if found.value.principal != name:
            raise access.tokens.missing(token_id)  # another principal's: not found here
        return found

    @router.get(
        "/principals/{name}/tokens", tags=["access"], responses=documented(404), openapi_extra=needs("principals:read")
    )
    async def list_tokens(name: NameParam) -> list[TokenOut]:
        """The principal's API tokens (ids, labels, expiry; never a token)."""
        await principal(name)
        return [_token_out(found.value) for found in await access.tokens_of(name)]

    @router.post(
        "/principals/{name}/tokens",
        status_code=201,
        tags=["access"],
        responses=documented(404, 422),
        openapi_extra=needs("principals:write"),
    )
    async def issue_token(name: NameParam, body: TokenCreate) -> TokenCreated:
        """Issue an API token; its secret is in this answer only."""
        identity = current()
        found = await principal(name)
        await may_manage(identity, found.value.roles)
        secret, token = await access.issue_token(name, body.label, days(body), identity.principal)
        return TokenCreated(secret=secret, token=_token_out(token.value))

    @router.post(
        "/principals/{name}/tokens/{token_id}/rotate",
        status_code=201,
        tags=["access"],
        responses=documented(404, 409),
        openapi_extra=needs("principals:write"),
    )
    async def rotate_token(name: NameParam, token_id: str, body: TokenCreate | None = None) -> TokenCreated:
        """A new token with the same label, and the old one revoked."""
        identity = current()
        await may_manage(identity, (await principal(name)).value.roles)
        secret, new = await access.rotate_token(await token_of(name, token_id), days(body), identity.principal)
        return TokenCreated(secret=secret, token=_token_out(new.value))

    @router.post(
        "/principals/{name}/tokens/{token_id}/revoke",
        tags=["access"],
        responses=documented(404),
        openapi_extra=needs("principals:write"),
    )
    async def revoke_token(name: NameParam, token_id: str) -> TokenOut:
        """Revoke a token: refused at once by every replica. Revoking twice is harmless."""
        identity = current()
        await may_manage(identity, (await principal(name)).value.roles)
        found = await token_of(name, token_id)
        if not found.value.revoked:
            await access.tokens.update(token_id, found.value.model_copy(update={"revoked": True}), found.revision)
        return _token_out(found.value.model_copy(update={"revoked": True}))

    return router
