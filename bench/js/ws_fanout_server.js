'use strict';
// The fan-out benchmark's Node.js server (ws), broadcasting the way ws's
// README does: a loop over wss.clients calling send on each open one.
//
// Usage: node ws_fanout_server.js
//
// Listens on 127.0.0.1, port chosen by the system, and prints the port on
// stdout on one line.  A text message "go <count> <size>" from a client
// makes the server send <count> text messages of <size> bytes to every
// other open client.  It exits when stdin closes.

const { WebSocketServer, WebSocket } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, backlog: 4096, perMessageDeflate: false });

wss.on('listening', () => process.stdout.write(wss.address().port + '\n'));
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const go = /^go (\d+) (\d+)$/.exec(data.toString());
    if (!go) return;
    const payload = 'x'.repeat(Number(go[2]));
    for (let i = 0; i < Number(go[1]); i++) {
      wss.clients.forEach((client) => {
        if (client !== ws && client.readyState === WebSocket.OPEN) client.send(payload);
      });
    }
  });
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
