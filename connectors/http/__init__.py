"""An HTTP client core for enrichment: one job per module, no Beam.

- :mod:`.request`: the request value (method, URL, headers, body) and its cache/dedupe key.
- :mod:`.template`: requests rendered from row fields, values URL-encoded.
- :mod:`.jsonpath`: the small dotted/indexed path syntax that picks response fields.
- :mod:`.pool`: keep-alive ``http.client`` connections per host, shared by threads.
- :mod:`.auth`: headers for bearer, basic, API-key and OAuth2 client-credentials auth.
- :mod:`.retry`: exponential backoff with full jitter, ``Retry-After``, idempotency.
- :mod:`.breaker`: a circuit breaker per host (closed / open / half-open).
- :mod:`.cache`: a bounded per-worker TTL LRU cache.
- :mod:`.caller`: all of the above around one request, returning an outcome instead of raising.

Secrets (:class:`connectors.secrets.Secret`) enter only at send time, as headers the request
value never holds, so keys, dead letters and logs cannot carry them.
"""
