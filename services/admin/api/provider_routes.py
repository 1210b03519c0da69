"""`/admin/v1/llm-providers`: the OpenAI-compatible providers behind `/v1`.

Their `api_key` is sealed when stored and masked when shown.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging

from fastapi import APIRouter, Response

from libs.common.contracts.llm import ProviderRecord
from libs.common.contracts.llm_config import ProviderConfig
from libs.common.runtime.sealing import SealingError

from .command_rights import require_provider_fields
from .identity import current
from .models import MASK, ProviderCreate, ProviderOut, ProviderUpdate
from .route_helpers import IfMatch, check_expected, etag, expected_revision
from .route_table import Route, register
from .secret_binding import unmask_provider_key
from .store import AdminStore, Conflict

__all__ = ["provider_routes"]

log = logging.getLogger(__name__)


def provider_out(record: ProviderRecord, revision: int) -> ProviderOut:
    config = record.config.model_copy(update={"api_key": MASK if record.config.api_key is not None else None})
    return ProviderOut(name=record.name, config=config, source=record.source, revision=revision)


async def served_elsewhere(store: AdminStore, name: str, config: ProviderConfig) -> None:
    """A model has one provider: a request's `model` names it."""
    for other, found in await store.providers.list():
        if other != name and (taken := sorted(set(found.value.config.models) & set(config.models))):
            raise Conflict(f"provider {other!r} already serves {', '.join(map(repr, taken))}; a model has one provider")


def sealed(store: AdminStore, name: str, config: ProviderConfig, old: ProviderConfig | None = None) -> ProviderConfig:
    """`config` as stored: its key sealed.

    The mask keeps the stored key for the same `base_url` only (`secret_binding`); naming an environment
    variable is the owner's (`require_provider_fields`)."""
    what = f"llm provider {name!r}"
    require_provider_fields(current(), what, old, config)
    old_key = _opened(store, old.api_key) if old is not None and old.api_key is not None else None
    api_key = unmask_provider_key(config, old, old_key, what)
    return config.model_copy(update={"api_key": store.sealer.seal_value(api_key) if api_key is not None else None})


def _opened(store: AdminStore, value: str) -> str:
    """The stored key in the clear, or as stored when this replica cannot open it (kept as it is)."""
    try:
        return store.sealer.open_value(value)
    except SealingError:
        return value


async def list_providers(store: AdminStore) -> list[ProviderOut]:
    """The OpenAI-compatible providers behind `/v1/chat/completions`; `api_key` values are masked."""
    return [provider_out(v.value, v.revision) for _, v in await store.providers.list()]


async def get_provider(store: AdminStore, name: str, response: Response) -> ProviderOut:
    """One provider (its `api_key` masked)."""
    found = await store.providers.get(name)
    etag(response, found.revision)
    return provider_out(found.value, found.revision)


async def add_provider(store: AdminStore, body: ProviderCreate) -> ProviderOut:
    """Add a provider; ingress lists its models and executors call it at once (no restart).

    One that names `api_key_env` (a variable of the executors' environment) needs `servers:command`: the
    owner's."""
    await served_elsewhere(store, body.name, body.config)
    record = ProviderRecord(name=body.name, config=sealed(store, body.name, body.config))
    revision = await store.providers.create(body.name, record)
    log.info("admin: added llm provider %r (%d model(s))", body.name, len(body.config.models))
    return provider_out(record, revision)


async def update_provider(
    store: AdminStore, name: str, body: ProviderUpdate, response: Response, if_match: IfMatch = None
) -> ProviderOut:
    """Replace a provider's entry.

    (An `api_key` sent back masked keeps the stored key while `base_url` stays, else 422
    `secret_unbound`). Setting `api_key_env`, or changing `base_url` while it is set, needs
    `servers:command`: the owner's."""
    expected = expected_revision(if_match)
    stored = await store.providers.get(name)
    check_expected(stored, expected, store.providers.stale(name))
    await served_elsewhere(store, name, body.config)
    record = ProviderRecord(name=name, config=sealed(store, name, body.config, stored.value.config))
    revision = await store.providers.update(name, record, stored.revision)
    log.info("admin: updated llm provider %r", name)
    etag(response, revision)
    return provider_out(record, revision)


async def remove_provider(store: AdminStore, name: str, if_match: IfMatch = None) -> Response:
    """Remove a provider; its models disappear from `/v1/models`."""
    await store.providers.delete(name, expected_revision(if_match))
    log.info("admin: removed llm provider %r", name)
    return Response(status_code=204)


PROVIDER_ROUTES = (
    Route("GET", "/llm-providers", "providers:read", list_providers),
    Route("GET", "/llm-providers/{name}", "providers:read", get_provider, errors=(404,)),
    Route("POST", "/llm-providers", "providers:write", add_provider, 201, (409, 422)),
    Route("PUT", "/llm-providers/{name}", "providers:write", update_provider, errors=(404, 409, 422)),
    Route("DELETE", "/llm-providers/{name}", "providers:write", remove_provider, 204, (404, 409)),
)


def provider_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, PROVIDER_ROUTES, "llm", store)
