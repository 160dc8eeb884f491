/**
* crosswire-client: a WebSocket client for crosswire servers, in browsers and Node.js.
*
* It speaks the client protocol of crosswire's `docs/PROTOCOL.md` (the protocol of the
* `websocket-cross-server-adapter` package, whose `WebSocketConnector` API it keeps):
* JSON text frames `{event, payload, callbackId?}`, replies `{callbackId, payload}`, a text
* heartbeat echoed by the server, `$background` notices, close codes 4001 / 4002.
*/
const OPEN = 1;
const MANUAL = 4001;
const PONG_TIMEOUT = 4002;
const BACKGROUND = 4003;
const noop = () => { };
const failure = (errorCode, error) => Object.assign(new Error(error), { errorCode, error });
const DEFAULTS = {
  customParams: {},
  pingInterval: 10000,
  pongTimeout: 2000,
  pingMsg: '',
  fastReconnectThreshold: 3,
  fastReconnectInterval: 3000,
  reconnectMaxInterval: 120000,
  repeatLimit: null,
  callbackTimeout: 5000,
  pendingTimeout: 100,
  connectTimeout: 10000,
  reconnectOnClose: ({ code }) => code !== 1000 && (code < 4000 || code === PONG_TIMEOUT),
  background: false,
  autoConnect: true,
};
/**
* The delay before reconnection attempt `repeat` (from 1), as in the Rust connector: the fast
* interval up to the fast threshold, then a ceiling doubling from the fast interval up to the
* max interval, the delay drawn from its upper half.
*/
export function backoffDelay(repeat, o, random = Math.random()) {
  if (repeat <= o.fastReconnectThreshold)
    return o.fastReconnectInterval;
  const ceiling = Math.min(o.fastReconnectInterval * 2 ** Math.min(repeat - o.fastReconnectThreshold, 31), o.reconnectMaxInterval);
  return Math.round(ceiling * (1 - random / 2));
}

export class CrosswireClient {
  constructor(options) {
    this.ws = null;
    this.opened = false;
    this.stopped = false;
    this.repeat = 0;
    this.lastClose = 0;
    this.nextId = 0;
    this.pingSent = 0;
    this.listeners = {};
    this.waiting = new Map(); // requests by callbackId
    const o = (this.options = { ...DEFAULTS, ...options });
    if (!/^wss?:\/\/./i.test(o.url))
      throw new TypeError('url must start with ws:// or wss://');
    const doc = globalThis.document;
    if (o.background && doc) {
      this.onVisibility = () => {
        const hidden = doc.visibilityState === 'hidden';
        this.emit('$background', hidden);
        // Back from a long absence the server closed with 4003: come back too.
        if (!hidden && this.lastClose === BACKGROUND)
          this.reconnect(true);
      };
      doc.addEventListener('visibilitychange', this.onVisibility);
    }
    if (o.autoConnect)
      this.connect();
  }

  /** The last heartbeat round trip in ms; undefined before the first. */
  get latency() {
    return this.rtt;
  }

  /** Whether the connection is open. */
  get isOpen() {
    return this.opened && this.ws?.readyState === OPEN;
  }

