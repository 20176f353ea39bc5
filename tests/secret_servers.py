"""Every secret store at once, for a test module: Secret Manager, Vault and moto servers on
127.0.0.1 and the provider config of each kind (the servers themselves: :mod:`tests.servers`)."""

from __future__ import annotations

from typing import Any

from tests.servers.gsm import FakeSecretManager
from tests.servers.moto import moto_endpoint
from tests.servers.vault import VaultServer

VAULT_TOKEN = "vault-root-token"
PROVIDERS = ("file", "gcp", "vault", "aws")


class StoreServers:
    """One Secret Manager, Vault and moto server for a whole test module, and the provider
    config for each kind. The configs use environment variables for credentials
    (``BW_TEST_VAULT_TOKEN``, AWS's), which :meth:`environment` gives, so the same configs
    work in subprocesses."""

    def __init__(self) -> None:
        self.gsm = FakeSecretManager().start()
        self.vault = VaultServer(token=VAULT_TOKEN)
        self._moto = moto_endpoint()
        self.aws_url = self._moto.__enter__()

    @staticmethod
    def environment() -> dict[str, str]:
        return {
            "BW_TEST_VAULT_TOKEN": VAULT_TOKEN,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def config(self, kind: str, file_root: str, prefix: str) -> dict[str, Any]:
        """A provider config of ``kind``; ``prefix`` keeps tests apart on shared servers."""
        if kind == "file":
            return {"type": "file", "path": file_root}
        if kind == "gcp":
            return {
                "type": "gcp",
                "project": prefix,
                "emulator_host": self.gsm.address,
                "timeout": 5,
            }
        if kind == "vault":
            return {
                "type": "vault",
                "url": self.vault.url,
                "token_env": "BW_TEST_VAULT_TOKEN",
                "path_prefix": f"{prefix}/",
            }
        return {"type": "aws", "endpoint_url": self.aws_url, "region": "us-east-1", "timeout": 5}

    def close(self) -> None:
        self._moto.__exit__(None, None, None)
        self.vault.close()
        self.gsm.stop()
