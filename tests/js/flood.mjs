// A client that sends faster than it reads its replies: it sends COUNT demo `command`
// broadcasts of SIZE bytes each, BATCH of them every EVERY_MS milliseconds, without waiting
// for anything, and counts the `say` pushes that come back (the demo pushes every broadcast to
// every bound client, the sender included). It stops once all COUNT came back, when the
// server closes the connection, or after TIMEOUT_S, and prints one JSON line on stdout:
//
//   {"count":60000,"sent":60000,"received":60000,"distinct":60000,"complete":true,
//    "closed":false,"code":null,"reason":null,"error":null,"sendMs":640,"elapsedMs":2100,
//    "timedOut":false,"unexpected":0}
//
// - sent: commands handed to the socket (all of them unless the connection closed first);
// - received / distinct: `say` broadcast pushes received, and how many different ones (each
//   message carries its sequence number, so duplicates would show);
// - complete: all COUNT came back; the client then closes with 1000 itself;
// - closed: the connection ended before that (code and reason as `ws` reports them; 1006 when
//   no close frame arrived);
// - unexpected: frames that were not one of this client's broadcasts, and duplicates;
// - sendMs: time until the last command was handed over; elapsedMs: until the report.
// A summary line for humans goes to stderr.
//
// Usage: node tests/js/flood.mjs [URL] [--count N] [--batch B] [--every-ms MS] [--size BYTES]
//                                [--timeout-s S]
//   URL defaults to ws://127.0.0.1:9000/?id=flood (the `cluster` example's first node);
//   N 60000, B 200, MS 2, BYTES 2048 (length of each `msg`), S 120.
import WebSocket from 'ws';

const options = {
  url: 'ws://127.0.0.1:9000/?id=flood',
  count: 60000,
  batch: 200,
  everyMs: 2,
  size: 2048,
  timeoutS: 120,
};
const flags = {
  '--count': 'count',
  '--batch': 'batch',
  '--every-ms': 'everyMs',
  '--size': 'size',
  '--timeout-s': 'timeoutS',
};
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i += 1) {
  const key = flags[args[i]];
  if (key) {
    options[key] = Number(args[i + 1]);
    i += 1;
  } else if (!args[i].startsWith('--')) {
    options.url = args[i];
  } else {
    console.error(`unknown flag ${args[i]}; see the top of tests/js/flood.mjs`);
    process.exit(2);
  }
}
const { url, count, batch, everyMs, size, timeoutS } = options;
const SEQ_DIGITS = 10;
if (![count, batch, everyMs, timeoutS].every((n) => Number.isFinite(n) && n > 0) || size < SEQ_DIGITS) {
  console.error(`bad options ${JSON.stringify(options)}`);
  process.exit(2);
}

/** The `msg` of command `seq`: its zero-padded sequence number, padded to `size` bytes. */
function message(seq) {
  return String(seq).padStart(SEQ_DIGITS, '0') + 'x'.repeat(size - SEQ_DIGITS);
}

const report = {
  count,
  sent: 0,
  received: 0,
  distinct: 0,
  complete: false,
  closed: false,
  code: null,
  reason: null,
  error: null,
  sendMs: null,
  elapsedMs: null,
  timedOut: false,
  unexpected: 0,
};
const seen = new Uint8Array(count);
const started = Date.now();
let finished = false;
let sender = null;

/** Prints the report once, then exits. */
function finish() {
  if (finished) return;
  finished = true;
  clearInterval(sender);
  report.elapsedMs = Date.now() - started;
  const r = report;
  console.error(
    `flood: sent ${r.sent}/${r.count} commands, received ${r.received} broadcasts ` +
      `(${r.distinct} distinct) in ${r.elapsedMs} ms (sending took ${r.sendMs} ms); ` +
      (r.complete ? 'complete' : r.closed ? `closed ${r.code} ${r.reason}` : 'timed out'),
  );
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
}

const timer = setTimeout(() => {
  report.timedOut = true;
  finish();
}, timeoutS * 1000);
timer.unref();

/** Sends the next batch of commands; stops the sender after the last one. */
function sendBatch(ws) {
  const end = Math.min(report.sent + batch, count);
  for (let seq = report.sent; seq < end; seq += 1) {
    const payload = { action: 'broadcast', msg: message(seq) };
    ws.send(JSON.stringify({ event: 'command', payload }));
  }
  report.sent = end;
  if (end === count) {
    clearInterval(sender);
    report.sendMs = Date.now() - started;
  }
}

/** Counts one frame from the server. */
function onFrame(data) {
  let frame;
  try {
    frame = JSON.parse(data.toString());
  } catch {
    report.unexpected += 1;
    return;
  }
  const msg = frame?.payload?.msg;
  if (frame?.event !== 'say' || frame.payload.action !== 'broadcast' || typeof msg !== 'string') {
    report.unexpected += 1;
    return;
  }
  const seq = Number(msg.slice(0, SEQ_DIGITS));
  report.received += 1;
  if (msg.length === size && seq < count && seen[seq] === 0) {
    seen[seq] = 1;
    report.distinct += 1;
  } else {
    report.unexpected += 1;
  }
  if (report.distinct === count) {
    report.complete = true;
    ws.close(1000, 'done');
    finish();
  }
}

const ws = new WebSocket(url);
ws.on('open', () => {
  sendBatch(ws);
  if (report.sent < count) sender = setInterval(() => sendBatch(ws), everyMs);
});
ws.on('message', onFrame);
ws.on('error', (err) => {
  report.error = err.message;
});
ws.on('close', (code, reason) => {
  if (report.complete) return;
  report.closed = true;
  report.code = code;
  report.reason = reason.toString();
  finish();
});
