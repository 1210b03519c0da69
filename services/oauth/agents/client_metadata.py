"""Client ID metadata documents (the MCP authorization spec 2025-11-25; draft-ietf-oauth-client-id-metadata-document).

A client that has not registered may use an https URL as its `client_id`; the JSON document at that
URL describes it (`client_name`, `redirect_uris`, ...). Bastion fetches it when the client first
shows up and re-fetches it after `_CACHE_SECONDS`. The document must name exactly that URL as its
`client_id`; such clients are public (`token_endpoint_auth_method: none`, PKCE as always), and their
redirect URIs obey the same rules as registered ones.

Fetching a URL a stranger chose is guarded: https only (plain http on a loopback address only with
`BASTION_CLIENT_METADATA_ALLOW_HTTP_LOOPBACK`, for development), never to a host that resolves to a
loopback, private, link-local or multicast address (`..fetch`; `BASTION_CLIENT_METADATA_ALLOW_PRIVATE`
for development), no redirects followed, at most `_MAX_DOCUMENT` bytes, a short timeout, and a
bounded cache.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Literal
from urllib.parse import urlsplit

import httpx2
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..fetch import AllowList, guarded_client, why_unreachable
from .records import ClientRecord
from .redirect_uris import LOOPBACK, redirect_uri_problem

__all__ = ["ClientMetadataDocuments", "ClientMetadataError", "is_metadata_url"]

log = logging.getLogger(__name__)

_MAX_DOCUMENT = 5 * 1024
_MAX_URL = 2000
_TIMEOUT = 5.0
_CACHE_SECONDS = 300.0
_CACHE_ENTRIES = 1000


class ClientMetadataError(Exception):
    """Why a metadata document client cannot be used (shown to the person, never redirected)."""


def is_metadata_url(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore")
    client_id: str = Field(max_length=_MAX_URL)
    client_name: str = Field(default="", max_length=200)
    redirect_uris: list[str] = Field(min_length=1, max_length=10)
    token_endpoint_auth_method: Literal["none"] = "none"
    grant_types: list[Literal["authorization_code", "refresh_token"]] = Field(
        default=["authorization_code", "refresh_token"], max_length=2
    )
    response_types: list[Literal["code"]] = Field(default=["code"], max_length=1)


class ClientMetadataDocuments:
    def __init__(
        self, allow_http_loopback: bool = False, allow_private: bool = False, allow: AllowList | None = None
    ) -> None:
        self.allow_http_loopback = allow_http_loopback
        self.allow_private = allow_private
        self.allow = allow or AllowList()
        """Internal hosts documents may come from all the same (`BASTION_CLIENT_METADATA_ALLOW_HOSTS`)."""
        self._cache: OrderedDict[str, tuple[float, ClientRecord]] = OrderedDict()

    def _url_problem(self, url: str) -> str | None:
        if len(url) > _MAX_URL:
            return f"a client_id URL may have at most {_MAX_URL} characters"
        try:
            parts = urlsplit(url)
        except ValueError:
            return "the client_id is not a URL"
        loopback_http = parts.scheme == "http" and parts.hostname in LOOPBACK and self.allow_http_loopback
        if parts.scheme != "https" and not loopback_http:
            return "a client_id URL must use https"
        if not parts.hostname or parts.username or parts.password or parts.fragment or "#" in url:
            return "a client_id URL must have a host and no credentials or fragment"
        if parts.path in ("", "/") or any(seg in (".", "..") for seg in parts.path.split("/")):
            return "a client_id URL must have a path without . or .. segments"
        return None

    async def lookup(self, client_id: str) -> ClientRecord:
        """The client the document at `client_id` describes; `ClientMetadataError` says why not."""
        if (problem := self._url_problem(client_id)) is not None:
            raise ClientMetadataError(problem)
        cached = self._cache.get(client_id)
        if cached is not None and cached[0] > time.monotonic():
            self._cache.move_to_end(client_id)
            return cached[1]
        record = await self._fetch(client_id)
        self._cache[client_id] = (time.monotonic() + _CACHE_SECONDS, record)
        while len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return record

    async def _fetch(self, url: str) -> ClientRecord:

        try:
            async with (
                guarded_client(_TIMEOUT, allow_private=self.allow_private, allow=self.allow) as http,
                http.stream("GET", url, headers={"accept": "application/json"}) as answer,
            ):
                if answer.status_code != 200:
                    raise ClientMetadataError(f"the client's metadata document answered HTTP {answer.status_code}")
                body = b""
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_DOCUMENT:
                        raise ClientMetadataError(f"the client's metadata document is over {_MAX_DOCUMENT} bytes")
        except httpx2.HTTPError as exc:
            raise ClientMetadataError(
                f"the client's metadata document cannot be fetched ({why_unreachable(exc)})"
            ) from None
        try:
            document = _Document.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise ClientMetadataError(f"the client's metadata document is not valid: {str(exc)[:200]}") from None
        if document.client_id != url:
            raise ClientMetadataError("the client's metadata document names another client_id than its own URL")
        for uri in document.redirect_uris:
            if problem := redirect_uri_problem(uri):
                raise ClientMetadataError(f"the client's metadata document lists a bad redirect URI: {problem}")
        log.info("client metadata document fetched for %s", url)
        return ClientRecord(
            client_id=url,
            client_name=document.client_name,
            redirect_uris=document.redirect_uris,
            token_endpoint_auth_method="none",
            grant_types=list(document.grant_types),
            source="metadata_document",
        )
