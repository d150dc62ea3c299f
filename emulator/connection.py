"""Build azure-ai-ml clients from the emulator's ``connection.json`` (a convenience for tests and tools).

The recipe, for code that cannot import the emulator (the app builds its own client the same way):

    conn = json.load(open(".../connection.json"))
    ml = MLClient(credential, conn["subscription_id"], conn["resource_group"], conn["workspace_name"],
                  cloud=conn["cloud_name"], cloud_metadata=conn["cloud_metadata"],
                  connection_verify=conn["ca_bundle"])
    registry = MLClient(credential, registry_name=conn["registry_name"],
                        cloud=conn["cloud_name"], cloud_metadata=conn["cloud_metadata"],
                        connection_verify=conn["ca_bundle"])

and make the CA trusted for the SDK's plain ``requests`` calls too (scoring, log downloads, blob uploads):
``REQUESTS_CA_BUNDLE=<ca_bundle>``. Any bearer token is accepted, but azure-ai-ml decodes the token it
sends with pipeline jobs and wants ``aud`` = the ``aml_resource_id``: ``EmulatorCredential`` mints one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from emulator.credential import EmulatorCredential


def load(path: str | Path) -> dict[str, Any]:
    conn: dict[str, Any] = json.loads(Path(path).read_text())
    return conn


def trust_ca(conn: dict[str, Any]) -> None:
    """Point ``requests`` (used by parts of azure-ai-ml without ``connection_verify``) at the emulator CA."""
    os.environ["REQUESTS_CA_BUNDLE"] = str(conn["ca_bundle"])


def ml_client(conn: dict[str, Any], registry: bool = False, credential: Any = None, **kwargs: Any) -> Any:
    from azure.ai.ml import MLClient

    trust_ca(conn)
    credential = credential or EmulatorCredential()
    common: dict[str, Any] = {
        "cloud": conn["cloud_name"],
        "cloud_metadata": conn["cloud_metadata"],
        "connection_verify": conn["ca_bundle"],
        **kwargs,
    }
    if registry:
        return MLClient(credential, registry_name=conn["registry_name"], **common)
    return MLClient(
        credential, conn["subscription_id"], conn["resource_group"], conn["workspace_name"], **common
    )
