// The browser side of t/interop/chromium.t: a real browser WebSocket
// client for our server.
//
// The page's URL fragment holds the configuration, as percent-encoded JSON:
//   { "steps": [ { "name": ..., "url": "ws://...", "protocols": [...],
//                  "messages": [ <spec>, ... ],
//                  "close": [ code, reason ] or null }, ... ] }
// A message <spec> is { "binary": 0|1, and one of:
//   "text": "..."               (binary 0: this string)
//   "bytes": [ n, ... ]         (binary 1: these byte values)
//   "prng": seed, "length": n   (n pseudo-random printable ASCII characters,
//                                or n pseudo-random bytes; the test builds
//                                the same ones with the same generator) }
//
// Each step opens a WebSocket offering "protocols", sends every message at
// once when it opens, and expects each to come back once, intact and in
// order; after the last echo it closes with "close" (or, when "close" is
// null, waits for the server to close).  Steps run one after the other.
//
// Every observation is one console line, "EVWS " + JSON, which the test
// reads from Chromium's --enable-logging=stderr output:
//   { step, event: "open", protocol, extensions }
//   { step, event: "echo", index, ok, binary, length }   (one per message)
//   { step, event: "error" }
//   { step, event: "close", code, reason, wasClean, echoes }
//   { step, event: "timeout", echoes } (the step did not finish in 15 s)
//   { step, event: "exception", message } (new WebSocket threw)
//   { event: "done" }                 (after the last step)
'use strict';

function report(record) {
    console.log('EVWS ' + JSON.stringify(record));
}

// The generator the test mirrors in Perl: a 32-bit LCG.  Returns the next
// state; the top byte of each state is the output.
function lcg(x) {
    return (Math.imul(x, 1664525) + 1013904223) >>> 0;
}

function prngMessage(seed, length, binary) {
    const bytes = new Uint8Array(length);
    let x = seed >>> 0;
    for (let i = 0; i < length; i++) {
        x = lcg(x);
        const b = x >>> 24;
        bytes[i] = binary ? b : 33 + (b % 94);
    }
    if (binary) return bytes.buffer;
    // Printable ASCII: the bytes are the characters.
    const parts = [];
    for (let i = 0; i < length; i += 8192) {
        parts.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 8192)));
    }
    return parts.join('');
}

// The string or ArrayBuffer to send for a <spec>.
function materialize(spec) {
    if ('prng' in spec) return prngMessage(spec.prng, spec.length, spec.binary);
    if (spec.binary) return new Uint8Array(spec.bytes || []).buffer;
    return spec.text;
}

// Whether a received message (a string, or an ArrayBuffer with binaryType
// 'arraybuffer') is exactly what was sent, type included.
function sameMessage(got, sent) {
    if (typeof sent === 'string') return typeof got === 'string' && got === sent;
    if (!(got instanceof ArrayBuffer) || got.byteLength !== sent.byteLength) return false;
    const a = new Uint8Array(got), b = new Uint8Array(sent);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
}

function runStep(step) {
    return new Promise(function (resolve) {
        const sent = step.messages.map(materialize);
        let echoes = 0, finished = false;
        const finish = function (record) {
            if (finished) return;
            finished = true;
            clearTimeout(timer);
            report(record);
            resolve();
        };
        const timer = setTimeout(function () {
            finish({ step: step.name, event: 'timeout', echoes: echoes });
        }, 15000);

        let ws;
        try {
            ws = new WebSocket(step.url, step.protocols);
        } catch (e) {
            finish({ step: step.name, event: 'exception', message: String(e) });
            return;
        }
        ws.binaryType = 'arraybuffer';
        ws.onopen = function () {
            report({ step: step.name, event: 'open', protocol: ws.protocol, extensions: ws.extensions });
            for (const m of sent) ws.send(m);
        };
        ws.onmessage = function (e) {
            const index = echoes++;
            const binary = e.data instanceof ArrayBuffer;
            report({
                step: step.name, event: 'echo', index: index,
                ok: index < sent.length && sameMessage(e.data, sent[index]),
                binary: binary ? 1 : 0,
                length: binary ? e.data.byteLength : e.data.length,
            });
            if (echoes === sent.length && step.close) ws.close(step.close[0], step.close[1]);
        };
        ws.onerror = function () {
            report({ step: step.name, event: 'error' });
        };
        ws.onclose = function (e) {
            finish({
                step: step.name, event: 'close', code: e.code, reason: e.reason,
                wasClean: e.wasClean, echoes: echoes,
            });
        };
    });
}

(async function () {
    let config;
    try {
        config = JSON.parse(decodeURIComponent(location.hash.slice(1)));
    } catch (e) {
        report({ event: 'bad-config', message: String(e) });
        report({ event: 'done' });
        return;
    }
    report({ event: 'start', userAgent: navigator.userAgent });
    for (const step of config.steps) await runStep(step);
    report({ event: 'done' });
})();
