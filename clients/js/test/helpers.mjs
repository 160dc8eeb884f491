// Test helpers: the real crosswire `cluster` example server as a child process, a fake
// WebSocket server that never answers, free ports, and waiting for client events.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
export const CLUSTER_BIN =
  process.env.CROSSWIRE_CLUSTER_BIN ?? `${process.env.CARGO_TARGET_DIR ?? `${root}target`}/debug/examples/cluster`;

/** Whether `port` can be bound on 127.0.0.1 now. */
const bindable = (port) =>
  new Promise((resolve) => {
    const s = net.createServer().once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });

/**
 * `count` consecutive free ports, below Linux's ephemeral range (32768 and up). A client that
 * connects to a free port of that range while retrying may get the same port as its own source
 * port and connect to itself (a TCP "self-connect"), then the server cannot come back there.
 */
export async function freePort(count = 1) {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    let ok = true;
    for (let i = 0; ok && i < count; i++) ok = await bindable(port + i);
    if (ok) return port;
  }
}

/** Starts the cluster example with `nodes` nodes from `port`; resolves once all listen. */
export async function startCluster(port, nodes = 2) {
  if (!existsSync(CLUSTER_BIN)) throw new Error(`${CLUSTER_BIN} missing: run \`cargo build --examples\` first`);
  const child = spawn(CLUSTER_BIN, ['--nodes', String(nodes), '--port', String(port)], {
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  process.once('exit', () => child.kill('SIGKILL')); // even when a test crashes
  const server = {
    child,
    port,
    output: '',
    exited: new Promise((r) => child.once('exit', r)),
    /** Kills the process at once (SIGKILL: no close frames, like a crash). */
    async kill() {
      child.kill('SIGKILL');
      await server.exited;
    },
  };
  const collect = (chunk) => (server.output += chunk.toString().replace(/\x1b\[[0-9;]*m/g, ''));
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  await waitFor(() => (server.output.match(/listening on ws:\/\//g) ?? []).length >= nodes, 20000, () => server.output);
  return server;
}

/** Polls `check` until it is truthy. */
export async function waitFor(check, timeout = 5000, describe = () => '') {
  const end = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting ${describe()}`);
    await sleep(20);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the data of the next `event` of `client`, rejects after `timeout` ms. */
export function next(client, event, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(event, done);
      reject(new Error(`no ${event} event within ${timeout} ms`));
    }, timeout);
    const done = (data) => {
      clearTimeout(timer);
      resolve(data);
    };
    client.once(event, done);
  });
}

/** Records every `event` of `client` in an array. */
export function record(client, ...events) {
  const seen = [];
  for (const event of events) client.on(event, (data) => seen.push({ event, data, at: Date.now() }));
  return seen;
}

/**
 * A fake WebSocket server: completes the handshake (unless `handshake: false`) and then
 * never answers; it records the handshake requests' first lines and decodes the client's
 * frames, so tests see the attempts, the heartbeat and close codes.
 */
export async function fakeServer({ handshake = true } = {}) {
  const fake = { frames: [], requests: [], sockets: new Set() };
  const server = net.createServer((socket) => {
    fake.sockets.add(socket);
    socket.on('close', () => fake.sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    socket.on('data', (chunk) => {
      if (!buffer.length && !upgraded) fake.requests.push(chunk.toString().split('\r\n')[0]);
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0 || !handshake) return;
        const key = /sec-websocket-key: *(\S+)/i.exec(buffer.subarray(0, end).toString())[1];
        const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        upgraded = true;
        buffer = buffer.subarray(end + 4);
      }
      let frame;
      while ((frame = decodeFrame(buffer))) {
        buffer = buffer.subarray(frame.size);
        fake.frames.push(frame);
      }
    });
  });
  fake.port = await freePort();
  await new Promise((r) => server.listen(fake.port, '127.0.0.1', r));
  fake.close = () => {
    for (const s of fake.sockets) s.destroy();
    return new Promise((r) => server.close(r));
  };
  return fake;
}

/** Decodes one masked client frame at the start of `buf`: `{opcode, text, code, size}`, or null. */
function decodeFrame(buf) {
  if (buf.length < 2) return null;
  let len = buf[1] & 0x7f;
  let at = 2;
  if (len === 126) [len, at] = [buf.length >= 4 ? buf.readUInt16BE(2) : Infinity, 4];
  else if (len === 127) [len, at] = [buf.length >= 10 ? Number(buf.readBigUInt64BE(2)) : Infinity, 10];
  const masked = buf[1] & 0x80;
  const start = at + (masked ? 4 : 0);
  if (buf.length < start + len) return null;
  const payload = Buffer.from(buf.subarray(start, start + len));
  if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[at + (i % 4)];
  const opcode = buf[0] & 0x0f;
  return {
    opcode,
    text: opcode === 1 ? payload.toString() : undefined,
    code: opcode === 8 && len >= 2 ? payload.readUInt16BE(0) : undefined,
    size: start + len,
  };
}
