"""Alerts to people: one digest per run (or per streaming pane) to e-mail, Slack or Teams.

A notify sink's rows are alerts (one per breach). Posting each row would flood a channel in a
bad run, so the rows of a run, or of one pane in streaming, are gathered and sent as one
message listing up to ``max_lines`` of them, with the count of the rest. The alerts themselves
are kept by an alerts sink beside it; the message is the nudge, not the record.

Payloads follow each service's documented shape for incoming webhooks:

- Slack (``api.slack.com/messaging/webhooks``): ``{"text": fallback, "blocks": [header,
  section(mrkdwn)]}``; a section's text is capped at Slack's 3,000 characters.
- Teams (Workflows "post to a channel when a webhook request is received", which replaces the
  retired Office 365 connectors): ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard 1.4>}]}``.
- E-mail: a plain-text message over SMTP (STARTTLS and login when configured).

Webhook URLs are credentials (whoever has one can post): they are secret references,
resolved on the worker when sending and never shown. Delivery is tried ``attempts`` times with
doubling backoff; then a ``NotifyError`` names the channel, so a run whose people were not told
does not pass for one that succeeded. In batch the digest is staged by the pipeline and sent
by the driver after the run's checks passed and its outputs were published: a run that fails
(error threshold, reconciliation) notifies nobody of alerts it did not publish.
"""

from __future__ import annotations

import json
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

import apache_beam as beam
import pyarrow as pa

from connectors.errors import RunError
from connectors.metrics import ROWS_IN, ROWS_WRITTEN, NodeCounters
from connectors.records import strip_positions

CHANNELS = ("email", "slack", "teams")
SLACK_SECTION_LIMIT = 3000


class NotifyError(RunError):
    """A notification could not be delivered after its retries."""


@dataclass(frozen=True)
class Channel:
    """Where one digest goes. ``url`` is a webhook URL or a secret reference to one
    (:func:`connectors.secrets.refs.url_setting`); the SMTP fields are for ``email``."""

    kind: str
    url: Any = None
    smtp_host: str | None = None
    smtp_port: int = 25
    sender: str | None = None
    to: tuple[str, ...] = ()
    starttls: bool = False
    username: str | None = None
    password: Any = None  # a SecretRef
    timeout: float = 10.0
    attempts: int = 3

    def __str__(self) -> str:
        if self.kind == "email":
            return f"email via smtp {self.smtp_host}:{self.smtp_port}"
        from connectors.secrets.refs import show_url

        return f"{self.kind} webhook {show_url(self.url)}"


@dataclass(frozen=True)
class Digest:
    """The text of one notification: a title and one line per alert (some left out)."""

    title: str
    lines: list[str]
    omitted: int = 0
    total: int = field(default=0)

    def body_lines(self) -> list[str]:
        more = [f"... and {self.omitted} more (see the alerts output)"] if self.omitted else []
        return self.lines + more


def digest(table: pa.Table, *, title: str, text_field: str, max_lines: int) -> Digest:
    """The digest of ``table``'s alerts: ``text_field`` of each row when the rows have it,
    else the row as ``key=value`` pairs."""
    table = strip_positions(table)
    n = table.num_rows
    shown = table.slice(0, max_lines)
    if text_field in shown.column_names:
        lines = [str(v) for v in shown.column(text_field).to_pylist()]
    else:
        lines = [", ".join(f"{k}={v}" for k, v in row.items()) for row in shown.to_pylist()]
    return Digest(f"{title}: {n} alert{'s' if n != 1 else ''}", lines, n - len(lines), n)


def slack_payload(d: Digest) -> dict[str, Any]:
    """Slack incoming-webhook JSON: a header block and a mrkdwn section (with a text fallback
    for notifications that do not render blocks)."""
    bullets = "\n".join(f"• {line}" for line in d.body_lines())
    if len(bullets) > SLACK_SECTION_LIMIT:
        bullets = bullets[: SLACK_SECTION_LIMIT - 1] + "…"
    return {
        "text": d.title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": d.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": bullets}},
        ],
    }


