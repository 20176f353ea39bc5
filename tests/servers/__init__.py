"""Real servers on 127.0.0.1 for the tests, one module each.

* :mod:`.gsm`: a gRPC server speaking Secret Manager's wire protocol, built on the client
  library's own request/response types, so the real client talks to it unchanged.
* :mod:`.vault`: the KV v2 HTTP endpoints hvac uses.
* :mod:`.moto`: moto's AWS server (ThreadedMotoServer).
* :mod:`.notify`: an SMTP sink (aiosmtpd) and a webhook receiver checking HMAC signatures.
* :mod:`.api`: the system a credential protects. It accepts only tokens it minted and has not
  revoked, so a consumer using a disabled credential fails for real.
* :mod:`.http`: the loopback HTTP plumbing the others share.
"""
