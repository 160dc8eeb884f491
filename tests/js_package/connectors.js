// Many clients of the real Node.js package's own JavaScript connector (`WebSocketConnector` of
// `websocket-cross-server-adapter`, installed in target/js-package by scripts/test.sh, speaking
// through the `ws` package installed there) in ONE Node.js process, driven by the Rust tests
// (tests/support/js_connector.rs) with JSON lines on stdin, reporting JSON lines on stdout.
//
//   node tests/js_package/connectors.js
//
// Commands (one JSON object a line on stdin):
//   {"op":"connect","client":C,"url":U[,"reconnect":true][,"options":{...}]}
//       creates a connector for U. Its heartbeat stays on with the default settings; its
//       automatic reconnection (which the connector only starts after an `error` event) is off
//       (`repeatLimit: 0`) unless `reconnect` is true, which also reconnects after a close that
//       is not 4001/4010/4011/4012, as the package's documentation suggests. `options` are
//       merged into the connector's options (e.g. `pingInterval`).
//   {"op":"request","client":C,"event":E,"payload":P,"ref":R[,"timeout":MS]}
//       `emit(E, P, callback)`: the connector's own callback mechanism (callbackId).
//   {"op":"emit","client":C,"event":E,"payload":P}
//       `emit(E, P)` without a callback; nothing is reported.
//   {"op":"close","client":C}
//       `manualClose()`; the client is forgotten.
//
// Reports (one JSON object a line on stdout, in the order things happened):
//   {"kind":"ready"}                                 once, when the package is loaded
//   {"client":C,"kind":"open"}                       the connector's `open` event
//   {"client":C,"kind":"reply","ref":R,"payload":P}  the callback got the reply payload P
//   {"client":C,"kind":"reply-error","ref":R,"error":{error,errorCode}}
//                                                    the callback got an error (timeout, not open)
//   {"client":C,"kind":"push","event":E,"payload":P} a listener of event E got P
//   {"client":C,"kind":"close","code":N,"reason":S}  the connector's `close` event
//   {"client":C,"kind":"error","message":S}          the connector's `error` event
//   {"client":C,"kind":"reconnect","repeat":N,"timeout":MS}  (only with "reconnect": true)
//   {"client":C,"kind":"closed","code":N,"reason":S} after `close`: the closing handshake of
//                                                    the socket manualClose closed is over
//   {["client":C,]"kind":"bad-command","message":S}  a command that could not be run
//
// Heartbeat frames (the connector's `ping`/`pong` events) are not reported.
'use strict';

const path = require('path');
const readline = require('readline');

const { WebSocketConnector } = require(path.join(__dirname, '../../target/js-package'));

// The connector's own events, which its `on` shares with the server's push events.
const SYSTEM_EVENTS = new Set([
    'open', 'close', 'error', 'message', 'ping', 'pong', 'pong-timeout', 'reconnect',
    'repeat-limit',
]);

// Close codes after which a reconnecting client stays closed (the documentation's example).
const FINAL_CODES = new Set([4001, 4010, 4011, 4012]);

// The live clients by name: { connector, reconnect, systemPush }.
const clients = new Map();

function report(line) {
    process.stdout.write(`${JSON.stringify(line)}\n`);
}

function text(value) {
    if (value === undefined || value === null) return '';
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value)) return value.toString('utf8');
    return String(value);
}

// Reports one push `event` with `payload` of client `name`.
function push(name, event, payload) {
    report({ client: name, kind: 'push', event, payload });
}

// Registers the push listener of `event` on `client` unless it has one.
function listen(name, client, event) {
    if (client.listened.has(event)) return;
    client.listened.add(event);
    if (SYSTEM_EVENTS.has(event)) return; // its system listener reports it (see systemPush)
    client.connector.on(event, (payload) => push(name, event, payload));
}

