"""Checks on every request an upstream gets and every listing it makes (`interface`), run in order by one chain.

(`chain`). `configured` is the ordered list a deployment's settings turn on: add a line there for a new
interceptor."""

from __future__ import annotations

from libs.common.settings import ExecutorSettings

from .chain import InterceptorChain
from .definition_secrets import DefinitionSecretsInterceptor, WithholdingDefinitionSecrets
from .deny_list import DenyListInterceptor
from .guardrails import GuardrailsInterceptor
from .interface import InterceptedCall, InterceptedListing, InterceptedMessage, Interceptor, Refused
from .pinning import PinningInterceptor

__all__ = [
    "DefinitionSecretsInterceptor",
    "DenyListInterceptor",
    "GuardrailsInterceptor",
    "InterceptedCall",
    "InterceptedListing",
    "InterceptedMessage",
    "Interceptor",
    "InterceptorChain",
    "PinningInterceptor",
    "Refused",
    "WithholdingDefinitionSecrets",
    "configured",
]


def configured(settings: ExecutorSettings) -> list[Interceptor]:
    """The interceptors `settings` turn on, in the order they run.

    (Before the call and at listing; after the result too, in this order). Pinning sees each definition
    as the upstream sent it (its hash is of that), before the guardrails may redact one; definitions
    carrying a credential are found before pinning decides, so it can quarantine them."""
    chain: list[Interceptor] = []
    if settings.deny_list is not None:
        chain.append(DenyListInterceptor(settings.deny_list))
    section = settings.guardrails
    if section.defaults and section.definition_secrets == "quarantine":
        screen = (
            DefinitionSecretsInterceptor(section, True) if settings.pinning else WithholdingDefinitionSecrets(section)
        )
        chain.append(screen)
    if settings.pinning:
        chain.append(PinningInterceptor(settings.instance))
    guardrails = GuardrailsInterceptor(settings.guardrails)
    if guardrails.engine.rules:
        chain.append(guardrails)
    return chain
