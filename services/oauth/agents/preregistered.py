"""Pre-registered OAuth clients: declared by an operator in a file, not registered over HTTP.

`BASTION_OAUTH_CLIENTS_FILE` names a YAML (or JSON) list; each entry is a client with a fixed
`client_id`, its `redirect_uris`, and either no secret (a public client, PKCE only) or the SHA-256 of
its secret (`client_secret_sha256`: the secret itself never sits in the file or in Bastion):

    - client_id: internal-agent
      client_name: Internal agent
      redirect_uris: [https://agent.example.com/oauth/callback]
      token_endpoint_auth_method: client_secret_basic
      client_secret_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

The file is read once at start; a bad file stops the service with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .records import ClientRecord
from .redirect_uris import redirect_uri_problem

__all__ = ["load_clients"]

_MAX_CLIENTS = 1000


class _Declared(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._~-]+$")
    client_name: str = Field(default="", max_length=200)
    redirect_uris: list[str] = Field(min_length=1, max_length=10)
    token_endpoint_auth_method: Literal["none", "client_secret_post", "client_secret_basic"] = "none"
    client_secret_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _secret_matches_method(self) -> _Declared:
        if (self.token_endpoint_auth_method == "none") != (self.client_secret_sha256 is None):
            raise ValueError("a client_secret_sha256 goes with client_secret_basic/_post, and only with them")
        return self


def load_clients(path: str) -> dict[str, ClientRecord]:
    """client_id -> record; `ValueError` naming the file and the problem."""

    try:
        raw = yaml.safe_load(Path(path).read_text())
        declared = TypeAdapter(list[_Declared]).validate_python(raw or [])
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ValueError(f"BASTION_OAUTH_CLIENTS_FILE {path}: {exc}") from None
    if len(declared) > _MAX_CLIENTS:
        raise ValueError(f"BASTION_OAUTH_CLIENTS_FILE {path}: at most {_MAX_CLIENTS} clients")
    clients: dict[str, ClientRecord] = {}
    for entry in declared:
        if entry.client_id in clients or entry.client_id.startswith("bc_"):
            raise ValueError(f"BASTION_OAUTH_CLIENTS_FILE {path}: client_id {entry.client_id!r} is taken or reserved")
        for uri in entry.redirect_uris:
            if problem := redirect_uri_problem(uri):
                raise ValueError(f"BASTION_OAUTH_CLIENTS_FILE {path}: {entry.client_id}: {problem}")
        clients[entry.client_id] = ClientRecord(
            client_id=entry.client_id,
            client_name=entry.client_name,
            redirect_uris=entry.redirect_uris,
            token_endpoint_auth_method=entry.token_endpoint_auth_method,
            secret_digest=entry.client_secret_sha256,
            source="operator",
        )
    return clients
