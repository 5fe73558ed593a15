"""Scripted WebSocket peer for interoperability tests (Python websockets).

Usage:
  interop_peer.py server --scenarios FILE [--subprotocols A,B] [--lifetime S]
  interop_peer.py client URL --scenarios FILE [--timeout S]

FILE is a JSON list of scenarios, each {"name": NAME, "offer": [subprotocol,
...] or null, "actions": [ACTION, ...]}.  Compression is off on both sides:
these scenarios are about the base protocol (RFC 6455).

As a server it listens on 127.0.0.1 (port chosen by the system) and prints
the port on stdout on one line.  A connection to /NAME runs the actions of
scenario NAME.  With --subprotocols, the server speaks those subprotocols
in that order of preference: a client offering none of them gets HTTP 400,
one offering none at all is accepted without a subprotocol.  The server
exits after --lifetime seconds (default 60), so that a forgotten server does
not outlive its test.

As a client it runs the scenarios in order, one connection each to
URL/NAME, offering the scenario's subprotocols, then exits with status 0
(a scenario's failure, even to connect, is reported, not fatal).
Everything is bounded by --timeout (default 20 s).

The actions, run one after the other (data in hex, so that any bytes can
be sent):

  {"send": "text" | "binary", "fragments": [HEX, ...]}
      One fragment: a message.  Several: a fragmented message, given to
      send() as an iterable (websockets then sends one frame per fragment
      and an empty final one).  Text fragments are sent as bytes with
      text=True, so they may split a UTF-8 character, or not be UTF-8 at
      all: the library does not check bytes it is told are text.
  {"recv": N}
      Receive N messages, waiting at most 5 s for each.
  {"ping": HEX}
      Send a ping with that payload and wait (at most 5 s) for its pong.
  {"close": [CODE, REASON]}
      Close with that code and reason, waiting for the closing handshake.

An action that fails (a timeout, the connection closed) ends the actions:
the peer then closes with 1011 "interop_peer.py: <exception name>" (if the
connection is still open).  After the actions, the peer waits (at most 5 s)
for the connection to close, then prints one JSON line for the scenario:

  scenario, role             the scenario's name; "server" or "client"
  offered                    the Sec-WebSocket-Protocol header of the request
  subprotocol                the subprotocol in use (null if none)
  received                   one {type, length, sha256, frames, hex} per
                             message: "text" or "binary", the length in
                             bytes, the SHA-256 of the bytes, the lengths
                             of the frames it came in, and the bytes in
                             hex (only when at most 256)
  pings_received             payloads (hex) of the pings received
  pongs_received             payloads (hex) of the pongs received
  pongs                      {ping: HEX, ok: bool} per ping action
  close_rcvd, close_sent     [code, reason] of the close frames received and
                             sent (null if none)
  stopped_by                 the exception that ended the actions early
                             (for example ConnectionClosed), or null
  error, status              (client) why the connection could not be made,
                             and the HTTP status if the server refused it
"""

import argparse
import asyncio
import collections
import hashlib
import json
import sys

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus, NegotiationError
from websockets.frames import Frame, Opcode

# Large enough for the test's 1 MiB messages, whatever the default.
MAX_SIZE = 16 * 2**20
ACTION_TIMEOUT = 5
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


