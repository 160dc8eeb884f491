// The chat page: one CrosswireClient connected to /ws of the node that served the page.
// Server events: see the top of examples/chat.rs.
import { CrosswireClient } from './crosswire-client.js';

const $ = (id) => document.getElementById(id);

let client = null;
let me = null; // {id, name}
const rooms = new Set(); // the rooms joined; joined again after a reconnection
let current = null; // the room "to the room" sends to
let counts = {}; // room -> members, cluster-wide
const users = new Map(); // id -> nickname, of the users seen

// ---- Entering -----------------------------------------------------------------------------

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('nickname').value.trim();
  if (name) enter(name);
});

// `?name=alice` enters at once.
const preset = new URLSearchParams(location.search).get('name');
if (preset) enter(preset);

function enter(name) {
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'user';
  me = { id: `${slug}-${Math.random().toString(36).slice(2, 6)}`, name };
  $('me').textContent = `you: ${name} (${me.id})`;
  $('me').dataset.id = me.id;
  $('login').hidden = true;
  $('chat').hidden = false;
  $('text').focus();

  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  client = new CrosswireClient({
    url: `${scheme}://${location.host}/ws`,
    customParams: { id: me.id, name },
    protocols: ['crosswire.chat'], // the server echoes it (WsConfig::subprotocols)
    pingInterval: 5000, // a latency figure soon after connecting
    fastReconnectInterval: 2000,
  });
  setState('connecting');
  client.on('open', onOpen);
  client.on('close', ({ code }) => {
    setState('offline');
    $('online-total').textContent = '–';
    showBanner(`disconnected (${code})`);
  });
  client.on('reconnect', ({ repeat, timeout }) => {
    setState('reconnecting');
    showBanner(`reconnecting… (attempt ${repeat}, in ${(timeout / 1000).toFixed(1)} s)`);
  });
  client.on('pong', (ms) => {
    $('latency').textContent = `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  });

  client.on('chat', (m) => {
    remember(m.fromId, m.from);
    if (m.room === null) addMessage('all', 'everyone', m, m.text);
    else addMessage('room', `#${m.room}`, m, m.text);
  });
  client.on('private', (m) => {
    remember(m.fromId, m.from);
    addMessage('private', 'private', m, m.text);
  });
  client.on('presence', (p) => {
    if (p.id === me.id) return;
    if (p.kind === 'offline') users.delete(p.id);
    else remember(p.id, p.name);
    renderUsers();
    if (p.room && rooms.has(p.room)) {
      addSystem(`${p.name} ${p.kind === 'join' ? 'joined' : 'left'} #${p.room}`);
    }
    refreshOnline();
  });
}

async function onOpen() {
  const again = $('banner').hidden === false;
  setState('connected');
  if (again) {
    showBanner('connected', 'connected');
    setTimeout(() => client.isOpen && hideBanner(), 2000);
  }
  // A new connection is in no room: join the page's rooms again.
  for (const room of rooms) await join(room, { quiet: true });
  refreshOnline();
}

// ---- Rooms --------------------------------------------------------------------------------

$('join').addEventListener('submit', async (e) => {
  e.preventDefault();
  const room = $('room-input').value.trim();
  if (!room) return;
  $('room-input').value = '';
  await join(room);
});

async function join(room, { quiet = false } = {}) {
  try {
    const reply = await client.request('join', { room });
    if (!reply.ok) return addSystem(`cannot join #${room}: ${reply.error}`);
    rooms.add(room);
    if (!current) current = room;
    if (reply.members != null) counts[room] = reply.members;
    if (!quiet) addSystem(`you joined #${room} (${reply.members ?? '?'} here)`);
    renderRooms();
  } catch (error) {
    addSystem(`cannot join #${room}: ${error.message}`);
  }
}

async function leave(room) {
  rooms.delete(room);
  if (current === room) current = rooms.values().next().value ?? null;
  renderRooms();
  try {
    await client.request('leave', { room });
    addSystem(`you left #${room}`);
  } catch (error) {
    addSystem(`leaving #${room} failed: ${error.message}`);
  }
}

