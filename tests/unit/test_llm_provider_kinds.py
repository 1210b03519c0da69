"""A provider's kind and its own fields: required where its wire needs them, refused elsewhere, the
provider's public endpoint filled in when `base_url` is left out."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from libs.common.contracts.llm_config import ProviderConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("fields", "base_url"),
    [
        ({"kind": "anthropic"}, "https://api.anthropic.com/v1"),
        ({"kind": "gemini"}, "https://generativelanguage.googleapis.com/v1beta"),
        (
            {"kind": "vertex", "project": "my-project", "location": "europe-west4"},
            "https://europe-west4-aiplatform.googleapis.com/v1",
        ),
        ({"kind": "vertex", "project": "my-project", "location": "global"}, "https://aiplatform.googleapis.com/v1"),
        ({"kind": "bedrock", "region": "us-east-1"}, "https://bedrock-runtime.us-east-1.amazonaws.com"),
    ],
)
def test_a_kind_with_a_public_endpoint_defaults_to_it(fields, base_url):
    assert ProviderConfig(models=["m"], **fields).base_url == base_url


def test_azure_defaults_its_api_version_and_key_header():
    config = ProviderConfig(kind="azure", base_url="https://res.openai.azure.com/openai", models=["dep"])
    assert (config.api_version, config.azure_auth) == ("2024-10-21", "api-key")
    # a stored record (defaults written out) reads back the same
    assert ProviderConfig.model_validate(config.model_dump()) == config


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "kind openai needs base_url"),
        ({"kind": "azure"}, "kind azure needs base_url"),
        ({"kind": "bedrock"}, "kind bedrock needs region"),
        ({"kind": "vertex", "location": "us-central1"}, "kind vertex needs project"),
        ({"kind": "vertex", "project": "my-project"}, "kind vertex needs location"),
        ({"base_url": "https://x.example/v1", "region": "us-east-1"}, "region applies to kind bedrock only"),
        ({"kind": "gemini", "azure_auth": "entra"}, "azure_auth applies to kind azure only"),
        ({"kind": "bedrock", "region": "us-east-1; rm -rf"}, "String should match pattern"),
        ({"kind": "azure", "base_url": "https://r.openai.azure.com/openai", "api_version": "v1&x=y"}, "pattern"),
    ],
)
def test_a_kind_field_missing_or_misplaced_is_a_clear_error(fields, error):
    with pytest.raises(ValidationError, match=error):
        ProviderConfig(models=["m"], **fields)


AZURE = {"kind": "azure", "base_url": "https://res.openai.azure.com/openai"}
VERTEX = {"kind": "vertex", "project": "my-project", "location": "us-central1"}


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({**AZURE, "azure_auth": "entra", "tenant_id": "contoso.onmicrosoft.com"}, "tenant_id and client_id together"),
        ({**AZURE, "tenant_id": "t", "client_id": "c"}, "go with azure_auth: entra"),
        ({**AZURE, "azure_auth": "entra", "token_url": "https://login.example/token"}, "token_url applies to"),
        ({**VERTEX, "token_url": "https://oauth2.example/token"}, "token_url applies to"),
        ({**VERTEX, "vertex_auth": "service-account", "token_url": "ftp://x"}, "http:// or https://"),
        ({"kind": "gemini", "vertex_auth": "service-account"}, "vertex_auth applies to kind vertex only"),
        ({"kind": "openai", "base_url": "https://x/v1", "tenant_id": "t", "client_id": "c"}, "applies to kind azure"),
    ],
)
def test_token_fields_out_of_place_are_clear_errors(fields, error):
    with pytest.raises(ValidationError, match=error):
        ProviderConfig(models=["m"], **fields)


def test_only_client_credentials_and_service_accounts_fetch_tokens():
    entra = {**AZURE, "azure_auth": "entra"}
    assert not ProviderConfig(models=["m"], **entra).fetches_tokens  # the key is an access token itself
    assert ProviderConfig(models=["m"], **entra, tenant_id="t", client_id="c").fetches_tokens
    assert not ProviderConfig(models=["m"], **VERTEX).fetches_tokens
    assert ProviderConfig(models=["m"], **VERTEX, vertex_auth="service-account").fetches_tokens
