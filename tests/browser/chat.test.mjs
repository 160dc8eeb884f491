// The chat example (examples/chat.rs) in headless Chromium: two pages on two different nodes
// of one `chat` process chat with each other, then the process is killed and restarted on the
// same ports and both pages reconnect and chat again. The page offers the subprotocol
// `crosswire.chat`, which Chromium requires the server to echo: every connection here is a
// check of the server's subprotocol handshake too.
//
// Needs `cargo build --examples --all-features` (CROSSWIRE_CHAT_BIN overrides the binary) and
// Chromium at /usr/bin/chromium (CHROMIUM_PATH overrides it). Screenshots go to artifacts/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const bin = process.env.CROSSWIRE_CHAT_BIN ?? path.join(root, 'target/debug/examples/chat');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const artifacts = path.join(here, 'artifacts');
const WAIT = 15_000; // ms for any one expected change to show

/** A port P with P and P+1 both free. */
async function freePortPair() {
  const listen = (port) =>
    new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  const close = (server) => new Promise((resolve) => server.close(resolve));
  for (let i = 0; i < 50; i++) {
    const first = await listen(0);
    const port = first.address().port;
    try {
      if (port >= 65535) continue;
      await close(await listen(port + 1));
      return port;
    } catch {
      // P+1 is taken: try another P
    } finally {
      await close(first);
    }
  }
  throw new Error('no two consecutive free ports');
}

/** Starts the chat example with 2 nodes on `port`, `port`+1; resolves once both listen. */
function startServer(port) {
  const child = spawn(bin, ['--nodes', '2', '--port', String(port)], {
    cwd: root,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr.on('data', (d) => (output += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`the chat example did not start:\n${output}`)), WAIT);
    const fail = (error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.once('error', fail);
    child.once('exit', (code) => fail(new Error(`the chat example exited (${code}):\n${output}`)));
    child.stdout.on('data', (d) => {
      output += d;
      if ((output.match(/^chat: http:\/\//gm) ?? []).length >= 2) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(child);
      }
    });
  });
}

function kill(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGKILL');
  });
}

