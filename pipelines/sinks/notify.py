"""The ``notify`` sink: alerts as one digest per run (per pane when streaming) to e-mail
(SMTP), a Slack incoming webhook or a Teams Workflows webhook (:mod:`connectors.alert_notify`).

It delivers, it does not store: pair it with a file or Kafka sink on the same input, which is
what keeps every alert. In batch the message goes out from the driver after the run's checks
passed and its outputs were published (a failed run tells nobody); in streaming, per pane. Webhook URLs are credentials and so secret references (``env``,
``file`` or ``store``); lineage names the service (``slack://hooks.slack.com``), never the URL.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.registry import Kind
from pipelines.spec_base import SecretSpec, SinkBase


class NotifySinkSpec(SinkBase):
    """Alerts to people: e-mail, Slack or Teams; one digest message per run or pane."""

    type: Literal["notify"]
    channel: Literal["email", "slack", "teams"]
    url: SecretSpec | None = Field(
        default=None, description="slack/teams: the incoming-webhook URL, as a secret reference."
    )
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    sender: str | None = None
    to: list[str] = Field(default_factory=list, description="email: recipients.")
    starttls: bool = False
    username: str | None = None
    password: SecretSpec | None = None
    title: str = Field(default="beamwright alerts", description="The message title.")
    text_field: str = Field(default="message", description="Field with each alert's text.")
    max_lines: int = Field(default=50, ge=1, description="Alerts listed per message.")
    attempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _settings(self) -> NotifySinkSpec:
        if self.channel == "email":
            if not (self.smtp_host and self.sender and self.to):
                raise ValueError("an email notify sink needs smtp_host, sender and to")
            if self.url is not None:
                raise ValueError("'url' is for slack and teams; email uses smtp_host")
        elif self.url is None:
            raise ValueError(f"a {self.channel} notify sink needs 'url' (a secret reference)")
        return self


def build(node: NotifySinkSpec, ctx: Any, path: str, rows: Any) -> None:
    from connectors.alert_notify import Channel, Notify
    from pipelines.build import resolve_secret_ref

    url = resolve_secret_ref(node.url, f"{path}.url")
    channel = Channel(
        kind=node.channel,
        url=url,
        smtp_host=node.smtp_host,
        smtp_port=node.smtp_port,
        sender=node.sender,
        to=tuple(node.to),
        starttls=node.starttls,
        username=node.username,
        password=resolve_secret_ref(node.password, f"{path}.password"),
        attempts=node.attempts,
    )
    from connectors.alert_notify import deliver_staged
    from connectors.panes import is_streaming

    stage = None
    if not is_streaming(rows):  # sent by the driver once the run succeeded
        runs = ctx.spec.run.profile_dir(ctx.run_id).rsplit("/", 1)[0]
        stage = f"{runs}/notify/{node.name}.json"
        ctx.after_publish.append(lambda result: deliver_staged(channel, stage))
    rows | node.name >> Notify(
        channel,
        title=node.title,
        text_field=node.text_field,
        max_lines=node.max_lines,
        name=node.name,
        frequency=ctx.spec.run.triggering_frequency,
        stage_path=stage,
    )
    where = (
        f"smtp://{node.smtp_host}:{node.smtp_port}"
        if node.channel == "email"
        else f"{node.channel}://{_host(url)}"
    )
    ctx.datasets_out.append(ctx.dataset(node.name, "sink", f"{where}/{node.name}", "notify"))


def _host(url: Any) -> str:
    """The webhook's host for lineage (the path holds the token, so it is never shown)."""
    from urllib.parse import urlsplit

    from connectors.secrets.refs import resolve_url

    return urlsplit(resolve_url(url)).netloc.rsplit("@", 1)[-1] or "webhook"


def lineage(node: NotifySinkSpec, state: Any, walk: Any, path: str) -> Any:
    if node.text_field in state.fields:
        walk.read(f"{path}.text_field", [node.text_field], state)
    return state


KIND = Kind("sink", NotifySinkSpec, build, lineage=lineage)
