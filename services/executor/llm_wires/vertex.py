"""Gemini on Vertex AI.

The Gemini wire under `<base_url>/projects/<project>/locations/<location>/publishers/google/models`, with
an OAuth access token as bearer (`api_key`/`api_key_env` holds it: a service account's token, such as
`gcloud auth print-access-token` gives)."""

from __future__ import annotations

from urllib.parse import quote

from libs.common.contracts.llm_config import ProviderConfig

from .gemini import GeminiWire

__all__ = ["VertexWire"]


class VertexWire(GeminiWire):
    @staticmethod
    def _models_path(config: ProviderConfig) -> str:
        project, location = quote(config.project or "", safe=""), quote(config.location or "", safe="")
        return f"/projects/{project}/locations/{location}/publishers/google/models"

    @staticmethod
    def _auth(credential: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {credential}"} if credential else {}
