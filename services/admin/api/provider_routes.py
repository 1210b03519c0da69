"""`/admin/v1/llm-providers`: the OpenAI-compatible providers behind `/v1`; their `api_key` is sealed
when stored and masked when shown.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging

from fastapi import APIRouter, Response

from libs.common.llm import ProviderRecord
from libs.common.llm_config import ProviderConfig

from .errors import invalid
from .models import MASK, FieldError, ProviderCreate, ProviderOut, ProviderUpdate
from .route_helpers import IfMatch, check_expected, etag, expected_revision
from .route_table import Route, register
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


def sealed(store: AdminStore, config: ProviderConfig, old: ProviderConfig | None = None) -> ProviderConfig:
    api_key = config.api_key
    if api_key == MASK:  # sent back as read: keep what is stored
        api_key = old.api_key if old is not None else None
        if api_key is None:
            raise invalid([FieldError(loc=["body", "config", "api_key"], msg="no stored key to keep", type="mask")])
    return config.model_copy(update={"api_key": store.sealer.seal_value(api_key) if api_key is not None else None})


async def list_providers(store: AdminStore) -> list[ProviderOut]:
    """The OpenAI-compatible providers behind `/v1/chat/completions`; `api_key` values are masked."""
    return [provider_out(v.value, v.revision) for _, v in await store.providers.list()]


async def get_provider(store: AdminStore, name: str, response: Response) -> ProviderOut:
    """One provider (its `api_key` masked)."""
    found = await store.providers.get(name)
    etag(response, found.revision)
    return provider_out(found.value, found.revision)


async def add_provider(store: AdminStore, body: ProviderCreate) -> ProviderOut:
    """Add a provider; ingress lists its models and executors call it at once (no restart)."""
    await served_elsewhere(store, body.name, body.config)
    record = ProviderRecord(name=body.name, config=sealed(store, body.config))
    revision = await store.providers.create(body.name, record)
    log.info("admin: added llm provider %r (%d model(s))", body.name, len(body.config.models))
    return provider_out(record, revision)


async def update_provider(
    store: AdminStore, name: str, body: ProviderUpdate, response: Response, if_match: IfMatch = None
) -> ProviderOut:
    """Replace a provider's entry (an `api_key` sent back masked keeps the stored key)."""
    expected = expected_revision(if_match)
    current = await store.providers.get(name)
    check_expected(current, expected, store.providers.stale(name))
    await served_elsewhere(store, name, body.config)
    record = ProviderRecord(name=name, config=sealed(store, body.config, current.value.config))
    revision = await store.providers.update(name, record, current.revision)
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
