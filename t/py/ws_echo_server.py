"""WebSocket echo server for interoperability tests (Python websockets).

Listens on 127.0.0.1, port chosen by the system, and prints the port on
stdout on one line.  Every message is echoed with its type (text as text,
binary as binary), except two text commands:

  close:<code>:<reason>   close the connection with that code and reason
  extensions?             answer (text) a JSON object describing the
                          connection: the client's Sec-WebSocket-Extensions
                          offer ("request"), this server's answer
                          ("response"), the negotiated extensions as repr()
                          ("negotiated"), the bytes received on the socket
                          so far ("wire_bytes_received", handshake included)
                          and the number of messages echoed ("echoed")

Options: --no-compression (do not negotiate permessage-deflate),
--lifetime SECONDS (exit after that long, default 60, so that a forgotten
server does not outlive its test).
"""

import argparse
import asyncio
import json
import sys

from counting import counting
from websockets.asyncio.server import ServerConnection, serve


CountingConnection = counting(ServerConnection)


def describe(ws):
    return {
        "request": ws.request.headers.get("Sec-WebSocket-Extensions"),
        "response": ws.response.headers.get("Sec-WebSocket-Extensions"),
        "negotiated": [repr(e) for e in ws.protocol.extensions],
        "wire_bytes_received": ws.wire_bytes_received,
        "echoed": ws.echoed,
    }


async def echo(ws):
    ws.echoed = 0
    async for message in ws:
        if isinstance(message, str):
            if message == "extensions?":
                await ws.send(json.dumps(describe(ws)))
                continue
            if message.startswith("close:"):
                _, code, reason = message.split(":", 2)
                await ws.close(int(code), reason)
                return
        await ws.send(message)
        ws.echoed += 1


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--lifetime", type=float, default=60)
    args = parser.parse_args()

    async with serve(
        echo,
        "127.0.0.1",
        0,
        compression=None if args.no_compression else "deflate",
        max_size=64 * 2**20,
        ping_interval=None,
        create_connection=CountingConnection,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        try:
            await asyncio.wait_for(server.serve_forever(), args.lifetime)
        except (TimeoutError, asyncio.TimeoutError):
            print(f"lifetime of {args.lifetime} s over, exiting", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