describe('chat example in Chromium', { timeout: 180_000 }, () => {
  let port;
  let server;
  let browser;
  let alice; // a page on node 1 (port P)
  let bob; // a page on node 2 (port P+1)
  let aliceId;
  let bobId;
  const pageErrors = [];

  const shot = async (name) => {
    await alice.screenshot({ path: path.join(artifacts, `${name}-alice.png`) });
    await bob.screenshot({ path: path.join(artifacts, `${name}-bob.png`) });
  };
  const line = (page, kind, text) => page.locator(`#messages li[data-kind="${kind}"]`, { hasText: text });
  const waitText = (page, selector, text) =>
    page.waitForFunction(([s, t]) => document.querySelector(s)?.textContent === t, [selector, text], {
      timeout: WAIT,
    });
  const waitState = (page, state) => page.waitForSelector(`#status[data-state="${state}"]`, { timeout: WAIT });
  const send = async (page, mode, text, to, { accepted = true } = {}) => {
    await page.selectOption('#mode', mode);
    if (to) await page.fill('#to', to);
    await page.fill('#text', text);
    await page.click('[data-testid="send"]');
    // The box is cleared once the server accepted the message.
    if (accepted) {
      await page.waitForFunction(() => document.querySelector('#text').value === '', null, { timeout: WAIT });
    }
  };

  before(async () => {
    assert.ok(existsSync(bin), `${bin} is missing: run cargo build --examples --all-features`);
    assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install chromium`);
    mkdirSync(artifacts, { recursive: true });
    port = await freePortPair();
    server = await startServer(port);
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
    const open = async (p) => {
      const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
      const page = await context.newPage();
      page.setDefaultTimeout(WAIT);
      page.on('pageerror', (error) => pageErrors.push(`${p}: ${error.message}`));
      await page.goto(`http://127.0.0.1:${p}/`);
      return page;
    };
    alice = await open(port);
    bob = await open(port + 1);
  });

  after(async () => {
    await browser?.close();
    await kill(server);
  });

  test('serves the page, its files and the WebSocket on one port', async () => {
    const get = (p) => fetch(`http://127.0.0.1:${port}${p}`);
    const types = { '/': 'text/html', '/chat.css': 'text/css', '/chat.js': 'text/javascript', '/crosswire-client.js': 'text/javascript' };
    for (const [p, type] of Object.entries(types)) {
      const response = await get(p);
      assert.equal(response.status, 200, p);
      assert.match(response.headers.get('content-type'), new RegExp(`^${type}`), p);
    }
    assert.equal((await get('/nope')).status, 404);
    assert.equal((await get('/ws')).status, 426); // not an upgrade
  });

  test('two users on two nodes enter and join a room', async () => {
    for (const [page, name] of [
      [alice, 'alice'],
      [bob, 'bob'],
    ]) {
      await page.fill('#nickname', name);
      await page.click('[data-testid="login-button"]');
      await waitState(page, 'connected');
      await page.fill('#room-input', 'lobby');
      await page.click('[data-testid="join-button"]');
      await page.waitForSelector('#rooms li[data-room="lobby"]');
    }
    aliceId = await alice.getAttribute('#me', 'data-id');
    bobId = await bob.getAttribute('#me', 'data-id');
    assert.match(aliceId, /^alice-/);
    assert.match(bobId, /^bob-/);
    for (const page of [alice, bob]) {
      await waitText(page, '#online-total', '2');
      await waitText(page, '#rooms li[data-room="lobby"] .count', '2');
      // The heartbeat's round trip, a few seconds after connecting.
      await page.waitForFunction(() => /\d ms$/.test(document.querySelector('#latency').textContent), null, {
        timeout: WAIT,
      });
    }
    await shot('01-joined');
  });

  test('room messages reach both nodes', async () => {
    await send(alice, 'room', 'hello from alice');
    await send(bob, 'room', 'hi alice, bob here');
    for (const page of [alice, bob]) {
      await line(page, 'room', 'hello from alice').waitFor();
      await line(page, 'room', 'hi alice, bob here').waitFor();
    }
    await send(alice, 'all', 'shouting to everyone');
    await line(bob, 'all', 'shouting to everyone').waitFor();
    await shot('02-room-messages');
  });

  test('a private message reaches only its recipient', async () => {
    await send(bob, 'private', 'psst alice', aliceId);
    await line(alice, 'private', 'psst alice').waitFor();
    await line(bob, 'private-sent', 'psst alice').waitFor();
    assert.equal(await line(bob, 'private', 'psst alice').count(), 0);
    // To someone who is not there: the sender is told.
    await send(alice, 'private', 'anyone?', 'nobody-0000', { accepted: false });
    await alice.locator('#messages li[data-kind="system"]', { hasText: 'nobody-0000 is not online' }).waitFor();
    await shot('03-private');
  });

  test('both pages show the restart of the server and chat again', async () => {
    await kill(server);
    for (const page of [alice, bob]) {
      await waitState(page, 'reconnecting');
      await page.locator('#banner', { hasText: 'reconnecting' }).waitFor({ state: 'visible' });
    }
    await shot('04-reconnecting');

    server = await startServer(port);
    for (const page of [alice, bob]) {
      await waitState(page, 'connected');
      await waitText(page, '#online-total', '2');
      // The page joined its room again.
      await waitText(page, '#rooms li[data-room="lobby"] .count', '2');
    }
    await shot('05-reconnected');

    await send(bob, 'room', 'back after the restart');
    await send(alice, 'room', 'welcome back');
    for (const page of [alice, bob]) {
      await line(page, 'room', 'back after the restart').waitFor();
      await line(page, 'room', 'welcome back').waitFor();
    }
    await send(alice, 'private', 'still there?', bobId);
    await line(bob, 'private', 'still there?').waitFor();
    await shot('06-after-restart');
    assert.deepEqual(pageErrors, []);
  });
});
