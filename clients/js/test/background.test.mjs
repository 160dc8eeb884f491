// Background mode: `$background` notices on the page's visibilitychange. Node has no
// `document`, so a stand-in EventTarget plays the page; the server is real and closes a
// connection left in the background for its background close time (10 s) with 4003.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CrosswireClient } from '../dist/crosswire-client.js';
import { freePort, next, sleep, startCluster } from './helpers.mjs';

test('sends $background on visibilitychange; the server closes with 4003; back in front it reconnects', async () => {
  const page = Object.assign(new EventTarget(), { visibilityState: 'visible' });
  globalThis.document = page;
  const server = await startCluster(await freePort(), 1);
  const show = (state) => {
    page.visibilityState = state;
    page.dispatchEvent(new Event('visibilitychange'));
  };
  // Records the frames each client sends.
  const sent = { bg: [], fg: [] };
  const recording = (frames) =>
    class extends WebSocket {
      send(data) {
        if (data) frames.push(JSON.parse(data));
        super.send(data);
      }
    };
  const client = new CrosswireClient({
    url: `ws://127.0.0.1:${server.port}/?id=bg`,
    background: true,
    fastReconnectInterval: 50,
    WebSocket: recording(sent.bg),
  });
  const quiet = new CrosswireClient({
    url: `ws://127.0.0.1:${server.port}/?id=fg`,
    autoConnect: false,
    WebSocket: recording(sent.fg),
  });
  try {
    await next(client, 'open');
    show('hidden');
    await sleep(200);
    show('visible');
    await sleep(200);
    show('hidden');
    const hiddenAt = Date.now();
    const close = await next(client, 'close', 15000);
    assert.equal(close.code, 4003);
    assert.ok(Date.now() - hiddenAt > 9000, 'closed by the background close time (10 s)');
    assert.deepEqual(sent.bg, [true, false, true].map((payload) => ({ event: '$background', payload })));
    assert.equal(client.reconnecting(), false, 'a 4003 close is not retried while hidden');
    show('visible');
    await next(client, 'open', 3000);
    assert.equal((await client.request('say', 'front')).echo, 'front');
    // Without the option, the client does not listen to the page.
    quiet.connect();
    await next(quiet, 'open');
    show('hidden');
    show('visible');
    await quiet.request('say', 1);
    assert.deepEqual(sent.fg.map((f) => f.event), ['say']);
  } finally {
    client.close();
    quiet.close();
    delete globalThis.document;
    await server.kill();
  }
});
