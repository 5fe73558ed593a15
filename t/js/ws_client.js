'use strict';
// WebSocket client for interoperability tests (Node.js, ws).
//
// Usage: node ws_client.js URL [--protocol P1,P2] [--no-deflate]
//            [--ping PAYLOAD] [--ask-ping PAYLOAD]
//            [--close CODE:REASON | --server-close CODE:REASON]
//            [--timeout SECONDS]
//
// Connects to URL (an echo server that also understands the commands of
// t/js/ws_echo_server.js), offering the subprotocols of --protocol and,
// unless --no-deflate, permessage-deflate.  Sends a fixed script of
// messages one at a time (see script()), some of them fragmented, and
// checks that each echo equals what was sent, type included.  Then:
//
//   --ping PAYLOAD       sends a ping and waits for the pong, which must
//                        carry PAYLOAD (default "node-ping")
//   --ask-ping PAYLOAD   sends the text "ping?PAYLOAD" and waits for the
//                        server's ping with PAYLOAD (answered by ws) and
//                        the text "pong:PAYLOAD", which says the server saw
//                        the pong (default "server-ping")
//   --close CODE:REASON  closes with that code and reason (default
//                        1000 and no reason) ...
//   --server-close CODE:REASON
//                        ... or sends "close:CODE:REASON" instead, for the
//                        server to close
//
// and waits for the connection to close.  Prints one JSON line on stdout:
//
//   ok                    true if every check passed
//   error                 what failed (when not ok)
//   ws_version            the ws version used
//   protocol              the negotiated subprotocol ('' if none)
//   extensions            the names of the negotiated extensions
//   response_extensions   the server's Sec-WebSocket-Extensions (null if none)
//   messages              [{name, length, ok}], one per message sent
//   pong                  the payload of the pong to our ping
//   pings                 the payloads of the pings the server sent us
//   close_code, close_reason   what the 'close' event reported
//   wire_bytes_received, wire_bytes_sent   bytes on the socket, handshake
//                        included
//
// and exits 0 if ok, else 1.  Everything is bounded by --timeout (default
// 20 s).

const crypto = require('crypto');
const WebSocket = require('ws');
const wsVersion = require('ws/package.json').version;

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

const url = process.argv[2];
const protocols = option('--protocol', '').split(',').filter((p) => p.length);
const deflate = !process.argv.includes('--no-deflate');
const pingPayload = option('--ping', 'node-ping');
const askPingPayload = option('--ask-ping', 'server-ping');
const serverClose = option('--server-close');
const ownClose = option('--close', '1000:');
const timeout = Number(option('--timeout', 20));

// [name, fragments (strings or Buffers; one for a plain message), binary]
function script() {
  const MiB = 1024 * 1024;
  const compressible = 'All work and no play makes Jack a dull boy. '.repeat(30000).slice(0, MiB);
  const smiley = Buffer.from('\u263a');
  // Sent twice: when the sender keeps its compression context, the second
  // copy is a reference into the first.
  const again = crypto.randomBytes(2000);
  return [
    ['text', ['hello'], false],
    ['binary', [Buffer.from([0, 1, 2, 0xfe, 0xff])], true],
    ['empty text', [''], false],
    ['empty binary', [Buffer.alloc(0)], true],
    ['UTF-8 text', ['caf\u00e9 \u263a \u{1f600}'], false],
    ['1 MiB compressible text', [compressible], false],
    ['1 MiB random binary', [crypto.randomBytes(MiB)], true],
    ['2000 random bytes', [again], true],
    ['the same 2000 bytes again', [again], true],
    // The smiley's three bytes are split across fragments: only the whole
    // message has to be valid UTF-8.
    ['fragmented text', ['frag-1 ', Buffer.concat([Buffer.from('frag-2 '), smiley.subarray(0, 1)]),
                         smiley.subarray(1), ' frag-3'], false],
    ['fragmented binary', [Buffer.alloc(100000, 'x'), Buffer.alloc(100000, 'y'), Buffer.from('z')], true],
    ['fragmented, empty fragments', ['', 'a', '', ''], false],
  ];
}