function renderRooms() {
  const list = $('rooms');
  list.replaceChildren();
  for (const room of rooms) {
    const li = document.createElement('li');
    li.dataset.room = room;
    li.classList.toggle('current', room === current);
    const name = span('name', `#${room}`);
    name.title = 'send to this room';
    name.addEventListener('click', () => {
      current = room;
      $('mode').value = 'room';
      $('mode').dispatchEvent(new Event('change'));
      renderRooms();
    });
    const leaveButton = document.createElement('button');
    leaveButton.className = 'leave';
    leaveButton.textContent = '✕';
    leaveButton.title = `leave #${room}`;
    leaveButton.dataset.testid = 'leave';
    leaveButton.addEventListener('click', () => leave(room));
    li.append(name, span('count', String(counts[room] ?? 0)), leaveButton);
    list.append(li);
  }

  const all = $('all-rooms');
  all.replaceChildren();
  for (const [room, members] of Object.entries(counts)) {
    if (!members) continue;
    const li = document.createElement('li');
    li.dataset.room = room;
    const name = span('name', `#${room}`);
    if (!rooms.has(room)) {
      name.title = 'join';
      name.style.cursor = 'pointer';
      name.addEventListener('click', () => join(room));
    }
    li.append(name, span('count', String(members)));
    all.append(li);
  }
}

// ---- Online counts ------------------------------------------------------------------------

let asking = false;
let askAgain = false;

/** Asks the cluster for its counts; calls made while a question is out are merged into one. */
async function refreshOnline() {
  if (asking) return void (askAgain = true);
  asking = true;
  try {
    const reply = await client.request('online');
    if (!reply.error) {
      $('online-total').textContent = String(reply.total);
      counts = reply.rooms;
      renderRooms();
    }
  } catch {
    // not connected: the next `open` asks again
  } finally {
    asking = false;
    if (askAgain) {
      askAgain = false;
      refreshOnline();
    }
  }
}

// ---- Users --------------------------------------------------------------------------------

function remember(id, name) {
  if (!id || id === me.id) return;
  users.set(id, name);
  renderUsers();
}

function renderUsers() {
  $('users').replaceChildren(
    ...[...users].map(([id, name]) => Object.assign(document.createElement('option'), { value: id, label: name })),
  );
}

// ---- Sending ------------------------------------------------------------------------------

$('mode').addEventListener('change', () => {
  $('to').hidden = $('mode').value !== 'private';
  $('to').required = !$('to').hidden;
});

$('composer').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !client) return;
  const mode = $('mode').value;
  try {
    if (mode === 'room') {
      if (!current) return addSystem('join a room first');
      const reply = await client.request('say', { room: current, text });
      if (!reply.ok) return addSystem(`not sent: ${reply.error ?? 'failed'}`);
    } else if (mode === 'all') {
      const reply = await client.request('shout', { text });
      if (!reply.ok) return addSystem(`not sent: ${reply.error ?? 'failed'}`);
    } else {
      const to = $('to').value.trim();
      const reply = await client.request('whisper', { to, text });
      if (!reply.delivered) return addSystem(`${users.get(to) ?? to} is not online`);
      addMessage('private-sent', `to ${users.get(to) ?? to}`, me, text);
    }
    $('text').value = '';
  } catch (error) {
    addSystem(`not sent: ${error.message}`);
  }
});

// ---- Display ------------------------------------------------------------------------------

function addMessage(kind, where, from, text) {
  const li = document.createElement('li');
  li.dataset.kind = kind;
  const sender = span('from', from.name ?? from.from);
  const fromId = from.id ?? from.fromId;
  sender.title = fromId;
  if (fromId !== me.id) {
    sender.addEventListener('click', () => {
      $('mode').value = 'private';
      $('mode').dispatchEvent(new Event('change'));
      $('to').value = fromId;
      $('text').focus();
    });
  }
  li.append(span('where', where), sender, document.createTextNode(text));
  appendLine(li);
}

function addSystem(text) {
  const li = document.createElement('li');
  li.dataset.kind = 'system';
  li.textContent = text;
  appendLine(li);
}

function appendLine(li) {
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function span(className, text) {
  return Object.assign(document.createElement('span'), { className, textContent: text });
}

function setState(state) {
  $('status').dataset.state = state;
  $('status').textContent = state;
}

function showBanner(text, state = 'reconnecting') {
  $('banner').textContent = text;
  $('banner').dataset.state = state;
  $('banner').hidden = false;
}

function hideBanner() {
  $('banner').hidden = true;
}
