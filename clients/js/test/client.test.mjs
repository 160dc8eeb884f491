// Behaviour against a real crosswire server: the `cluster` example, 2 nodes in one process.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WsWebSocket from 'ws';
import { CrosswireClient, WebSocketConnector } from '../dist/crosswire-client.js';
import { freePort, next, record, sleep, startCluster, waitFor } from './helpers.mjs';

let server;
const clients = [];

/** A client of node `node` (0 or 1) with id `id`, open. */
async function open(id, options = {}, node = 0) {
  const client = new CrosswireClient({ url: `ws://127.0.0.1:${server.port + node}/`, customParams: { id }, ...options });
  clients.push(client);
  await next(client, 'open');
  return client;
}

before(async () => {
  server = await startCluster(await freePort(2));
});
after(async () => {
  for (const c of clients) c.close();
  await server?.kill();
});

describe('requests', () => {
  test('connects with Node’s global WebSocket and gets a reply (request → Promise)', async () => {
    assert.equal(typeof globalThis.WebSocket, 'function');
    const client = await open('r1');
    assert.equal(client.isOpen, true);
    const raw = next(client, 'message');
    const reply = await client.request('say', { msg: 'hi' });
    assert.match(await raw, /^\{"callbackId":"\w+","payload":/);
    assert.deepEqual(reply, { msg: 'I am a callback for your say event', echo: { msg: 'hi' } });
  });

  test('works with the `ws` package’s WebSocket passed in', async () => {
    const client = await open('r2', { WebSocket: WsWebSocket });
    const stats = await client.request('stats', {});
    assert.deepEqual(stats.nodes.map((n) => n.name), ['node1', 'node2']);
    assert.ok(stats.clients >= 1);
    assert.equal((await client.request('say', 7)).echo, 7);
  });

  test('emit with a callback gets the reply; emitWithPromise answers like the JS package', async () => {
    const client = await open('r3');
    const [error, reply] = await new Promise((resolve) =>
      client.emit('say', 'cb', (...args) => resolve(args)),
    );
    assert.equal(error, null);
    assert.equal(reply.echo, 'cb');
    assert.deepEqual(await client.emitWithPromise('say', 1), { success: true, data: { msg: reply.msg, echo: 1 } });
    assert.equal(client.emit('say', 'no reply wanted'), true);
  });

  test('an unanswered request times out; the pending notice comes first, once', async () => {
    const client = await open('r4');
    const order = [];
    const started = Date.now();
    const [error, reply] = await new Promise((resolve) =>
      client.emit('no-such-event', {}, (...args) => resolve(args), {
        timeout: 300,
        pendingTimeout: 50,
        onPending: () => order.push(['pending', Date.now() - started]),
      }),
    );
    const elapsed = Date.now() - started;
    assert.equal(reply, null);
    assert.equal(error.errorCode, 'CALLBACK_TIMEOUT');
    assert.ok(error instanceof Error && error.error === error.message);
    assert.ok(elapsed >= 290 && elapsed < 2000, `timed out after ${elapsed} ms`);
    assert.equal(order.length, 1);
    assert.ok(order[0][1] >= 45 && order[0][1] < 290, `pending after ${order[0][1]} ms`);

    await assert.rejects(client.request('no-such-event', {}, { callbackTimeout: 100 }), { errorCode: 'CALLBACK_TIMEOUT' });
    assert.deepEqual(
      { ...(await client.emitWithPromise('no-such-event', {}, { timeout: 100 })), error: undefined },
      { success: false, error: undefined, errorCode: 'CALLBACK_TIMEOUT' },
    );
    // A quick reply cancels the pending notice.
    let pending = 0;
    await client.request('say', {}, { pendingTimeout: 1000, onPending: () => pending++ });
    await sleep(1100);
    assert.equal(pending, 0);
  });
});

describe('pushes', () => {
  test('on / once / off with tags, across the two nodes', async () => {
    const aliceId = 'p-alice é&+ 1'; // customParams are URL-encoded
    const alice = await open(aliceId, {}, 0);
    const bob = await open('p-bob', {}, 1);
    const got = { on: [], tagged: [], once: [], byFn: [] };
    alice.on('say', (p) => got.on.push(p.msg));
    alice.on('say', (p) => got.tagged.push(p.msg), 'ui');
    alice.on('say', (p) => got.tagged.push(p.msg), 'ui');
    alice.once('say', (p) => got.once.push(p.msg));
    const byFn = (p) => got.byFn.push(p.msg);
    alice.on('say', byFn);

    const toAlice = (msg) => bob.request('command', { action: 'toPlayer', toPlayerId: aliceId, msg });
    const pushed = next(alice, 'say');
    assert.match((await toAlice('one')).msg, /sent successfully/);
    assert.deepEqual(await pushed, { action: 'toPlayer', msg: 'one' });

    alice.off('say', 'ui').off('say', byFn);
    const second = next(alice, 'say');
    await toAlice('two');
    await second;
    assert.deepEqual(got, { on: ['one', 'two'], tagged: ['one', 'one'], once: ['one'], byFn: ['one'] });

    alice.off('say');
    await toAlice('three');
    await sleep(200);
    assert.deepEqual(got.on, ['one', 'two']);
  });

  test('room and broadcast pushes arrive', async () => {
    const carol = await open('p-carol', {}, 1);
    const dave = await open('p-dave', {}, 0);
    assert.match((await carol.request('joinRoom', { roomId: 'js-room' })).msg, /Successfully joined/);
    const inRoom = next(carol, 'say');
    await dave.request('command', { action: 'toRoom', roomId: 'js-room', msg: 'room' });
    assert.deepEqual(await inRoom, { action: 'toRoom', msg: 'room' });
    const everyone = Promise.all([next(carol, 'say'), next(dave, 'say')]);
    await dave.request('command', { action: 'broadcast', msg: 'all' });
    for (const push of await everyone) assert.equal(push.msg, 'all');
  });
});

describe('heartbeat', () => {
  test('measures the latency: ping, then pong with the round trip in ms', async () => {
    const client = await open('h1', { pingInterval: 100 });
    assert.equal(client.latency, undefined);
    const seen = record(client, 'ping', 'pong');
    const latency = await next(client, 'pong', 2000);
    assert.equal(typeof latency, 'number');
    assert.ok(latency >= 0 && latency < 1000, `latency ${latency}`);
    assert.equal(client.latency, latency);
    assert.deepEqual(seen.map((e) => e.event).slice(0, 2), ['ping', 'pong']);
    await next(client, 'pong', 2000); // and again, every pingInterval
    client.setPingInterval(5000);
    assert.equal(client.getPingInterval(), 5000);
  });
});

describe('closing', () => {
  test('close() sends 4001 (seen by the server), fails waiting requests and never reconnects', async () => {
    const client = await open('c-manual', { fastReconnectInterval: 50 });
    const seen = record(client, 'close', 'reconnect', 'open');
    const waiting = client.request('no-such-event', {}, { timeout: 5000 });
    client.close();
    await assert.rejects(waiting, { errorCode: 'CONNECTION_CLOSED' });
    assert.deepEqual(seen.map((e) => [e.event, e.data]), [['close', { code: 4001, reason: 'manual close' }]]);
    assert.equal(client.isOpen, false);
    await waitFor(() => /id=Some\("c-manual"\) code=4001/.test(server.output), 3000, () => server.output.slice(-2000));
    await sleep(300);
    assert.equal(seen.length, 1, 'no reconnection after close()');
    client.reconnect();
    client.connect();
    await sleep(100);
    assert.equal(seen.length, 1);
    const [error] = await new Promise((resolve) => client.emit('say', {}, (...args) => resolve(args)));
    assert.equal(error.errorCode, 'WS_NOT_OPEN');
    assert.equal(client.emit('say', {}), false);
  });

  test('a server close with an application code (4011, no id) is reported and not retried', async () => {
    const client = new WebSocketConnector({ url: `ws://127.0.0.1:${server.port}/`, fastReconnectInterval: 50 });
    clients.push(client);
    const seen = record(client, 'open', 'close', 'reconnect');
    await waitFor(() => seen.some((e) => e.event === 'close'));
    await sleep(300);
    assert.deepEqual(seen.map((e) => e.event), ['open', 'close']);
    assert.equal(seen[1].data.code, 4011);
    assert.equal(seen[1].data.reason, 'Auth failure');
    assert.equal(client.reconnecting(), false);
    const reconnect = next(client, 'reconnect');
    client.reconnect(true); // the application may still decide to
    assert.deepEqual(await reconnect, { repeat: 1, timeout: 50 });
  });
});