def teams_payload(d: Digest) -> dict[str, Any]:
    """Teams Workflows webhook JSON: a message with one Adaptive Card (1.4)."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": d.title, "wrap": True}
    ]
    body += [{"type": "TextBlock", "text": line, "wrap": True} for line in d.body_lines()]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def email_message(d: Digest, channel: Channel) -> EmailMessage:
    message = EmailMessage()
    message["From"] = channel.sender or ""
    message["To"] = ", ".join(channel.to)
    message["Subject"] = d.title
    message.set_content("\n".join(d.body_lines()) + "\n")
    return message


def send(channel: Channel, d: Digest) -> None:
    """Deliver ``d`` on ``channel``, retrying; NotifyError when every attempt failed."""
    problem = ""
    for attempt in range(channel.attempts):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        try:
            _deliver(channel, d)
            return
        except (OSError, smtplib.SMTPException, urllib.error.URLError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
    raise NotifyError(
        f"could not notify {channel} after {channel.attempts} attempts: {problem}",
        hint="the alerts are in the alerts output; check the channel's address and credentials",
    )


def _deliver(channel: Channel, d: Digest) -> None:
    if channel.kind == "email":
        with smtplib.SMTP(channel.smtp_host or "", channel.smtp_port, timeout=channel.timeout) as s:
            if channel.starttls:
                s.starttls()
            if channel.username and channel.password is not None:
                s.login(channel.username, channel.password.resolve().reveal().decode("utf-8"))
            s.send_message(email_message(d, channel))
        return
    from connectors.secrets.refs import resolve_url

    payload = slack_payload(d) if channel.kind == "slack" else teams_payload(d)
    request = urllib.request.Request(
        resolve_url(channel.url),
        data=json.dumps(payload).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=channel.timeout) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")


class _Concat(beam.CombineFn):
    """The alerts of a run (or pane) as one table."""

    def create_accumulator(self) -> list[pa.Table]:
        return []

    def add_input(self, acc: list[pa.Table], table: pa.Table) -> list[pa.Table]:
        if table.num_rows:
            acc.append(table)
        return acc

    def merge_accumulators(self, accs: Sequence[list[pa.Table]]) -> list[pa.Table]:
        return [t for acc in accs for t in acc]

    def extract_output(self, acc: list[pa.Table]) -> pa.Table | None:
        return pa.concat_tables(acc, promote_options="permissive") if acc else None


def stage_digest(d: Digest, path: str) -> None:
    """Write ``d`` where the driver will find it (local or object store)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(json.dumps(asdict(d)).encode("utf-8"))


def deliver_staged(channel: Channel, path: str) -> bool:
    """Send the digest staged at ``path`` (none: the run had no alerts), then remove it.
    True when a message went out."""
    from apache_beam.io.filesystems import FileSystems

    if not FileSystems.exists(path):
        return False
    with FileSystems.open(path) as f:
        d = Digest(**json.loads(f.read()))
    send(channel, d)
    FileSystems.delete([path])
    return True


class _SendFn(beam.DoFn):
    def __init__(
        self,
        channel: Channel,
        title: str,
        text_field: str,
        max_lines: int,
        name: str,
        stage_path: str | None,
    ) -> None:
        self._channel = channel
        self._title = title
        self._text_field = text_field
        self._max_lines = max_lines
        self._name = name
        self._stage_path = stage_path

    def setup(self) -> None:
        self._counters = NodeCounters(self._name)

    def process(self, table):
        if table is None or not table.num_rows:
            return
        d = digest(table, title=self._title, text_field=self._text_field, max_lines=self._max_lines)
        self._counters.inc(ROWS_IN, d.total)
        if self._stage_path is not None:  # the driver sends it once the run has succeeded
            stage_digest(d, self._stage_path)
        else:
            send(self._channel, d)
            self._counters.inc("notifications_sent")
        self._counters.inc(ROWS_WRITTEN, d.total)  # alerts in a message sent or staged


class Notify(beam.PTransform):
    """Send the alerts in ``rows`` (Arrow tables) as one digest per run, or per pane when
    streaming, to ``channel``.

    Args:
        channel: where to (see :class:`Channel`).
        title: the digest's title (the alert count is appended).
        text_field: the field holding each alert's one-line text.
        max_lines: alerts listed in one message; the rest are counted.
        name: names the counters and the transform.
        frequency: streaming: seconds between panes for alerts not in event-time windows.
        stage_path: batch: write the digest here instead of sending it, for
            :func:`deliver_staged` to send from the driver after the run's checks passed
            (a run that fails its error threshold then tells nobody). Streaming sends
            each pane's digest from the pipeline: a job that never ends has no "after".
    """

    def __init__(
        self,
        channel: Channel,
        *,
        title: str,
        text_field: str = "message",
        max_lines: int = 50,
        name: str = "notify",
        frequency: int = 60,
        stage_path: str | None = None,
    ) -> None:
        super().__init__()
        if channel.kind not in CHANNELS:
            raise ValueError(f"unknown channel {channel.kind!r}; supported: {', '.join(CHANNELS)}")
        self._args = (channel, title, text_field, max_lines, name)
        self._stage_path = stage_path
        self._frequency = frequency

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        from connectors.names import CombineGlobally
        from connectors.panes import into_panes, is_streaming

        stage_path = self._stage_path
        if is_streaming(rows):
            rows = into_panes(rows, self._frequency, accumulating=False, label="Panes")
            stage_path = None
        gathered = rows | "Gather" >> CombineGlobally(_Concat(), defaults=False)
        return gathered | "Send" >> beam.ParDo(_SendFn(*self._args, stage_path))
