"""localstripe for tests: a stateful fake Stripe API in a subprocess, bound to 127.0.0.1 only.

localstripe's own CLI binds every interface and pickles its store to a fixed
``/tmp/localstripe.pickle`` after every write; here its aiohttp app is served on a loopback port
the child picks itself (and reports on stdout, so there is no free-port race), with the pickling
turned off, so parallel runs cannot read each other's data.

    python -m tests.localstripe_server [--port N]

Tests use the session fixture :func:`localstripe` (import it into a test module or conftest):
it yields a :class:`LocalStripe` with ``.url`` and helpers to flush the data, register a signed
webhook endpoint and make card PaymentMethods from test card numbers.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "localstripe-listening "
TEST_API_KEY = "sk_test_localstripe_helper"  # localstripe accepts any key that starts with sk_


def serve(port: int = 0) -> None:
    """Run localstripe's app on 127.0.0.1:port (0: any free port) and print the port once bound."""
    from aiohttp import web
    from localstripe import resources, server

    # One private in-memory store per process: never read or write /tmp/localstripe.pickle.
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    print(f"{READY_PREFIX}{sock.getsockname()[1]}", flush=True)
    web.run_app(server.app, sock=sock, print=None, access_log=None)


@dataclass
class LocalStripe:
    """A running localstripe child process."""

    url: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10), repr=False)

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def start(cls, log_path: Path | None = None, timeout: float = 20.0) -> LocalStripe:
        """Start a child process and wait until it answers HTTP."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") if log_path else open(os.devnull, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.localstripe_server", "--port", "0"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        try:
            port = _read_port(process, timeout)
            instance = cls(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
            instance.wait_ready(timeout)
        except BaseException:
            process.kill()
            process.wait(5)
            raise
        return instance

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._http.get(f"{self.url}/js.stripe.com/v3/").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"localstripe exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"localstripe did not answer at {self.url} within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._http.close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    # --- localstripe's /_config API -------------------------------------------------------------

    def flush(self) -> None:
        """Forget every object (``DELETE /_config/data``). Registered webhooks stay registered."""
        self._http.delete(f"{self.url}/_config/data").raise_for_status()

    def register_webhook(self, webhook_id: str, url: str, secret: str, events: list[str] | None = None) -> None:
        """``POST /_config/webhooks/{id}``: localstripe signs every event (or only ``events``) with
        ``secret`` and POSTs it to ``url`` about one second after it happens. Registering the same id
        again replaces it; there is no way to remove one, so pass ``events`` to limit it."""
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        self._http.post(f"{self.url}/_config/webhooks/{webhook_id}", json=body).raise_for_status()

    # --- test data, made the way a browser would ------------------------------------------------

    def create_card(self, number: str, *, exp_month: int = 12, exp_year: int = 2034, cvc: str = "123") -> str:
        """A card PaymentMethod id (``pm_...``) from a test card number: the ``POST /v1/payment_methods``
        Stripe.js makes in the payer's browser. Card numbers never pass through whitebill."""
        response = self._http.post(
            f"{self.url}/v1/payment_methods",
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
            data={
                "type": "card",
                "card[number]": number,
                "card[exp_month]": str(exp_month),
                "card[exp_year]": str(exp_year),
                "card[cvc]": cvc,
            },
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A raw authenticated call (for checks the adapter does not expose)."""
        response = self._http.request(
            method, f"{self.url}{path}", headers={"Authorization": f"Bearer {TEST_API_KEY}"}, **kwargs
        )
        response.raise_for_status()
        return response.json()


def _read_port(process: subprocess.Popen[bytes], timeout: float) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("localstripe did not report its port")
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            chunk = os.read(process.stdout.fileno(), 256)
            if not chunk:
                raise RuntimeError(f"localstripe exited before listening (code {process.wait(5)})")
            line += chunk
    text = line.decode().strip()
    if not text.startswith(READY_PREFIX):
        raise RuntimeError(f"unexpected first line from localstripe: {text!r}")
    return int(text[len(READY_PREFIX) :])


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """One localstripe process for the session; its stderr goes to ``localstripe.log`` in a temp dir."""
    server = LocalStripe.start(log_path=tmp_path_factory.mktemp("localstripe") / "localstripe.log")
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="localstripe bound to 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port, printed on stdout")
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
