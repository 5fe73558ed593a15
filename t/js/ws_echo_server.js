'use strict';
// WebSocket echo server for interoperability tests (Node.js, ws).
//
// Usage: node ws_echo_server.js [--deflate] [--lifetime SECONDS]
//
// Listens on 127.0.0.1, port chosen by the system, and prints the port on
// stdout on one line.  Every message is echoed with its type (text as
// text, binary as binary), except these text commands:
//
//   close:<code>:<reason>   close the connection with that code and reason
//   ping?<payload>          send a ping with that payload; every pong that
//                           comes back is answered with the text
//                           "pong:<its payload>"
//   info?                   answer (text) a JSON object describing the
//                           connection (see info() below)
//
// Subprotocols: 'chat.v2' is chosen when the client offers it, otherwise
// none.  --deflate enables permessage-deflate (ws's defaults); without it
// the server declines the extension.  --lifetime (default 60) makes the
// server exit after that long, so that a forgotten one does not outlive
// its test.
//
// What happens on each connection is reported on stdout, one JSON object
// per line, with "event" one of connection, ping, pong, close, error and
// "id" the connection's number (1, 2, ...).

const { WebSocketServer } = require('ws');
const wsVersion = require('ws/package.json').version;

const args = process.argv.slice(2);
const deflate = args.includes('--deflate');
const lifetimeAt = args.indexOf('--lifetime');
const lifetime = lifetimeAt >= 0 ? Number(args[lifetimeAt + 1]) : 60;

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: deflate,
  maxPayload: 64 * 1024 * 1024,
  handleProtocols: (protocols) => (protocols.has('chat.v2') ? 'chat.v2' : false),
});

// The response headers of each handshake, for info?.
wss.on('headers', (headers, req) => {
  req.responseHeaders = headers.slice();
});

wss.on('listening', () => report(wss.address().port));

let connections = 0;
wss.on('connection', (ws, req) => {
  const id = ++connections;
  const socket = req.socket;
  const responseExtensions = (req.responseHeaders || [])
    .filter((h) => /^sec-websocket-extensions:/i.test(h))
    .map((h) => h.replace(/^[^:]*:\s*/, ''));
  let echoed = 0;

  const info = () => ({
    ws_version: wsVersion,
    protocol: ws.protocol,
    // The names of the negotiated extensions, comma-separated.
    extensions: ws.extensions,
    // ws's view of the negotiated permessage-deflate parameters.
    deflate_params: ws._extensions && ws._extensions['permessage-deflate']
      ? ws._extensions['permessage-deflate'].params
      : null,
    request_protocols: req.headers['sec-websocket-protocol'] ?? null,
    request_extensions: req.headers['sec-websocket-extensions'] ?? null,
    response_extensions: responseExtensions.length ? responseExtensions.join(', ') : null,
    // Bytes read from and written to the socket so far, handshake included.
    wire_bytes_received: socket.bytesRead,
    wire_bytes_sent: socket.bytesWritten,
    echoed,
  });

  report({ event: 'connection', id, ...info() });

  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString();
      if (text === 'info?') return ws.send(JSON.stringify(info()));
      if (text.startsWith('ping?')) return ws.ping(text.slice(5));
      const close = /^close:(\d+):(.*)$/s.exec(text);
      if (close) return ws.close(Number(close[1]), close[2]);
    }
    ws.send(data, { binary: isBinary });
    echoed++;
  });
  ws.on('ping', (data) => report({ event: 'ping', id, payload: data.toString() }));
  ws.on('pong', (data) => {
    report({ event: 'pong', id, payload: data.toString() });
    ws.send('pong:' + data.toString());
  });
  ws.on('close', (code, reason) => {
    report({ event: 'close', id, code, reason: reason.toString(), echoed, wire_bytes_received: socket.bytesRead });
  });
  ws.on('error', (err) => report({ event: 'error', id, error: err.message }));
});

setTimeout(() => {
  process.stderr.write(`lifetime of ${lifetime} s over, exiting\n`);
  process.exit(0);
}, lifetime * 1000);
