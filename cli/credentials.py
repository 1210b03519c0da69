"""The credentials `bastion up` makes for the stack it runs, all in `<data_dir>/credentials` (0700).

- one NATS NKey per role (`libs.common.bus.permissions.ROLES`): the seed in `<role>.nk` (0600), read by
  that service alone (`BASTION_NATS_NKEY_SEED_FILE`); the public key goes into the embedded
  nats-server's `authorization` block with the role's permissions. New on every `up`: a seed left
  over from an earlier run opens nothing. With an external NATS the seeds come from
  `BASTION_NATS_CREDENTIALS_DIR` (what `bastion config nats-credentials` wrote for that server), or
  there are none and the services connect anonymously.
- the Valkey password of the policy service, new on every `up`, carried only in policy's Redis URL.
- the key policy signs the executors' work with (`libs.common.bus.work_signing`), new on every `up`.
- the key sealing upstream secrets in KV (`libs.common.runtime.sealing`): `BASTION_SECRETS_KEY` if set,
  else `secrets.key`, made once and kept, because the JetStream store (and the sealed values in it)
  outlives a run.
- the ingress replicas' session secret: `BASTION_SESSION_SECRET` if set, else derived from the
  secrets key (HMAC-SHA256 over a label of its own), so every replica of the stack, and the stack
  after a restart, accepts the sessions any of them issued. Never written anywhere: handed to the
  replicas through their pipes; knowing it tells nothing of the secrets key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import nkeys
from nats.aio.client import Client as NATS

from libs.common.bus.nats import credentials, processed, servers
from libs.common.bus.permissions import ADMIN, ROLES, render_authorization
from libs.common.runtime.sealing import Sealer, new_key

from .stack import private_dir, private_file
from .summary import safe_url

__all__ = [
    "AUTHORIZATION_FILE",
    "CREDENTIALS_DIR",
    "CredentialsRefused",
    "StackCredentials",
    "connect_as_admin",
    "make_credentials",
    "new_nkey_seed",
    "session_secret",
    "write_nats_credentials",
]

CREDENTIALS_DIR = "credentials"
AUTHORIZATION_FILE = "authorization.conf"
_SECRETS_KEY_FILE = "secrets.key"
_CHECKPOINT_KEY_FILE = "checkpoint.key"


@dataclass(frozen=True)
class StackCredentials:
    seed_files: dict[str, Path]
    """role -> its NKey seed file."""
    public_keys: dict[str, str]
    """role -> its NKey public key (`U…`)."""
    valkey_password: str
    secrets_key: str
    bus_signing_key: str
    checkpoint_key: str = ""
    """Signs the audit trail's checkpoints; kept across restarts, or older checkpoints stop verifying."""
    session_secret: str = ""
    """Signs the ingress replicas' session ids (`session_secret`): one for the whole stack."""

    @property
    def authorization(self) -> str:
        """The nats-server `authorization` block for these keys."""
        if set(self.public_keys) != set(ROLES):
            raise ValueError("an NKey for every role is needed to secure an embedded NATS")
        return render_authorization(self.public_keys)

    def seed_file(self, role: str) -> str:
        """The role's seed file, or "" when there is none (an open NATS)."""
        path = self.seed_files.get(role)
        return str(path) if path else ""