  /** Opens the connection (done by the constructor unless `autoConnect: false`). */
  connect() {
    if (this.stopped || this.ws || this.retryTimer)
      return;
    const o = this.options;
    let url = o.url;
    const query = new URLSearchParams(o.customParams).toString();
    if (query)
      url += (url.includes('?') ? '&' : '?') + query;
    let ws;
    try {
      const Ws = o.WebSocket ?? globalThis.WebSocket;
      if (!Ws)
        throw new Error('no WebSocket: pass the `WebSocket` option (e.g. from the ws package)');
      ws = this.ws = o.protocols ? new Ws(url, o.protocols) : new Ws(url);
    }
    catch (e) {
      this.fire('error', e);
      return this.retry();
    }
    this.connectTimer = setTimeout(() => {
      this.fire('error', new Error('connecting timed out'));
      this.drop(0, '');
      this.retry();
    }, o.connectTimeout);
    ws.onopen = () => {
      clearTimeout(this.connectTimer);
      this.opened = true;
      this.repeat = 0;
      this.lastClose = 0;
      this.schedulePing();
      this.fire('open');
    };
    ws.onmessage = (e) => this.receive(e.data);
    ws.onerror = (e) => {
      this.fire('error', e);
      // A failed attempt. (Node 20's WebSocket reports it with no close event after.)
      if (!this.opened) {
        this.drop(0, '');
        this.retry();
      }
    };
    ws.onclose = (e) => {
      const info = { code: e.code, reason: e.reason ?? '' };
      // A connection that never opened, or broke without a close frame, is retried.
      if (this.drop(info.code, info.reason) && info.code !== 1006)
        this.afterClose(info);
      else
        this.retry();
    };
  }

  /** Schedules a reconnection, e.g. from a close listener; `reset` restarts the attempt count. Does nothing while open or connecting, or after `close()`. */
  reconnect(reset = false) {
    if (this.ws)
      return;
    if (reset)
      this.repeat = 0;
    this.retry();
  }

  /** Whether reconnection attempts are under way. */
  reconnecting() {
    return this.repeat > 0 && !this.isOpen;
  }

