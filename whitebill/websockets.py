"""uvicorn's websocket protocol with a smaller compression window.

Live updates are small JSON messages (a few hundred bytes), each much like the one before. uvicorn
negotiates permessage-deflate with 4 KiB windows and ``memLevel`` 5: about 43 KB of zlib state per
connection, most of what a subscriber costs. A 512-byte window still holds most of the previous message, so
compression stays good for these messages at under a quarter of the memory (512-byte windows,
``memLevel`` 1). Browsers offer permessage-deflate and accept the window sizes the server asks for.
The handshake's request and response are let go once the connection is open.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

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