def new_nkey_seed() -> tuple[str, str]:
    """A fresh NKey user: (seed `SU…`, public key `U…`)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode(), nkeys.from_seed(bytearray(seed)).public_key.decode()


def _secrets_key(root: Path, environ: Mapping[str, str]) -> str:
    if key := environ.get("BASTION_SECRETS_KEY", "").strip():
        Sealer(key)  # a malformed key fails here, before anything starts
        return key
    path = root / _SECRETS_KEY_FILE
    if path.exists():
        path.chmod(0o600)
        return path.read_text().strip()
    key = new_key()
    private_file(path, key + "\n")
    return key


def _checkpoint_key(root: Path, environ: Mapping[str, str]) -> str:
    if key := environ.get("BASTION_CHECKPOINT_KEY", "").strip():
        return key
    path = root / _CHECKPOINT_KEY_FILE
    if path.exists():
        path.chmod(0o600)
        return path.read_text().strip()
    key = secrets.token_urlsafe(32)
    private_file(path, key + "\n")
    return key


_SESSION_LABEL = b"bastion ingress session ids v1"


def session_secret(secrets_key: str, environ: Mapping[str, str]) -> str:
    """`BASTION_SESSION_SECRET` if set, else one derived from the stack's secrets key.

    The same for every replica and every restart of the stack, changed with the secrets key."""
    if given := environ.get("BASTION_SESSION_SECRET", "").strip():
        return given
    derived = hmac.new(secrets_key.encode(), _SESSION_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(derived).rstrip(b"=").decode()


def _seeds(root: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """A new `<role>.nk` (0600) in `root` for every role: (role -> seed file, role -> public key)."""
    seed_files: dict[str, Path] = {}
    public_keys: dict[str, str] = {}
    for role in ROLES:
        seed, public = new_nkey_seed()
        seed_files[role] = private_file(root / f"{role}.nk", seed + "\n")
        public_keys[role] = public
    return seed_files, public_keys


def write_nats_credentials(out: Path) -> dict[str, Path]:
    """For a production nats-server (`bastion config nats-credentials`).

    A seed per role in `out` (0700) and `authorization.conf`, the block to `include` in the server's
    config. Returns the seed files by role; existing ones are replaced (so the old keys stop working once
    the server reloads the new block)."""
    root = private_dir(out)
    seed_files, public_keys = _seeds(root)
    private_file(root / AUTHORIZATION_FILE, render_authorization(public_keys))
    return seed_files


def _existing_seeds(folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The `<role>.nk` seeds `bastion config nats-credentials` wrote into `folder`."""
    seed_files: dict[str, Path] = {}
    public_keys: dict[str, str] = {}
    for role in ROLES:
        path = folder / f"{role}.nk"
        try:
            public_keys[role] = nkeys.from_seed(bytearray(path.read_bytes().strip())).public_key.decode()
        except OSError as exc:
            raise ValueError(f"BASTION_NATS_CREDENTIALS_DIR: cannot read {path}: {exc.strerror}") from None
        except Exception:  # the nkeys errors carry no message worth more than this
            raise ValueError(f"BASTION_NATS_CREDENTIALS_DIR: {path} is not an NKey user seed") from None
        seed_files[role] = path
    return seed_files, public_keys


def make_credentials(data_dir: Path, environ: Mapping[str, str], *, new_nkeys: bool = True) -> StackCredentials:
    """Everything the stack needs.

    NKeys from `BASTION_NATS_CREDENTIALS_DIR` if set, else new ones (`new_nkeys`, for the embedded NATS),
    else none."""
    private_dir(data_dir)
    root = private_dir(data_dir / CREDENTIALS_DIR)
    if folder := environ.get("BASTION_NATS_CREDENTIALS_DIR", "").strip():
        seed_files, public_keys = _existing_seeds(Path(folder).expanduser())
    elif new_nkeys:
        seed_files, public_keys = _seeds(root)
    else:
        seed_files, public_keys = {}, {}
    secrets_key = _secrets_key(root, environ)
    return StackCredentials(
        seed_files=seed_files,
        public_keys=public_keys,
        valkey_password=secrets.token_urlsafe(32),
        secrets_key=secrets_key,
        bus_signing_key=secrets.token_urlsafe(32),
        checkpoint_key=_checkpoint_key(root, environ),
        session_secret=session_secret(secrets_key, environ),
    )


class CredentialsRefused(PermissionError):
    """NATS refused the admin role's connection or its subjects; the message says what to set."""


async def connect_as_admin(url: str, seed_file: str, name: str, attempts: int = 5) -> NATS:
    """A CLI connection as the admin role that fails fast and says why.

    A refused key or another role's key is an error to fix, not a NATS blip to retry for half a minute."""
    problems: list[str] = []

    async def remember(exc: Exception) -> None:
        problems.append(str(exc))

    hint = (
        "set BASTION_NATS_NKEY_SEED_FILE to the admin role's seed (`bastion up` names it in stack.json as "
        "admin_nkey_seed_file; for your own NATS it is admin.nk from `bastion config nats-credentials`)"
    )
    try:
        nc = await nats.connect(
            servers=servers(url),
            name=name,
            connect_timeout=3,
            max_reconnect_attempts=attempts,
            reconnect_time_wait=0.5,
            error_cb=remember,
            **credentials(ADMIN, seed_file),
        )
    except Exception as exc:
        if any("authorization violation" in p.lower() for p in [*problems, str(exc)]):
            raise CredentialsRefused(f"NATS at {safe_url(url)} refused the connection: {hint}") from None
        raise
    try:
        await asyncio.wait_for(processed(nc), 5)  # our own inbox: refused unless these are admin's keys
    except (TimeoutError, nats.errors.Error):
        await nc.close()
        if any("permissions violation" in p.lower() for p in problems):
            raise CredentialsRefused(
                f"NATS at {safe_url(url)} did not accept these as the admin role's credentials: {hint}"
            ) from None
        raise
    return nc
