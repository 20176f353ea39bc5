"""``beamwright ingest stream``: an API's event stream appended to a Kafka topic.

Two wire formats, both read incrementally from one long response (``http.client`` decodes a
chunked body as it arrives; the client core's pool reads whole answers, which a stream never
ends):

- ``sse``: server-sent events (the WHATWG ``text/event-stream`` format): ``data:`` lines joined
  by line breaks form an event, dispatched at a blank line; ``id:`` sets the last event id,
  sent back as ``Last-Event-ID`` when reconnecting; comments (``:``) and other fields are
  ignored.
- ``jsonl``: one JSON document per line (chunked JSON lines).

Each event's data is appended as it is (the pipeline's ``kafka`` source decodes it and
dead-letters what is not JSON), keyed by the event id when there is one. Why not an unbounded
``http`` source: on the local runner a stage starts only after the one before it ends, so an
endless read would never reach the sinks; Kafka makes the stream durable, and every run (or
``run --follow`` cycle) reads the topic from its committed offsets, on any runner.
"""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from connectors.errors import RunError
from connectors.ingest.appender import KafkaAppender

log = logging.getLogger(__name__)

FORMATS = ("sse", "jsonl")


class StreamError(RunError):
    """The stream could not be opened (refused, not 200)."""


@dataclass(frozen=True)
class Event:
    data: bytes
    id: str | None = None


def sse_events(lines: Iterator[bytes]) -> Iterator[Event]:
    """Events of a ``text/event-stream`` body given line by line."""
    data: list[bytes] = []
    event_id: str | None = None
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield Event(b"\n".join(data), event_id)
            data = []
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            data.append(value)
        elif name == b"id" and b"\0" not in value:
            event_id = value.decode("utf-8", "replace")
    if data:  # a stream cut mid-event: the spec drops it, and so do we
        log.warning("stream ended inside an event; it was not appended")


def jsonl_events(lines: Iterator[bytes]) -> Iterator[Event]:
    for raw in lines:
        line = raw.strip()
        if line:
            yield Event(line)


def _lines(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while True:
        line = response.readline(1 << 20)
        if not line:
            return
        yield line


def open_stream(url: str, last_id: str | None, timeout: float) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {"Accept": "text/event-stream, application/x-ndjson"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    conn.request("GET", target, headers=headers)
    response = conn.getresponse()
    if response.status != 200:
        raise StreamError(f"GET {url}: HTTP {response.status}", hint="is the URL the stream's?")
    return response


def relay(
    url: str,
    appender: KafkaAppender,
    *,
    fmt: str = "sse",
    max_events: int | None = None,
    reconnect: bool = True,
    retry_s: float = 1.0,
    timeout: float = 60.0,
) -> int:
    """Append the stream's events to Kafka until ``max_events`` were appended, or the stream
    ends (``reconnect=False``); with ``reconnect`` a dropped stream is opened again after
    ``retry_s``, from the last event id. Returns the number appended."""
    if fmt not in FORMATS:
        raise ValueError(f"stream format must be one of {FORMATS}")
    appended, last_id = 0, None
    while True:
        try:
            response = open_stream(url, last_id, timeout)
            events = sse_events if fmt == "sse" else jsonl_events
            for event in events(_lines(response)):
                appender.append(event.data, key=event.id)
                appended += 1
                last_id = event.id or last_id
                if max_events is not None and appended >= max_events:
                    response.close()
                    return appended
            response.close()
        except (OSError, http.client.HTTPException) as exc:
            if not reconnect:
                raise StreamError(f"GET {url}: {exc}") from None
            log.warning("stream %s dropped: %s; reconnecting", url, exc)
        if not reconnect:
            return appended
        time.sleep(retry_s)