function connect(command) {
    const name = command.client;
    if (clients.has(name)) throw new Error(`client ${name} exists`);
    if (typeof command.url !== 'string') throw new Error('connect needs a url');
    const reconnect = command.reconnect === true;
    const options = { ...(command.options || {}), url: command.url };
    if (!reconnect) options.repeatLimit = 0;
    const connector = new WebSocketConnector(options);
    const client = { connector, reconnect, listened: new Set(), systemPush: null };
    clients.set(name, client);

    // A push named like a system event (e.g. "close") reaches the system listener: the
    // catch-all below marks it, synchronously before the connector dispatches it.
    const system = (event, onSystem) => (arg) => {
        if (client.systemPush === event) {
            client.systemPush = null;
            push(name, event, arg);
        } else {
            onSystem(arg);
        }
    };
    connector.on('open', system('open', () => report({ client: name, kind: 'open' })));
    connector.on('close', system('close', (event) => {
        report({
            client: name,
            kind: 'close',
            code: event?.code ?? null,
            reason: text(event?.reason),
        });
        if (client.reconnect && !FINAL_CODES.has(event?.code)) connector.reconnect();
    }));
    connector.on('error', system('error', (event) => {
        report({ client: name, kind: 'error', message: text(event?.message || event?.error) });
    }));
    connector.on('reconnect', system('reconnect', (info) => {
        if (client.reconnect) {
            report({ client: name, kind: 'reconnect', repeat: info?.repeat, timeout: info?.timeout });
        }
    }));
    for (const event of ['ping', 'pong', 'pong-timeout', 'repeat-limit']) {
        connector.on(event, system(event, () => {}));
    }
    // The catch-all: `message` gets every text frame before the connector handles it, so a
    // listener registered here for a new push event still gets that very push.
    connector.on('message', system('message', (data) => {
        let frame;
        try {
            frame = JSON.parse(text(data));
        } catch {
            return; // the heartbeat echo, or not JSON (the connector ignores it too)
        }
        if (!frame || frame.callbackId || !frame.event || typeof frame.event !== 'string') return;
        listen(name, client, frame.event);
        if (SYSTEM_EVENTS.has(frame.event)) client.systemPush = frame.event;
    }));
    // The demo's push event, registered up front.
    listen(name, client, 'say');
}

function clientOf(command) {
    const client = clients.get(command.client);
    if (!client) throw new Error(`no client ${command.client}`);
    return client;
}

function request(command) {
    const { connector } = clientOf(command);
    const name = command.client;
    const ref = command.ref;
    const options = Number.isInteger(command.timeout) ? { callbackTimeout: command.timeout } : {};
    connector.emit(command.event, command.payload, (error, payload) => {
        if (error) report({ client: name, kind: 'reply-error', ref, error });
        else report({ client: name, kind: 'reply', ref, payload });
    }, options);
}

function emit(command) {
    clientOf(command).connector.emit(command.event, command.payload);
}

function close(command) {
    const client = clientOf(command);
    const name = command.client;
    clients.delete(name);
    client.reconnect = false;
    // manualClose unbinds the connector's handlers, so its `close` event never comes: the raw
    // socket tells when the closing handshake is over.
    const ws = client.connector.ws;
    client.connector.manualClose();
    if (ws && ws.readyState !== ws.CLOSED) {
        ws.once('close', (code, reason) => {
            report({ client: name, kind: 'closed', code, reason: text(reason) });
        });
    } else {
        report({ client: name, kind: 'closed', code: null, reason: '' });
    }
}

const OPS = { connect, request, emit, close };

function run(line) {
    if (line.trim() === '') return;
    let command;
    try {
        command = JSON.parse(line);
        if (!command || typeof command !== 'object') throw new Error('not a JSON object');
        const op = OPS[command.op];
        if (!op) throw new Error(`unknown op ${JSON.stringify(command.op)}`);
        if (typeof command.client !== 'string' || command.client === '') {
            throw new Error('missing client');
        }
        op(command);
    } catch (error) {
        const out = { kind: 'bad-command', message: `${error.message} (in ${line})` };
        if (typeof command?.client === 'string') out.client = command.client;
        if (command?.ref !== undefined) out.ref = command.ref;
        report(out);
    }
}

process.on('uncaughtException', (error) => {
    console.error('[connectors] uncaught:', error);
});

const input = readline.createInterface({ input: process.stdin, terminal: false });
input.on('line', run);
// The test process is gone: close every client and leave.
input.on('close', () => {
    for (const { connector } of clients.values()) connector.manualClose();
    process.exit(0);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => process.exit(0));
}

report({ kind: 'ready' });
