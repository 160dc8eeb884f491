// Reconnection: a killed and restarted server, the backoff schedule, the repeat limit, and
// dead servers (one that stops answering the heartbeat, one that never completes the handshake).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WsWebSocket from 'ws';
import { CrosswireClient, backoffDelay } from '../dist/crosswire-client.js';
import { fakeServer, freePort, next, record, sleep, startCluster, waitFor } from './helpers.mjs';

test('reconnects after the server process is killed and restarted on the same port', async () => {
  const port = await freePort(2);
  let server = await startCluster(port);
  const client = new CrosswireClient({
    url: `ws://127.0.0.1:${port}/?id=phoenix`,
    fastReconnectInterval: 100,
    fastReconnectThreshold: 100,
  });
  try {
    await next(client, 'open');
    assert.equal((await client.request('say', 'before')).echo, 'before');
    const seen = record(client, 'close', 'reconnect', 'error', 'open');
    const waiting = assert.rejects(client.request('no-such-event', {}, { timeout: 5000 }), { errorCode: 'CONNECTION_CLOSED' });
    await server.kill();
    await waiting;
    await waitFor(() => seen.filter((e) => e.event === 'reconnect').length >= 3, 3000);
    assert.deepEqual(seen[0].data, { code: 1006, reason: '' }); // a crash: no close frame
    assert.equal(client.reconnecting(), true);
    assert.equal(client.isOpen, false);

    server = await startCluster(port);
    // Attempts come every 100 ms; the bound is for a loaded machine, not a wait.
    await next(client, 'open', 15000);
    assert.equal(client.reconnecting(), false);
    assert.equal((await client.request('say', 'after')).echo, 'after');
    const stats = await client.request('stats', {});
    assert.equal(stats.clients, 1);
  } finally {
    client.close();
    await server.kill();
  }
});

test('the backoff schedule: fast attempts, then delays doubling with jitter, up to the cap', () => {
  const o = { fastReconnectThreshold: 3, fastReconnectInterval: 3000, reconnectMaxInterval: 120000 };
  const noJitter = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((n) => backoffDelay(n, o, 0));
  assert.deepEqual(noJitter, [3000, 3000, 3000, 6000, 12000, 24000, 48000, 96000, 120000, 120000]);
  assert.equal(backoffDelay(5, o, 1), 6000); // the upper half of the ceiling
  assert.equal(backoffDelay(2, o, 1), 3000); // fast attempts have no jitter
  assert.equal(backoffDelay(1e6, o, 0), 120000);
});

test('failed attempts back off with growing delays until the repeat limit stops them', async () => {
  const port = await freePort(); // nothing listens there
  const client = new CrosswireClient({
    url: `ws://127.0.0.1:${port}/`,
    fastReconnectThreshold: 2,
    fastReconnectInterval: 20,
    reconnectMaxInterval: 300,
    repeatLimit: 7,
  });
  const seen = record(client, 'reconnect', 'repeat-limit', 'error', 'open', 'close');
  try {
    await next(client, 'repeat-limit', 10000);
    const delays = seen.filter((e) => e.event === 'reconnect').map((e) => e.data);
    assert.deepEqual(delays.map((d) => d.repeat), [1, 2, 3, 4, 5, 6, 7]);
    const ceilings = [20, 20, 40, 80, 160, 300, 300];
    delays.forEach(({ timeout }, i) => {
      const ceiling = ceilings[i];
      assert.ok(timeout <= ceiling && timeout >= (i < 2 ? ceiling : ceiling / 2), `attempt ${i + 1}: ${timeout} ms`);
    });
    assert.equal(seen.filter((e) => e.event === 'error').length, 8); // the first connection and 7 retries
    assert.ok(!seen.some((e) => e.event === 'open' || e.event === 'close'));
    assert.equal(seen.at(-1).data, 7);
    const count = seen.length;
    await sleep(400);
    assert.equal(seen.length, count, 'no attempts after the repeat limit');
  } finally {
    client.close();
  }
});

test('a server that stops answering the heartbeat: pong-timeout, close 4002 sent, reconnect', async () => {
  const fake = await fakeServer();
  const client = new CrosswireClient({
    url: `ws://127.0.0.1:${fake.port}/`,
    WebSocket: WsWebSocket,
    pingInterval: 100,
    pongTimeout: 200,
    fastReconnectInterval: 50,
  });
  try {
    const seen = record(client, 'ping', 'pong-timeout', 'close', 'reconnect', 'open');
    await waitFor(() => seen.filter((e) => e.event === 'open').length >= 2, 3000);
    assert.deepEqual(seen.slice(0, 6).map((e) => e.event), ['open', 'ping', 'pong-timeout', 'close', 'reconnect', 'open']);
    assert.deepEqual(seen[3].data, { code: 4002, reason: 'pong timeout' });
    const timedOut = seen[2].at - seen[1].at;
    assert.ok(timedOut >= 190 && timedOut < 1000, `pong timeout after ${timedOut} ms`);
    // What reached the server: the heartbeat (an empty text frame), then a close frame 4002.
    await waitFor(() => fake.frames.some((f) => f.opcode === 8));
    assert.deepEqual(fake.frames.slice(0, 2).map((f) => [f.opcode, f.text ?? f.code]), [[1, ''], [8, 4002]]);
    assert.equal(fake.requests.length, 2);
  } finally {
    client.close();
    await fake.close();
  }
});

test('a server that never completes the handshake: the connect timeout counts as a failed attempt', async () => {
  const fake = await fakeServer({ handshake: false });
  const client = new CrosswireClient({
    url: `ws://127.0.0.1:${fake.port}/`,
    connectTimeout: 150,
    fastReconnectInterval: 30,
    repeatLimit: 1,
  });
  try {
    const seen = record(client, 'error', 'reconnect', 'repeat-limit', 'open', 'close');
    await next(client, 'repeat-limit', 3000);
    assert.deepEqual(seen.map((e) => e.event), ['error', 'reconnect', 'error', 'repeat-limit']);
    assert.equal(seen[0].data.message, 'connecting timed out');
    assert.deepEqual(fake.requests, ['GET / HTTP/1.1', 'GET / HTTP/1.1']);
  } finally {
    client.close();
    await fake.close();
  }
});

test('reconnects after a graceful server shutdown (close 1001, going away)', async () => {
  const port = await freePort(2);
  let server = await startCluster(port);
  const client = new CrosswireClient({ url: `ws://127.0.0.1:${port}/?id=leaver`, fastReconnectInterval: 100 });
  try {
    await next(client, 'open');
    const closed = next(client, 'close');
    const reconnect = next(client, 'reconnect');
    server.child.kill('SIGINT');
    assert.equal((await closed).code, 1001);
    assert.deepEqual(await reconnect, { repeat: 1, timeout: 100 });
    await server.exited;
    server = await startCluster(port);
    await next(client, 'open', 5000);
    assert.equal((await client.request('say', 'back')).echo, 'back');
  } finally {
    client.close();
    await server.kill();
  }
});
