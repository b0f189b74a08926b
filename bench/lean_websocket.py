"""A websocket client for load generation that costs little CPU per message received.

P6's subscribers were ``websockets`` asyncio clients: a task per connection, a frame parser, an
inflater and a queue handoff for each message, about 40 to 70 us of the load generator's CPU per message
on this machine, more than the floor spends sending it. With 1,000 subscribers in one process the
last of a change's messages was then noted tens of milliseconds after it arrived, which counted as
the server's latency. This client reads frames in the protocol callback itself (no task per
connection, no queue) and notes a message the moment its frame is complete.

It speaks what P6 needs of RFC 6455 and RFC 7692 as a browser would: it offers permessage-deflate
(``client_max_window_bits``), inflates compressed messages with one inflater per connection (kept
across messages unless the server said ``server_no_context_takeover``), sends its own few messages
uncompressed and masked, answers pings and closes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# RFC 7692 §7.2.2: the tail a sender removes from each compressed message, put back before inflating.
DEFLATE_TAIL = b"\x00\x00\xff\xff"


class HandshakeRefused(Exception):
    pass


class LeanWebSocket(asyncio.Protocol):
    """One client connection; whole messages go to ``on_message`` (text, as a str) as they complete."""

    def __init__(self, on_message: Callable[[str], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handshaking = True
        self.inflater: zlib._Decompress | None = None  # set when permessage-deflate was agreed
        self.reset_inflater = False
        self.fragments: list[bytes] = []
        self.fragmented_compressed = False

    @classmethod
    async def connect(
        cls, uri: str, on_message: Callable[[str], None], subprotocol: str = "graphql-transport-ws"
    ) -> LeanWebSocket:
        parts = urlsplit(uri)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: cls(on_message), host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        assert protocol.transport is not None
        protocol.transport.write(
            (
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {subprotocol}\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )
        await protocol.opened
        return protocol

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.handshaking and not self._handshake():
            return
        self._frames()

    # Sending

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode())

    async def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(OP_CLOSE, struct.pack("!H", 1000))
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), 2)
            except TimeoutError:
                self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        # RFC 6455 §5.3: XOR with the mask, repeated; done on whole integers, not byte by byte.
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
        self.transport.write(head + mask + masked)

    # Receiving

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        self.handshaking = False
        if not head[0].startswith("HTTP/1.1 101"):
            self.opened.set_exception(HandshakeRefused(head[0]))
            assert self.transport is not None
            self.transport.close()
            return False
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
                self.inflater = zlib.decompressobj(wbits=-15)  # inflates any window the server chose
                self.reset_inflater = "server_no_context_takeover" in value
        self.opened.set_result(None)
        return True

    def _frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length, start = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = struct.unpack_from("!H", buffer, 2)[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            self._frame(first & 0x80 != 0, first & 0x40 != 0, first & 0x0F, payload)

    def _frame(self, fin: bool, compressed: bool, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self._send(OP_PONG, payload)
            return
        if opcode == OP_CLOSE:
            if self.transport is not None and not self.transport.is_closing():
                self._send(OP_CLOSE, payload[:2])
                self.transport.close()
            return
        if opcode == OP_PONG:
            return
        if opcode != OP_CONTINUATION:
            self.fragmented_compressed = compressed
        self.fragments.append(payload)
        if not fin:
            return
        message, self.fragments = b"".join(self.fragments), []
        if self.fragmented_compressed:
            assert self.inflater is not None, "a compressed message without permessage-deflate"
            message = self.inflater.decompress(message + DEFLATE_TAIL)
            if self.reset_inflater:
                self.inflater = zlib.decompressobj(wbits=-15)
        self.on_message(message.decode())