const result = { ok: false, ws_version: wsVersion, messages: [], pings: [] };

function finish(error) {
  if (error) result.error = error instanceof Error ? error.message : String(error);
  else result.ok = true;
  process.stdout.write(JSON.stringify(result) + '\n');
  if (error) process.stderr.write(`ws_client.js: ${result.error}\n`);
  process.exit(error ? 1 : 0);
}

setTimeout(() => finish(`timed out after ${timeout} s`), timeout * 1000);

// Events as promises: next(kind) resolves with the next 'message' (as
// {data, isBinary}), 'pong' (payload) or 'close' ({code, reason}); an
// 'error' or an unexpected close rejects every waiter.
const queues = { message: [], pong: [], close: [] };
const waiters = { message: [], pong: [], close: [] };
let failure = null;
function deliver(kind, value) {
  if (waiters[kind].length) waiters[kind].shift().resolve(value);
  else queues[kind].push(value);
}
function fail(error) {
  failure = failure || error;
  for (const kind of ['message', 'pong']) while (waiters[kind].length) waiters[kind].shift().reject(failure);
}
function next(kind) {
  if (queues[kind].length) return Promise.resolve(queues[kind].shift());
  if (failure && kind !== 'close') return Promise.reject(failure);
  return new Promise((resolve, reject) => waiters[kind].push({ resolve, reject }));
}

async function run() {
  const ws = new WebSocket(url, protocols, {
    perMessageDeflate: deflate,
    maxPayload: 64 * 1024 * 1024,
    handshakeTimeout: 10000,
  });
  let socket = null;
  ws.on('upgrade', (res) => {
    socket = res.socket;
    result.response_extensions = res.headers['sec-websocket-extensions'] ?? null;
  });
  ws.on('message', (data, isBinary) => deliver('message', { data, isBinary }));
  ws.on('ping', (data) => result.pings.push(data.toString()));
  ws.on('pong', (data) => deliver('pong', data.toString()));
  ws.on('close', (code, reason) => {
    deliver('close', { code, reason: reason.toString() });
    fail(new Error(`connection closed (${code})`));
  });
  ws.on('error', (err) => fail(err));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  result.protocol = ws.protocol;
  result.extensions = ws.extensions;

  for (const [name, fragments, binary] of script()) {
    const expected = Buffer.concat(fragments.map((f) => Buffer.from(f)));
    fragments.forEach((f, i) => ws.send(f, { binary, fin: i === fragments.length - 1 }));
    const echo = await next('message');
    const ok = echo.isBinary === binary && Buffer.compare(echo.data, expected) === 0;
    result.messages.push({ name, length: expected.length, ok });
    if (!ok) {
      const type = (b) => (b ? 'binary' : 'text');
      throw new Error(`${name}: echo differs: got ${type(echo.isBinary)} of ${echo.data.length} bytes, `
        + `expected ${type(binary)} of ${expected.length}`);
    }
  }

  ws.ping(pingPayload);
  result.pong = await next('pong');
  if (result.pong !== pingPayload) throw new Error(`pong carried '${result.pong}', not '${pingPayload}'`);

  ws.send('ping?' + askPingPayload);
  const answer = await next('message');
  if (answer.isBinary || answer.data.toString() !== 'pong:' + askPingPayload) {
    throw new Error(`ping? answered with '${answer.data.toString()}'`);
  }
  if (!result.pings.includes(askPingPayload)) throw new Error(`no ping with '${askPingPayload}' arrived`);

  if (serverClose !== undefined) {
    ws.send('close:' + serverClose);
  } else {
    const [, code, reason] = /^(\d+):(.*)$/s.exec(ownClose);
    ws.close(Number(code), reason);
  }
  const closed = await next('close');
  result.close_code = closed.code;
  result.close_reason = closed.reason;
  result.wire_bytes_received = socket.bytesRead;
  result.wire_bytes_sent = socket.bytesWritten;
}

run().then(() => finish(), (err) => finish(err));
