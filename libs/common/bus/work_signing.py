"""Work for the executor is signed by policy: subject permissions alone cannot guarantee who sent it.

The bus lets only policy publish `bastion.exec.call` / `bastion.exec.request`
(`libs.common.bus.permissions`), but JetStream can publish on a client's behalf: a client allowed to
write a KV bucket and to watch it can create a push consumer whose *deliver subject* is any subject,
and the server then delivers the stored value there, whatever the client's own publish permissions.
With ingress credentials that is enough to hand an executor a forged `ToolCall`.

So policy adds an HMAC-SHA256 over the subject, the reply subject and the body (header
`Bastion-Signature`), with a key only policy and the executors hold (`BASTION_BUS_SIGNING_KEY`),
and an executor with a key runs nothing that does not carry a valid one. The reply subject is
signed too, so a signed message cannot be redirected to answer someone else. Without a key (an
open test bus) nothing is signed or checked.

The same key signs policy's reusable decisions (`messages.Grant`): a grant's MAC binds the kind of
request, the whole caller, the server, the target, the request's narrowing headers, the price, the
expiry and the KV revisions policy decided at, so ingress can send that caller's next calls of that
target straight to an executor and the executor can tell a decision policy made from one ingress
made up. A grant's per-call policies (`Grant.condition`) are bound too: an ingress cannot drop or
loosen the policies its caller's calls must pass. Ingress can claim any caller to policy anyway (it
authenticates agents), so a grant gives an ingress nothing its credentials did not; what it must
not give is work policy never allowed, or a caller or target swapped under a genuine decision.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import orjson
from pydantic import SecretStr

from libs.common.contracts.messages_policy import Grant, PolicyCondition
from libs.common.contracts.messages_routed import RoutedHead
from libs.common.contracts.subjects import WORK_SIGNATURE

__all__ = ["WorkSigner"]


class WorkSigner:
    def __init__(self, key: str | SecretStr = "") -> None:
        raw = key.get_secret_value() if isinstance(key, SecretStr) else key
        self._key = raw.encode() if raw else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _mac(self, subject: str, reply: str, data: bytes) -> str:
        assert self._key is not None
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        # lengths first: no two (subject, reply, body) triples share an encoding
        mac.update(f"{len(subject)}:{subject}\n{len(reply)}:{reply}\n".encode())
        mac.update(data)
        return mac.hexdigest()

    def headers(self, subject: str, reply: str, data: bytes) -> dict[str, str]:
        """The signature header for a message (none without a key)."""
        return {WORK_SIGNATURE: self._mac(subject, reply, data)} if self._key is not None else {}

    def verify(self, subject: str, reply: str | None, headers: dict[str, str] | None, data: bytes) -> bool:
        """Whether the message was signed with our key (always true without one)."""
        if self._key is None:
            return True
        given = (headers or {}).get(WORK_SIGNATURE, "")
        return bool(given) and hmac.compare_digest(given, self._mac(subject, reply or "", data))

    def grant_mac(
        self,
        kind: str,
        head: RoutedHead,
        expires: float,
        price: float | None,
        revisions: Mapping[str, int] | None = None,
        condition: PolicyCondition | None = None,
    ) -> str:
        """Policy's MAC over a decision; "" without a key.

        The decision: `head`'s caller may send `kind` requests to its target with its narrowing until
        `expires`, at `price`, taken at KV `revisions`, each call passing `condition`."""
        if self._key is None:
            return ""
        decided: list[object] = [kind, head.decision(), repr(expires), repr(price), sorted((revisions or {}).items())]
        if condition is not None:  # appended: a grant without one keeps the MAC it always had
            decided.append(condition.model_dump(mode="json"))
        return hmac.new(self._key, b"bastion-grant\n" + orjson.dumps(decided), hashlib.sha256).hexdigest()

    def genuine(self, kind: str, head: RoutedHead, grant: Grant) -> bool:
        """Whether policy made `grant` for exactly this request's caller, target and narrowing.

        (Always true without a key); expiry is the caller's to check."""
        if self._key is None:
            return True
        expected = self.grant_mac(kind, head, grant.expires, grant.price, grant.revisions, grant.condition)
        return bool(grant.mac) and hmac.compare_digest(grant.mac, expected)
