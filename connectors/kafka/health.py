"""Noticing that the Kafka broker is gone, within seconds, instead of waiting for records forever.

librdkafka hides a lost broker: it reconnects in the background and ``consume`` just returns
nothing, so a reader sees the same thing as a quiet partition. Two signals tell them apart:

- librdkafka's ``error_cb`` reports ``_ALL_BROKERS_DOWN`` (every connection failed) and
  ``_TRANSPORT``/``_RESOLVE`` errors as soon as they happen (a killed broker resets its
  connections, reconnects are refused);
- records that are due (below the end planned for the read) do not come for
  ``silence_s``: a broker that stopped answering without closing its connections (a host gone,
  a network partition) produces no error until librdkafka's 60 s socket timeout.

Either signal is then checked with a metadata request bounded by ``confirm_s``; if that fails too
the read fails with :class:`BrokerUnreachable`. Planning a read first waits for the broker the
same way (:meth:`BrokerWatch.reach`), so a broker down at the start fails it as quickly. A broker that is back (a restart, an idle
connection the broker closed) answers it and the read goes on. With the reader's defaults
(:class:`connectors.kafka.reader.Timing`) a lost broker fails the read about 4 s after the loss
when librdkafka reports it, 8 s when it does not.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException

from connectors.errors import RunError

_LOST = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE)
_REACH_STEP_S = 1.0


class BrokerUnreachable(RunError, ConnectionError):
    """The Kafka broker (every bootstrap server) stopped answering during a read."""


class BrokerWatch:
    """Watches one consumer's broker connections; give :meth:`on_error` as its ``error_cb``.

    Args:
        bootstrap_servers: named in the error.
        silence_s: how long due records may not come before the broker is asked.
        confirm_s: how long the broker has to answer a metadata request.
    """

    def __init__(self, bootstrap_servers: str, silence_s: float, confirm_s: float) -> None:
        self._servers = bootstrap_servers
        self._silence_s = silence_s
        self._confirm_s = confirm_s
        self._error: str | None = None
        self._asked = 0.0

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb`` (served by ``consume``): remember a lost connection."""
        if error.code() in _LOST:
            self._error = error.str()

    def check(self, consumer: Consumer, *, silent_since: float | None, context: str) -> None:
        """Raise :class:`BrokerUnreachable` if the broker was reported lost, or if due records
        have not come since ``silent_since`` (``time.monotonic()``; None: none are due), and it
        does not answer a metadata request within ``confirm_s``. ``context`` says what was being
        read (the error names it and the bootstrap servers)."""
        now = time.monotonic()
        silence = 0.0 if silent_since is None else now - silent_since
        silent = silence >= self._silence_s and now - self._asked >= self._silence_s
        if self._error is None and not silent:
            return
        reason = self._error or f"no records for {silence:.0f}s"
        self._error, self._asked = None, now
        try:
            consumer.list_topics(timeout=self._confirm_s)
        except KafkaException as exc:
            raise self._unreachable(f"reading {context}", reason, exc) from None

    def reach(self, consumer: Consumer, *, within_s: float, context: str) -> None:
        """Return once the broker answers a metadata request; raise :class:`BrokerUnreachable`
        when it has not within ``within_s``, or within ``confirm_s`` once librdkafka reported
        every connection failed (a refused connection fails in seconds, not ``within_s``).

        ``consumer.list_topics`` blocks for its whole timeout when no broker is up and serves no
        callbacks meanwhile, so it is asked in short steps, serving them in between.
        """
        began = time.monotonic()
        while True:
            try:
                consumer.list_topics(timeout=_REACH_STEP_S)
                self._error = None
                return
            except KafkaException as exc:
                consumer.poll(0)  # serves error_cb
                waited = time.monotonic() - began
                if waited >= within_s or (self._error is not None and waited >= self._confirm_s):
                    reason = self._error or f"no answer for {waited:.0f}s"
                    raise self._unreachable(context, reason, exc) from None

    def _unreachable(self, context: str, reason: str, exc: KafkaException) -> BrokerUnreachable:
        return BrokerUnreachable(
            f"Kafka broker unreachable: {self._servers}, while {context}: {reason}; no answer "
            f"to a metadata request within {self._confirm_s:g}s ({exc.args[0].str()})"
        )
