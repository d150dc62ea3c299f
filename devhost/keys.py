"""Function keys, as the host keeps them, read from (and created in) a local JSON file.

```json
{
  "masterKey": "...",                                   # admin level: everything
  "functionKeys": {"default": "..."},                   # host keys: any FUNCTION-level function
  "systemKeys": {"eventgrid_extension": "...", "blobs_extension": "..."},   # extension webhooks
  "functions": {"<function name>": {"default": "..."}}  # keys for one function
}
```
Missing entries are filled with random keys at start (existing ones are never changed).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devhost.config import ConfigError

SYSTEM_KEY_NAMES = ("eventgrid_extension", "blobs_extension")
DEFAULT_KEYS_PATH = Path(".data") / "devhost" / "keys.json"


def new_key() -> str:
    return secrets.token_urlsafe(40)


def _str_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"{where} must be an object of name -> key strings")
    return dict(value)


@dataclass
class Keys:
    master_key: str
    function_keys: dict[str, str] = field(default_factory=dict)
    system_keys: dict[str, str] = field(default_factory=dict)
    functions: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "masterKey": self.master_key,
            "functionKeys": self.function_keys,
            "systemKeys": self.system_keys,
            "functions": self.functions,
        }

    @property
    def default_function_key(self) -> str:
        return self.function_keys["default"]

    def is_master(self, key: str | None) -> bool:
        return key is not None and hmac.compare_digest(key.encode(), self.master_key.encode())

    def allows_function(self, name: str, key: str | None) -> bool:
        """FUNCTION level: a key of that function, any host key, or the master key."""
        if key is None:
            return False
        candidates = [*self.functions.get(name, {}).values(), *self.function_keys.values(), self.master_key]
        return _any_equal(key, candidates)

    def allows_system(self, system_key_name: str, key: str | None) -> bool:
        if key is None:
            return False
        candidates = [self.master_key]
        if system_key_name in self.system_keys:
            candidates.append(self.system_keys[system_key_name])
        return _any_equal(key, candidates)


def _any_equal(key: str, candidates: Iterable[str]) -> bool:
    raw = key.encode()
    # compare against every candidate so timing does not reveal which one matched
    return any(hmac.compare_digest(raw, c.encode()) for c in candidates)


def load_or_create(path: Path, function_names: Iterable[str]) -> tuple[Keys, bool]:
    """Read the keys file, add any missing key, write it back if anything was added.

    Returns the keys and whether the file was created or changed.
    """
    doc: dict[str, object] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        doc = loaded
    changed = not path.exists()
    master = doc.get("masterKey")
    if master is None:
        master, changed = new_key(), True
    elif not isinstance(master, str) or not master:
        raise ConfigError(f"{path}: masterKey must be a non-empty string")
    keys = Keys(
        master_key=master,
        function_keys=_str_map(doc.get("functionKeys", {}), f"{path}: functionKeys"),
        system_keys=_str_map(doc.get("systemKeys", {}), f"{path}: systemKeys"),
    )
    functions = doc.get("functions", {})
    if not isinstance(functions, dict):
        raise ConfigError(f"{path}: functions must be an object")
    for name, value in functions.items():
        keys.functions[name] = _str_map(value, f"{path}: functions.{name}")
    if "default" not in keys.function_keys:
        keys.function_keys["default"], changed = new_key(), True
    for name in SYSTEM_KEY_NAMES:
        if name not in keys.system_keys:
            keys.system_keys[name], changed = new_key(), True
    for name in function_names:
        if name not in keys.functions:
            keys.functions[name], changed = {"default": new_key()}, True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(keys.to_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    return keys, changed
