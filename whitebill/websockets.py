"""uvicorn's websocket protocol with a smaller compression window.

Live updates are small JSON messages (a few hundred bytes), each much like the one before. uvicorn
negotiates permessage-deflate with 4 KiB windows and ``memLevel`` 5: about 43 KB of zlib state per
connection, most of what a subscriber costs. A 512-byte window still holds most of the previous message, so
compression stays good for these messages at under a quarter of the memory (512-byte windows,
``memLevel`` 1). Browsers offer permessage-deflate and accept the window sizes the server asks for.
Clients compress each of their few messages on its own (``client_no_context_takeover``, which
RFC 7692 lets a server ask), so no decompressor is kept per connection; and the handshake's request
and response are let go once the connection is open, its compressor and parser once it is closed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

# After this many connections have closed, one full collection frees what they left in reference
# cycles (their tasks, frames, execution state), which the young collections that run meanwhile do
# not reach: a wave of subscribers leaving does not stay in memory until the collector's rare full pass.
COLLECT_AFTER_CLOSED = 256
COLLECT_DELAY_SECONDS = 1.0
WINDOW_BITS = 9
MEMORY_LEVEL = 1


class SmallWindowWebSockets(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=[
                    ServerPerMessageDeflateFactory(
                        server_max_window_bits=WINDOW_BITS,
                        client_max_window_bits=WINDOW_BITS,
                        # A client sends a handful of messages (init, subscribe, pong): each
                        # decompressed on its own, no decompressor is kept between them.
                        client_no_context_takeover=True,
                        compress_settings={"memLevel": MEMORY_LEVEL},
                    )
                ],
                max_size=self.config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete and self.response is not None:
            # The handshake's request and response (their headers parsed twice over) are not read
            # again once the connection is open: a few KB per subscriber.
            self.request = self.response = None  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # Nothing reads the websockets protocol object once the connection is gone; it and its
        # parser (a generator that holds it) form a cycle that only the collector's rare full pass
        # frees, compressor included. Closed, the parser lets go and reference counting frees them.
        self.conn.parser.close()
        self.conn.extensions = []
        _closed.count(self.loop)


class _ClosedConnections:
    """Counts closed connections and runs a full collection, once, a little after every
    ``COLLECT_AFTER_CLOSED`` of them (by then most of a burst of closes has happened)."""

    def __init__(self) -> None:
        self.closed = 0
        self.pending = False

    def count(self, loop: asyncio.AbstractEventLoop) -> None:
        self.closed += 1
        if self.closed >= COLLECT_AFTER_CLOSED and not self.pending:
            self.pending = True
            loop.call_later(COLLECT_DELAY_SECONDS, self.collect)

    def collect(self) -> None:
        self.closed, self.pending = 0, False
        gc.collect()


_closed = _ClosedConnections()
