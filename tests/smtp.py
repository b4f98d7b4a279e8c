"""A real SMTP server for tests: aiosmtpd on a free loopback port (or on another
address of this machine, for containers: a Docker network's gateway)."""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage

from aiosmtpd.controller import Controller


class _Collector:
    def __init__(self, server: SMTPServer):
        self.server = server

    async def handle_DATA(self, smtp_server, session, envelope):  # noqa: N802
        message = email.message_from_bytes(
            envelope.content, policy=email.policy.default
        )
        with self.server.lock:
            self.server.messages.append(message)
            self.server.arrived.notify_all()
        return "250 Message accepted for delivery"


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class SMTPServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = _free_port(host)
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.controller = Controller(
            _Collector(self), hostname=self.host, port=self.port
        )
        # What stands in for the workers' mail sending in tests without one: each
        # sends what an app's outbox holds (as the periodic flush would).
        self.senders: list[Callable[[], object]] = []

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def send_outboxes(self) -> None:
        for send in self.senders:
            send()

    def wait_for(self, to: str, subject: str = "", timeout: float = 10) -> EmailMessage:
        """The first message to ``to`` whose subject contains ``subject``."""
        deadline = time.monotonic() + timeout
        while True:
            self.send_outboxes()
            with self.lock:
                for message in self.messages:
                    if to in message["To"] and subject in message["Subject"]:
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m["To"], m["Subject"]) for m in self.messages]
                    raise AssertionError(f"no mail to {to} ({subject!r}); got {seen}")
                self.arrived.wait(min(remaining, 0.2))

    def sent_to(self, to: str) -> list[EmailMessage]:
        """What reached ``to`` once every outbox was sent."""
        self.send_outboxes()
        with self.lock:
            return [m for m in self.messages if to in m["To"]]


def text_body(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def link_in(message: EmailMessage, path: str) -> str:
    """The first link in the plain-text body whose path starts with ``path``."""
    match = re.search(rf"https?://\S+?{re.escape(path)}\S+", text_body(message))
    assert match, f"no {path} link in:\n{text_body(message)}"
    return match.group(0)
