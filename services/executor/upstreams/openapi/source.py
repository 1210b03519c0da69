"""Reading OpenAPI documents: a file or an http(s) URL, YAML or JSON, bounded in size and count.

The document names other documents in its `$ref`s, and whoever wrote it chose those, so what it may
reach is narrowed: a document read from a URL may refer only to URLs of the same origin, one read from
a file only to files in the root document's folder or below it; no other scheme is followed. URLs
are fetched within the server's egress rules (`libs.common.contracts.egress`: public addresses, and the hosts
its owner allowed), every redirect hop included. Every
document read counts against one byte budget (`max_bytes`) and at most `MAX_DOCUMENTS` are read.

YAML is read with libyaml's safe loader, without turning `2024-01-01` into a date (a JSON document
has none, and tool definitions must stay JSON), and every mapping key becomes a string (`200:` in
`responses` is the status code "200").
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx2
import orjson
import yaml

from libs.common.web.egress_rules import EgressRules

from ..egress_guard import guarded_sync_transport, proxied_hooks, refusal_in

__all__ = ["MAX_DOCUMENTS", "DocumentError", "DocumentStamp", "Reader", "is_url", "parse_document"]

MAX_DOCUMENTS: Final = 64
"""Documents (the root and the files it refers to) read for one API at most."""
_REDIRECTS: Final = 5


class DocumentError(Exception):
    """A document cannot be used; the message says which and why (never a credential)."""


@dataclass(frozen=True, slots=True)
class DocumentStamp:
    """What a fetched document was.

    Its validators (`ETag`, `Last-Modified`), sent back in a conditional GET, and its bytes' digest,
    compared when the server answers without them or with the whole body."""

    etag: str | None
    last_modified: str | None
    digest: str

    def conditions(self) -> dict[str, str]:
        """The conditional request's headers (RFC 9110 §13.1): the server answers 304 when unchanged."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        return headers | ({"If-Modified-Since": self.last_modified} if self.last_modified else {})


