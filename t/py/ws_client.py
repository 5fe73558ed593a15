"""WebSocket client for interoperability tests (Python websockets).

Usage: ws_client.py URL [--no-compression] [--window-bits N] [--timeout SECONDS]

Connects to URL (an echo server), sends a fixed script of messages one at
a time and checks that each echo equals what was sent, type included;
then closes with code 1000 and prints one JSON line on stdout:

  ok                    true
  response_extensions   the server's Sec-WebSocket-Extensions header (null
                        if none)
  negotiated            the negotiated extensions, as repr()
  messages              [{name, length, ok}, ...], one per message sent
  wire_bytes_received   bytes read from the socket (handshake included)
  close_code, close_reason   the server's answer to our close

On any failure (connection, mismatch, timeout) it prints a JSON line with
ok false and "error", writes the error on stderr and exits with status 1.
Everything is bounded by --timeout (default 20 s).  --window-bits N
offers permessage-deflate with server_max_window_bits=N and
client_max_window_bits=N (and compresses with that window and memory
level 1).
"""

import argparse
import asyncio
import json
import os
import sys

from counting import counting
from websockets.asyncio.client import ClientConnection, connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


CountingConnection = counting(ClientConnection)


def script():
    """[(name, what to send, the echo expected)]"""
    compressible = ("All work and no play makes Jack a dull boy. " * 30000)[: 2**20]
    # Matches 20000 bytes back: compressible only with a window over 14 bits,
    # so a sender that exceeds the negotiated window shows.
    blocks = os.urandom(20000) * 8
    # Sent twice: with context takeover the second copy is a reference
    # into the first.
    again = os.urandom(2000)
    return [
        ("text", "hello", "hello"),
        ("binary", b"\x00\x01\x02\xfe\xff", b"\x00\x01\x02\xfe\xff"),
        ("empty text", "", ""),
        ("empty binary", b"", b""),
        ("unicode text", "caf\u00e9 \u263a \U0001f600", "caf\u00e9 \u263a \U0001f600"),
        ("1 MiB compressible text", compressible, compressible),
        ("1 MiB random binary", os.urandom(2**20), None),
        ("random 20000-byte block x 8", blocks, blocks),
        ("2000 random bytes", again, again),
        ("the same 2000 bytes again", again, again),
        ("fragmented text", ["frag-1 ", "frag-2 \u263a ", "frag-3"], "frag-1 frag-2 \u263a frag-3"),
        ("fragmented binary", [b"x" * 100000, b"y" * 100000, b"z"], b"x" * 100000 + b"y" * 100000 + b"z"),
    ]


async def run(args, result):
    extensions = None
    if args.window_bits:
        extensions = [
            ClientPerMessageDeflateFactory(
                server_max_window_bits=args.window_bits,
                client_max_window_bits=args.window_bits,
                compress_settings={"memLevel": 1},
            )
        ]
    async with connect(
        args.url,
        compression=None if args.no_compression else "deflate",
        extensions=extensions,
        max_size=64 * 2**20,
        proxy=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=5,
        create_connection=CountingConnection,
    ) as ws:
        result["response_extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
        result["negotiated"] = [repr(e) for e in ws.protocol.extensions]
        for name, message, expected in script():
            if expected is None:
                expected = message
            await ws.send(message)
            echo = await ws.recv()
            ok = type(echo) is type(expected) and echo == expected
            result["messages"].append({"name": name, "length": len(expected), "ok": ok})
            if not ok:
                got = f"{type(echo).__name__} of length {len(echo)}"
                want = f"{type(expected).__name__} of length {len(expected)}"
                raise AssertionError(f"{name}: echo differs: got {got}, expected {want}")
        await ws.close(1000)
        result["close_code"] = ws.close_code
        result["close_reason"] = ws.close_reason
        result["wire_bytes_received"] = ws.wire_bytes_received


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--window-bits", type=int)
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()

    result = {"ok": False, "messages": []}
    try:
        asyncio.run(asyncio.wait_for(run(args, result), args.timeout))
        result["ok"] = True
    except (TimeoutError, asyncio.TimeoutError):
        result["error"] = f"timed out after {args.timeout} s"
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result), flush=True)
    if not result["ok"]:
        print(f"ws_client.py: {result['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
