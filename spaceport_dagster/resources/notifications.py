"""The notifier resource: email through SES, or (the local default) a log line and a JSON file per message.

Every notification is also kept as a JSON record under `SPACEPORT_HOME/notifications/`, with the SES
message id or the delivery error, so a lost email can be traced and resent.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from spaceport_dagster.emails import InvalidEmail, validate_addresses
from spaceport_dagster.notify.message import Notification

from .storage import spaceport_home

CHANNELS = ("local", "ses")


class NotifierResource(ConfigurableResource):
    """How a finished run is announced. A field left empty is read from the environment when a notification is
    sent, not when the definitions load."""

    channel: str = Field(default="", description="'local' (log line + JSON file) or 'ses' (email, + JSON file); "
                                                 "empty: SPACEPORT_NOTIFY, else local")
    folder: str = Field(default="", description="folder of the JSON records; empty: SPACEPORT_HOME/notifications")
    sender: str = Field(default="", description="SES From address (a verified identity); empty: "
                                                "SPACEPORT_NOTIFY_FROM")
    region: str | None = Field(default=None, description="SES region; empty: AWS_REGION / AWS_DEFAULT_REGION")
    endpoint_url: str | None = Field(default=None, description="SES endpoint (e.g. a moto server); empty: "
                                                               "AWS_ENDPOINT_URL")

    def channel_now(self) -> str:
        return self.channel or os.environ.get("SPACEPORT_NOTIFY", "local")

    def sender_now(self) -> str:
        return self.sender or os.environ.get("SPACEPORT_NOTIFY_FROM", "")

    def records_folder(self) -> Path:
        return Path(self.folder).expanduser() if self.folder else spaceport_home() / "notifications"

    def send(self, note: Notification, log_line: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Deliver `note`; never raises for a delivery problem (it is logged and recorded instead)."""
        channel = self.channel_now()
        if channel not in CHANNELS:
            raise ValueError(f"notifier channel {channel!r} is unknown; use one of {', '.join(CHANNELS)}")
        record: dict[str, Any] = {"channel": channel, "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "delivered": False, **note.to_json()}
        if channel == "ses":
            record.update(self._send_ses(note))
        path = self._write(record)
        delivery = (f"emailed to {', '.join(note.to)}" if record["delivered"]
                    else record.get("error") or "recorded locally")
        if log_line:
            log_line(f"notification ({note.kind}) for {note.dataset}: {note.subject} [{delivery}; {path}]")
        record["path"] = str(path)
        return record

    def _send_ses(self, note: Notification) -> dict[str, Any]:
        if not note.to:
            return {"error": "no notification address for this dataset (dataset.json 'email'); recorded locally"}
        try:  # every address checked again, whoever built the message; SES gets a list, never a joined string
            to = validate_addresses(note.to, "notification recipients")
        except InvalidEmail as exc:
            return {"error": f"{exc}; not sent, recorded locally"}
        sender = self.sender_now()
        if not sender:
            return {"error": "SES sender not configured (SPACEPORT_NOTIFY_FROM); recorded locally"}
        if any(c in sender for c in "\r\n"):
            return {"error": "SES sender (SPACEPORT_NOTIFY_FROM) contains a line break; not sent, recorded locally"}
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client("ses", region_name=self.region or None, endpoint_url=self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)
        try:
            response = client.send_email(
                Source=sender,
                Destination={"ToAddresses": to},
                Message={"Subject": {"Data": note.subject, "Charset": "UTF-8"},
                         "Body": {"Text": {"Data": note.text, "Charset": "UTF-8"}}},
            )
        except (BotoCoreError, ClientError) as exc:
            return {"error": f"SES refused the email: {exc}"}
        return {"delivered": True, "ses_message_id": response.get("MessageId")}

    def _write(self, record: dict[str, Any]) -> Path:
        folder = self.records_folder()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{record.get('dataset') or 'no-dataset'}-{record['kind']}-{record['run_id'][:8]}.json"
        path = folder / name
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(path)
        return path