  /** Closes the connection with 4001 and stops for good: no reconnection, no timers. */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.onVisibility)
      globalThis.document.removeEventListener('visibilitychange', this.onVisibility);
    this.drop(MANUAL, 'manual close');
  }

  /** The JS package's name of `close()`. */
  manualClose() {
    this.close();
  }

  setPingInterval(ms, immediate = false) {
    if (!(ms > 0))
      throw new TypeError('pingInterval must be a positive number');
    this.options.pingInterval = ms;
    if (immediate && this.opened && !this.pongTimer)
      this.schedulePing();
  }

  getPingInterval() {
    return this.options.pingInterval;
  }

  /**
  * Sends an event. With a callback it is a request: `callback(null, reply)`, or
  * `callback(error, null)` on timeout, closed connection or when not open.
  * Returns whether the frame was sent.
  */
  emit(event, payload, callback, options = {}) {
    if (!this.isOpen) {
      callback?.(failure('WS_NOT_OPEN', 'WebSocket is not open'), null);
      return false;
    }
    const id = (++this.nextId).toString(36);
    const frame = JSON.stringify({ event, payload: payload ?? null, callbackId: callback ? id : undefined });
    if (callback) {
      const o = this.options;
      const timeout = options.timeout ?? options.callbackTimeout ?? o.callbackTimeout;
      const pendingTimer = options.onPending && setTimeout(options.onPending, options.pendingTimeout ?? o.pendingTimeout);
      const timer = setTimeout(() => done(failure('CALLBACK_TIMEOUT', `Is callback timeout: ${id}`)), timeout);
      const done = (error, reply = null) => {
        clearTimeout(timer);
        clearTimeout(pendingTimer || undefined);
        this.waiting.delete(id);
        callback(error, error ? null : reply);
      };
      this.waiting.set(id, done);
    }
    this.ws.send(frame);
    return true;
  }

  /** Sends a request and resolves with the reply; rejects with a {@link CrosswireError}. */
  request(event, payload, options) {
    return new Promise((resolve, reject) => this.emit(event, payload, (error, reply) => (error ? reject(error) : resolve(reply)), options));
  }

  /** The JS package's promise form: resolves `{success: true, data}` or `{success: false, error, errorCode}`. */
  emitWithPromise(event, payload, options) {
    return this.request(event, payload, options).then((data) => ({ success: true, data }), ({ error, errorCode }) => ({ success: false, error, errorCode }));
  }

  /** Listens to a server push or one of the connector's events; `tag` groups listeners for `off`. */
  on(event, listener, tag) {
    return this.add(event, listener, false, tag);
  }

  /** Like `on`, for the next time only. */
  once(event, listener, tag) {
    return this.add(event, listener, true, tag);
  }

  /** Removes the listeners of `event`: all, one function, or those with a tag. */
  off(event, which) {
    const list = this.listeners[event];
    if (list) {
      this.listeners[event] =
        which === undefined ? [] : list.filter((l) => (typeof which === 'function' ? l.fn : l.tag) !== which);
    }
    return this;
  }

  add(event, fn, once, tag) {
    var _a;
    if (typeof fn !== 'function')
      throw new TypeError('listener must be a function');
    ((_a = this.listeners)[event] ?? (_a[event] = [])).push({ fn, once, tag });
    return this;
  }

  fire(event, data) {
    for (const l of this.listeners[event] ?? []) {
      if (l.once)
        this.listeners[event] = this.listeners[event].filter((x) => x !== l);
      try {
        l.fn(data);
      }
      catch (e) {
        console.error(`crosswire-client: a listener of ${event} failed`, e);
      }
    }
  }

  receive(data) {
    if (typeof data !== 'string')
      return; // the protocol uses text frames only
    this.fire('message', data);
    if (data === this.options.pingMsg) {
      if (!this.pongTimer)
        return;
      this.rtt = performance.now() - this.pingSent;
      this.schedulePing();
      this.fire('pong', this.rtt);
      return;
    }
    let frame;
    try {
      frame = JSON.parse(data);
    }
    catch {
      return;
    }
    if (!frame || typeof frame !== 'object')
      return;
    if (frame.callbackId != null)
      this.waiting.get(String(frame.callbackId))?.(null, frame.payload);
    else if (typeof frame.event === 'string')
      this.fire(frame.event, frame.payload);
  }

  schedulePing() {
    this.stopHeartbeat();
    this.pingTimer = setTimeout(() => {
      this.pingSent = performance.now();
      this.ws.send(this.options.pingMsg);
      this.pongTimer = setTimeout(() => {
        this.fire('pong-timeout');
        const info = { code: PONG_TIMEOUT, reason: 'pong timeout' };
        if (this.drop(info.code, info.reason))
          this.afterClose(info);
      }, this.options.pongTimeout);
      this.fire('ping');
    }, this.options.pingInterval);
  }

  stopHeartbeat() {
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
  }

  /**
  * Forgets the current socket (closing it with `code` when it is still up), its timers and
  * waiting requests; reports a close when it had opened. Returns whether it had opened.
  */
  drop(code, reason) {
    const ws = this.ws;
    if (!ws)
      return false;
    const opened = this.opened;
    this.ws = null;
    this.opened = false;
    clearTimeout(this.connectTimer);
    this.stopHeartbeat();
    // No-op handlers, not null: the `ws` package throws on an 'error' nobody listens to.
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = noop;
    if (ws.readyState <= OPEN)
      ws.close(code || undefined, code ? reason : undefined);
    for (const done of [...this.waiting.values()])
      done(failure('CONNECTION_CLOSED', 'the connection closed before the reply arrived'));
    if (opened) {
      this.lastClose = code;
      this.fire('close', { code, reason });
    }
    return opened;
  }

  /** After a close with a code: reconnects if `reconnectOnClose` says so. */
  afterClose(info) {
    const rule = this.options.reconnectOnClose;
    if (typeof rule === 'function' ? rule(info) : rule)
      this.retry();
  }

  /** Schedules the next attempt of the backoff schedule, or gives up at the repeat limit. */
  retry() {
    if (this.stopped || this.retryTimer || this.ws)
      return;
    const o = this.options;
    if (o.repeatLimit != null && this.repeat >= o.repeatLimit) {
      this.fire('repeat-limit', o.repeatLimit);
      return;
    }
    const timeout = backoffDelay(++this.repeat, o);
    this.fire('reconnect', { repeat: this.repeat, timeout });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.connect();
    }, timeout);
  }
}

/** The name of the class in `websocket-cross-server-adapter`, whose API this one keeps. */
export { CrosswireClient as WebSocketConnector };
export default CrosswireClient;
