"""Search terms of a text: words split the way tool names and prose are written, products kept whole.

Words are split at punctuation, snake_case and camelCase (`createIssue` -> create, issue;
`list_merge_requests` -> list, merge, request), lower-cased and reduced to a stem (Snowball
English: "merging", "merged" and "merges" are one term). Names of products and servers are
entities: `GitHub` is one term, `github`, not git + hub, and so is `Git Hub`; which names count as
entities is a fixed list of well-known products plus the names of the servers in the catalog.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

import snowballstemmer

__all__ = ["PRODUCTS", "Terms"]

PRODUCTS: Final = frozenset(
    name.lower()
    for name in (
        "GitHub GitLab BitBucket DigitalOcean CloudWatch CloudTrail CloudFormation DynamoDB MongoDB PostgreSQL "
        "MySQL SQLite ClickHouse MotherDuck DuckDB BigQuery OpenSearch ElasticSearch LaunchDarkly HubSpot "
        "SalesForce ElevenLabs YouTube LinkedIn PagerDuty OpsGenie ServiceNow JavaScript TypeScript GraphQL "
        "PromQL TraceQL LogQL OpenAPI OAuth WordPress WhatsApp FireCrawl BrowserBase PlayWright SendGrid "
        "MailChimp QuickBooks NetSuite SharePoint OneDrive DropBox AirTable AirBnb CircleCI TravisCI "
        "OpenAI DeepSeek HuggingFace MLflow PyTorch TensorFlow NodeJS NextJS VSCode JetBrains IntelliJ "
        "PowerShell RabbitMQ ActiveMQ OpenTelemetry StatusPage UptimeRobot WebSocket"
    ).split()
)
"""Product names written with inner capitals that a camelCase split would break apart."""

_RAW = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ACRONYMS = re.compile(r"[A-Z]{2,}s")
_STOP: Final = frozenset(
    "a an and the of to in on for by with or is are be it its this that from as at into via i me my we our "
    "you your can do does how what which who when where please".split()
)
_stemmer = snowballstemmer.stemmer("english")


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    stem: str = _stemmer.stemWord(word)
    return stem


class Terms:
    """A tokenizer that knows `entities` (lower-case names kept whole); immutable, shareable."""

    def __init__(self, entities: Iterable[str] = ()) -> None:
        self.entities = frozenset(PRODUCTS | {e.lower() for e in entities if e.isalnum() and len(e) > 2})

    def __call__(self, text: str) -> list[str]:
        """The terms of `text` in order; an entity written as two words also yields the joined entity."""
        out: list[str] = []
        previous = ""
        for raw in _RAW.findall(text):
            lower = raw.lower()
            if lower in self.entities:
                parts = [lower]
            elif _ACRONYMS.fullmatch(raw):  # PRs, MRs, URLs
                parts = [lower[:-1]]
            else:
                parts = [p.lower() for p in _CAMEL.split(raw) if p]
            for part in parts:
                joined = previous + part
                if previous and joined in self.entities:
                    out.append(joined)  # "Digital Ocean", "git hub"
                previous = part
                if part not in _STOP:
                    out.append(part if part in self.entities else _stem(part))
        return out
