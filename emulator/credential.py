"""A credential for talking to the emulator: it mints a JWT for whatever scope is asked.

The emulator accepts any bearer token, but azure-ai-ml decodes the token it sends with pipeline jobs
(``x-azureml-token``) and checks that its ``aud`` is the cloud's ``aml_resource_id``. So the token is a
real (HS256, throw-away key) JWT whose audience is the requested scope's resource.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

_KEY = b"tuneflow-emulator-not-a-secret"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(audience: str, tenant_id: str = "00000000-0000-0000-0000-000000000000", ttl: int = 86400) -> str:
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {
        "aud": audience,
        "iss": "https://sts.tuneflow.local/",
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "tid": tenant_id,
        "oid": "00000000-0000-0000-0000-0000000000a1",
        "upn": "developer@tuneflow.local",
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(_KEY, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class EmulatorCredential:
    """``TokenCredential`` (and ``SupportsTokenInfo``) returning a JWT for the requested scope."""

    def __init__(self, tenant_id: str = "00000000-0000-0000-0000-000000000000") -> None:
        self.tenant_id = tenant_id

    @staticmethod
    def _audience(scopes: tuple[str, ...]) -> str:
        scope = scopes[0] if scopes else ""
        return scope[: -len("/.default")] if scope.endswith("/.default") else scope

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(make_token(self._audience(scopes), self.tenant_id), int(time.time()) + 86400)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(make_token(self._audience(scopes), self.tenant_id), int(time.time()) + 86400)

    def close(self) -> None:
        return None

    def __enter__(self) -> EmulatorCredential:
        return self

    def __exit__(self, *args: object) -> None:
        return None