def recording(base):
    """A subclass of the websockets connection class `base` that records the
    frames it receives: the frame lengths of each complete message (in
    `message_frames`, in order), and the payloads of pings and pongs."""

    class Recording(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.message_frames = collections.deque()
            self.partial = []
            self.pings_received = []
            self.pongs_received = []

        def process_event(self, event):
            if isinstance(event, Frame):
                if event.opcode in DATA_OPCODES:
                    self.partial.append(len(event.data))
                    if event.fin:
                        self.message_frames.append(self.partial)
                        self.partial = []
                elif event.opcode is Opcode.PING:
                    self.pings_received.append(bytes(event.data).hex())
                elif event.opcode is Opcode.PONG:
                    self.pongs_received.append(bytes(event.data).hex())
            super().process_event(event)

    return Recording


def describe(message, frames):
    data = message.encode() if isinstance(message, str) else message
    return {
        "type": "text" if isinstance(message, str) else "binary",
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "frames": frames,
        "hex": data.hex() if len(data) <= 256 else None,
    }


def close_of(frame):
    return None if frame is None else [frame.code, frame.reason]


async def run_action(ws, action, report):
    if "send" in action:
        fragments = [bytes.fromhex(f) for f in action["fragments"]]
        message = fragments[0] if len(fragments) == 1 else fragments
        await ws.send(message, text=action["send"] == "text")
    elif "recv" in action:
        for _ in range(action["recv"]):
            message = await asyncio.wait_for(ws.recv(), ACTION_TIMEOUT)
            report["received"].append(describe(message, ws.message_frames.popleft()))
    elif "ping" in action:
        waiter = await ws.ping(bytes.fromhex(action["ping"]))
        try:
            await asyncio.wait_for(waiter, ACTION_TIMEOUT)
            ok = True
        except (TimeoutError, asyncio.TimeoutError):
            ok = False
        report["pongs"].append({"ping": action["ping"], "ok": ok})
    elif "close" in action:
        code, reason = action["close"]
        await ws.close(code, reason)
    else:
        raise ValueError(f"unknown action {action!r}")


async def play(ws, scenario, role):
    """Run the actions of `scenario` on `ws`, wait for the end of the
    connection, and print the report."""
    report = {
        "scenario": scenario["name"],
        "role": role,
        "offered": ws.request.headers.get("Sec-WebSocket-Protocol"),
        "subprotocol": ws.subprotocol,
        "received": [],
        "pongs": [],
        "stopped_by": None,
    }
    try:
        for action in scenario["actions"]:
            await run_action(ws, action, report)
    except Exception as e:
        report["stopped_by"] = f"{type(e).__name__}: {e}"
        # Tell the other side, rather than wait for it to close.
        await ws.close(1011, "interop_peer.py: " + type(e).__name__)
    try:
        await asyncio.wait_for(ws.wait_closed(), ACTION_TIMEOUT)
    except (TimeoutError, asyncio.TimeoutError):
        report["stopped_by"] = report["stopped_by"] or "the connection did not close"
    report["pings_received"] = ws.pings_received
    report["pongs_received"] = ws.pongs_received
    report["close_rcvd"] = close_of(ws.protocol.close_rcvd)
    report["close_sent"] = close_of(ws.protocol.close_sent)
    print(json.dumps(report), flush=True)


async def server(args, scenarios):
    by_path = {"/" + s["name"]: s for s in scenarios}
    supported = [p for p in (args.subprotocols or "").split(",") if p]

    def select_subprotocol(ws, offered):
        # Like the library's default, except that a client offering no
        # subprotocol is accepted without one (as EV::Websockets does).
        if not supported or not offered:
            return None
        for p in supported:
            if p in offered:
                return p
        raise NegotiationError("no common subprotocol")

    async def handler(ws):
        scenario = by_path.get(ws.request.path)
        if scenario is None:
            await ws.close(4404, "no such scenario")
            return
        await play(ws, scenario, "server")

    async with serve(
        handler,
        "127.0.0.1",
        0,
        compression=None,
        max_size=MAX_SIZE,
        ping_interval=None,
        select_subprotocol=select_subprotocol,
        create_connection=recording(ServerConnection),
    ) as srv:
        print(srv.sockets[0].getsockname()[1], flush=True)
        try:
            await asyncio.wait_for(srv.serve_forever(), args.lifetime)
        except (TimeoutError, asyncio.TimeoutError):
            print(f"lifetime of {args.lifetime} s over, exiting", file=sys.stderr)


async def client(args, scenarios):
    base = args.url.rstrip("/")
    for scenario in scenarios:
        try:
            ws = await connect(
                f"{base}/{scenario['name']}",
                subprotocols=scenario.get("offer"),
                compression=None,
                max_size=MAX_SIZE,
                proxy=None,
                ping_interval=None,
                open_timeout=ACTION_TIMEOUT,
                close_timeout=ACTION_TIMEOUT,
                create_connection=recording(ClientConnection),
            )
        except Exception as e:
            print(json.dumps({
                "scenario": scenario["name"],
                "role": "client",
                "error": f"{type(e).__name__}: {e}",
                "status": e.response.status_code if isinstance(e, InvalidStatus) else None,
            }), flush=True)
            continue
        await play(ws, scenario, "client")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--scenarios", required=True)
    s.add_argument("--subprotocols")
    s.add_argument("--lifetime", type=float, default=60)
    c = sub.add_parser("client")
    c.add_argument("url")
    c.add_argument("--scenarios", required=True)
    c.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()

    with open(args.scenarios) as f:
        scenarios = json.load(f)
    if args.role == "server":
        asyncio.run(server(args, scenarios))
    else:
        try:
            asyncio.run(asyncio.wait_for(client(args, scenarios), args.timeout))
        except (TimeoutError, asyncio.TimeoutError):
            print(f"interop_peer.py: timed out after {args.timeout} s", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