def is_url(location: str) -> bool:
    return location.lower().startswith(("http://", "https://"))


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """The safe loader without the timestamp resolver: dates stay the strings the document wrote."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


def _string_keys(value: Any, depth: int = 0) -> Any:
    if depth > 512:
        raise DocumentError("the document nests deeper than 512 levels")
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _key_text(k): _string_keys(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v, depth + 1) for v in value]
    return value


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


def parse_document(data: bytes, where: str) -> Any:
    """JSON when it parses as JSON, else YAML; `where` names the document in errors."""
    text = data.removeprefix(b"\xef\xbb\xbf")
    if text.lstrip()[:1] in (b"{", b"["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # YAML flow style may also start with "{"
    try:
        loaded = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise DocumentError(f"{where}: neither JSON nor YAML: {problem}{at}") from None
    except RecursionError:
        raise DocumentError(f"{where}: nests too deep") from None
    return _string_keys(loaded)


class Reader:
    """Reads the documents of one API, each once, within one byte budget."""

    def __init__(self, root: str, *, max_bytes: int, timeout: float = 30.0, egress: EgressRules | None = None) -> None:
        self.root = root if is_url(root) else str(Path(root).expanduser().resolve())
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._egress = egress or EgressRules()
        self.read_bytes = 0
        self._documents: dict[str, Any] = {}
        self._client: httpx2.Client | None = None
        self._folder = None if is_url(self.root) else Path(self.root).parent
        self.stamps: dict[str, DocumentStamp] = {}
        """The documents fetched over HTTP, by URL: what a later `changed` compares with."""

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def resolve(self, reference: str, base: str) -> str:
        """The location `reference` (a `$ref` without its fragment) names, read from document `base`.

        `DocumentError` when that document may not be followed there."""
        if is_url(base):
            target = urljoin(base, reference)
            if urlsplit(target)[:2] != urlsplit(base)[:2] or not is_url(target):
                raise DocumentError(
                    f"refers to {_shown(reference)}: a document read from a URL may refer only to its own origin"
                )
            return urldefrag(target)[0]
        if ":" in reference.split("/", 1)[0] and not os.path.splitdrive(reference)[0]:
            raise DocumentError(f"refers to {_shown(reference)}: a document read from a file may refer only to files")
        assert self._folder is not None
        target_path = (Path(base).parent / reference).resolve()
        if not target_path.is_relative_to(self._folder):
            raise DocumentError(
                f"refers to {_shown(reference)}, outside the root document's folder (only files in it or below are)"
            )
        return str(target_path)

    def replace(self, location: str, document: Any) -> None:
        """Resolve references into `location` in `document` from now on (the root once converted)."""
        self._documents[location] = document

    def read(self, location: str) -> Any:
        """The parsed document at `location` (already `resolve`d), read once."""
        if location in self._documents:
            return self._documents[location]
        if len(self._documents) >= MAX_DOCUMENTS:
            raise DocumentError(f"refers to more than {MAX_DOCUMENTS} documents")
        data = self._fetch(location) if is_url(location) else self._file(location)
        assert data is not None  # an unconditional GET has a body or fails
        self.read_bytes += len(data)
        document = parse_document(data, _shown(location))
        self._documents[location] = document
        return document

    def _left(self) -> int:
        return self._max_bytes - self.read_bytes

    def _too_large(self, location: str) -> DocumentError:
        return DocumentError(
            f"{_shown(location)}: the documents are larger than {self._max_bytes:,} bytes "
            "together ('openapi.max_document_bytes')"
        )

    def _file(self, location: str) -> bytes:
        try:
            with open(location, "rb") as file:
                data = file.read(self._left() + 1)
        except OSError as exc:
            raise DocumentError(f"{_shown(location)}: cannot read it ({exc.strerror or type(exc).__name__})") from None
        if len(data) > self._left():
            raise self._too_large(location)
        return data

    def changed(self, location: str, stamp: DocumentStamp) -> bool:
        """Whether the document at `location` differs from `stamp`.

        A conditional GET (304: the same), else its bytes compared. `DocumentError` when it cannot be
        fetched (nothing is concluded)."""
        data = self._fetch(location, stamp.conditions())
        return data is not None and hashlib.sha256(data).hexdigest() != stamp.digest

    def _fetch(self, location: str, conditions: dict[str, str] | None = None) -> bytes | None:
        """The document's bytes (None: 304, unchanged since `conditions`), its stamp kept in `stamps`."""
        if self._client is None:
            self._client = httpx2.Client(
                timeout=self._timeout,
                follow_redirects=True,
                max_redirects=_REDIRECTS,
                transport=guarded_sync_transport(self._egress),
                event_hooks={"request": proxied_hooks(self._egress, blocking=True)},
                headers={"Accept": "application/json, application/yaml, application/x-yaml, text/yaml, */*;q=0.5"},
            )
        try:
            with self._client.stream("GET", location, headers=conditions) as response:
                if urlsplit(str(response.url))[:2] != urlsplit(location)[:2]:
                    raise DocumentError(
                        f"{_shown(location)}: redirected to another origin ({_shown(str(response.url))})"
                    )
                if response.status_code == 304 and conditions:
                    return None
                if response.status_code != 200:
                    raise DocumentError(f"{_shown(location)}: HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self._left():
                        raise self._too_large(location)
                    chunks.append(chunk)
                headers = response.headers
        except httpx2.HTTPError as exc:
            if (refused := refusal_in(exc)) is not None:
                raise DocumentError(f"{_shown(location)}: {refused}") from None
            raise DocumentError(f"{_shown(location)}: cannot fetch it ({type(exc).__name__}: {exc})") from None
        data = b"".join(chunks)
        digest = hashlib.sha256(data).hexdigest()
        self.stamps[location] = DocumentStamp(headers.get("etag"), headers.get("last-modified"), digest)
        return data


def _shown(location: str) -> str:
    """A location fit for a message: a URL without its query (it may hold a token)."""
    if is_url(location):
        parts = urlsplit(location)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
    return location
