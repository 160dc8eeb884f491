// Sends one text message of SIZE bytes to a crosswire server and reports the close code the
// `ws` client library saw, as one JSON line on stdout:
//
//   {"code":1009,"reason":"message too big","closeFrame":true,"error":null,"sendError":null,
//    "sendDone":true,"elapsedMs":12,"timedOut":false}
//
// `code` is what the `close` event of `ws` reports: the code of the server's close frame, or
// 1006 when the connection ended without one (`closeFrame` is then false).
//
// Usage: node tests/js/oversized.mjs URL SIZE [--timeout-s S]
//   URL   e.g. ws://127.0.0.1:9000/?id=big
//   SIZE  bytes of the message, e.g. 2097152 (it is a demo `say` event, padded)
//   S     give up after S seconds (default 20) and report {"timedOut":true}
import WebSocket from 'ws';

const [url, sizeArg, ...rest] = process.argv.slice(2);
const size = Number(sizeArg);
if (!url || !Number.isInteger(size) || size < 64) {
  console.error('usage: node tests/js/oversized.mjs URL SIZE [--timeout-s S]');
  process.exit(2);
}
let timeoutS = 20;
for (let i = 0; i < rest.length; i += 2) {
  if (rest[i] === '--timeout-s') timeoutS = Number(rest[i + 1]);
  else {
    console.error(`unknown flag ${rest[i]}`);
    process.exit(2);
  }
}

/** A demo `say` event of exactly `size` bytes. */
function frameOfSize(size) {
  const empty = '{"event":"say","payload":""}';
  return `{"event":"say","payload":"${'x'.repeat(size - empty.length)}"}`;
}

const started = Date.now();
const report = {
  code: null,
  reason: null,
  closeFrame: false,
  error: null,
  sendError: null,
  sendDone: false,
  elapsedMs: null,
  timedOut: false,
};
let finished = false;

/** Prints the report once and exits. */
function finish() {
  if (finished) return;
  finished = true;
  report.elapsedMs = Date.now() - started;
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
}

const timer = setTimeout(() => {
  report.timedOut = true;
  finish();
}, timeoutS * 1000);
timer.unref();

const ws = new WebSocket(url);
ws.on('open', () => {
  ws.send(frameOfSize(size), (err) => {
    if (err) report.sendError = err.message;
    else report.sendDone = true;
  });
});
ws.on('error', (err) => {
  report.error = err.message;
});
ws.on('close', (code, reason) => {
  report.code = code;
  report.reason = reason.toString();
  report.closeFrame = code !== 1006;
  finish();
});
