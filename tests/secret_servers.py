"""Every secret store at once, for a test module: Secret Manager, Vault, moto and Key Vault servers on
127.0.0.1 and the provider config of each kind (the servers themselves: :mod:`tests.servers`)."""

from __future__ import annotations

from typing import Any

from tests.servers.azure_keyvault import AzureKeyVaultServer
from tests.servers.gsm import FakeSecretManager
from tests.servers.moto import moto_endpoint
from tests.servers.vault import VaultServer

VAULT_TOKEN = "vault-root-token"
AZURE_TOKEN = "azure-test-bearer-token"
PROVIDERS = ("file", "gcp", "vault", "aws", "azure")


def azure_config(server: AzureKeyVaultServer, **options: Any) -> dict[str, Any]:
    """The provider config for a local Key Vault server, plus ``options`` (``name_prefix``,
    ``timeout``, ...): one place that knows how a test reaches the server (the bearer token in
    ``BW_TEST_AZURE_TOKEN``, the server's own CA, no challenge-resource check since the server
    is 127.0.0.1, not *.vault.azure.net)."""
    return {
        "type": "azure",
        "vault_url": server.url,
        "token_env": "BW_TEST_AZURE_TOKEN",
        "ca_file": server.ca_file,
        "verify_challenge_resource": False,
        **options,
    }


class StoreServers:
    """One Secret Manager, Vault, moto and Key Vault server for a whole test module, and the provider
    config for each kind. The configs use environment variables for credentials
    (``BW_TEST_VAULT_TOKEN``, ``BW_TEST_AZURE_TOKEN``, AWS's), which :meth:`environment` gives, so the same configs
    work in subprocesses."""

    def __init__(self) -> None:
        self.gsm = FakeSecretManager().start()
        self.vault = VaultServer(token=VAULT_TOKEN)
        self.azure = AzureKeyVaultServer(token=AZURE_TOKEN)
        self._moto = moto_endpoint()
        self.aws_url = self._moto.__enter__()

    @staticmethod
    def environment() -> dict[str, str]:
        return {
            "BW_TEST_VAULT_TOKEN": VAULT_TOKEN,
            "BW_TEST_AZURE_TOKEN": AZURE_TOKEN,
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
        if kind == "azure":
            return azure_config(self.azure, name_prefix=f"{prefix}-" if prefix else "", timeout=5)
        return {"type": "aws", "endpoint_url": self.aws_url, "region": "us-east-1", "timeout": 5}

    def close(self) -> None:
        self._moto.__exit__(None, None, None)
        self.azure.close()
        self.vault.close()
        self.gsm.stop()
