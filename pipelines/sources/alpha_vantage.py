"""The ``alpha_vantage`` source: daily or intraday time series of a list of symbols from the
Alpha Vantage API (:mod:`connectors.alphavantage_http`), in the quote columns every market-data
format here shares (``symbol, ts, open, high, low, close, volume, provider``).

The API key is a secret reference (``env``, ``file`` or a store), never a value in the spec.
Each symbol's request is an input dataset named by its URL without the key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.registry import Kind
from pipelines.spec_base import Name, SecretSpec, SpecModel

OUTPUT_FIELDS = ["symbol", "ts", "open", "high", "low", "close", "volume", "provider"]


class AlphaVantageSourceSpec(SpecModel):
    """Alpha Vantage TIME_SERIES_DAILY / TIME_SERIES_INTRADAY, one request per symbol."""

    type: Literal["alpha_vantage"]
    name: Name
    symbols: list[str] = Field(min_length=1)
    function: Literal["TIME_SERIES_DAILY", "TIME_SERIES_INTRADAY"] = "TIME_SERIES_DAILY"
    interval: Literal["1min", "5min", "15min", "30min", "60min"] | None = None
    outputsize: Literal["compact", "full"] = "compact"
    api_key: SecretSpec = Field(description="The API key, as a secret reference.")
    base_url: str = "https://www.alphavantage.co/query"
    attempts: int = Field(default=4, ge=1, le=10)
    retry_wait: float = Field(
        default=15.0, ge=0, description="Seconds before the first retry (then doubling)."
    )
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _interval(self) -> AlphaVantageSourceSpec:
        if (self.function == "TIME_SERIES_INTRADAY") != (self.interval is not None):
            raise ValueError("'interval' is for TIME_SERIES_INTRADAY, which needs one")
        return self


def build(node: AlphaVantageSourceSpec, ctx: Any, path: str) -> None:
    from connectors.alphavantage_http import ReadAlphaVantage, SeriesRequest
    from pipelines.build import resolve_secret_ref

    key = resolve_secret_ref(node.api_key, f"{path}.api_key")
    requests = [
        SeriesRequest(node.base_url, node.function, s.upper(), node.interval, node.outputsize)
        for s in node.symbols
    ]
    outputs = ctx.pipeline | node.name >> ReadAlphaVantage(
        requests,
        key,
        source_name=node.name,
        batch_size=ctx.spec.run.batch_size,
        run_id=ctx.run_id,
        attempts=node.attempts,
        retry_wait=node.retry_wait,
        timeout=node.timeout,
    )
    ctx.outputs[node.name] = outputs.rows
    ctx.dead_letters.append(outputs.dead_letters)
    for request in requests:
        ctx.inputs.append(ctx.dataset(node.name, "source", request.url(), "json"))


def known_fields(node: AlphaVantageSourceSpec) -> list[str]:
    return list(OUTPUT_FIELDS)


KIND = Kind("source", AlphaVantageSourceSpec, build, known_fields=known_fields)
