"""Small files the bridge keeps in its state dir for later commands and restarts."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

TRANSLATORS_FILE = "translators.json"
SALT_FILE = "mask_salt"


def remember_translators(state_dir: Path, modules: tuple[str, ...]) -> None:
    """Record the bridge's translator modules so `cdc events`/`cdc dlq` default to the same ones."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / TRANSLATORS_FILE).write_text(json.dumps({"translators": list(modules)}) + "\n")


def remembered_translators(state_dir: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads((state_dir / TRANSLATORS_FILE).read_text())["translators"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def mask_salt(state_dir: Path, salt_env: str) -> SecretStr:
    """The salt for hashed columns: from the environment variable the settings name, else a random
    one kept (mode 0600) under the state dir so hashes stay stable across restarts."""
    from_env = os.environ.get(salt_env, "")
    if from_env:
        return SecretStr(from_env)
    path = state_dir / SALT_FILE
    if path.exists():
        return SecretStr(path.read_text().strip())
    state_dir.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(salt + "\n")
    return SecretStr(salt)
