// Declarations of src/index.js, kept by hand beside it; test/types.ts checks them.
/**
 * crosswire-client: a WebSocket client for crosswire servers, in browsers and Node.js.
 *
 * It speaks the client protocol of crosswire's `docs/PROTOCOL.md` (the protocol of the
 * `websocket-cross-server-adapter` package, whose `WebSocketConnector` API it keeps):
 * JSON text frames `{event, payload, callbackId?}`, replies `{callbackId, payload}`, a text
 * heartbeat echoed by the server, `$background` notices, close codes 4001 / 4002.
 */
/** The WebSocket API the client uses: the browser's, Node's global one, or the `ws` package's. */
export interface WebSocketLike {
    readonly readyState: number;
    onopen: ((event: any) => void) | null;
    onmessage: ((event: any) => void) | null;
    onerror: ((event: any) => void) | null;
    onclose: ((event: any) => void) | null;
    send(data: string): void;
    close(code?: number, reason?: string): void;
}
/** A WebSocket constructor: `WebSocket`, or `WebSocket` from the `ws` package. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/** How a connection closed. */
export interface CloseInfo {
    /** The server's close code; 4001 after `close()`, 4002 after a pong timeout, 1006 when the connection broke. */
    code: number;
    reason: string;
}
/** A reconnection attempt about to be made. */
export interface ReconnectInfo {
    /** The attempt's number in the current series, from 1. */
    repeat: number;
    /** The delay before the attempt, in ms. */
    timeout: number;
}
export interface CrosswireOptions {
    /** `ws://` or `wss://` URL, e.g. `ws://127.0.0.1:9000/`. */
    url: string;
    /** Added to the query string, URL-encoded (e.g. `{id: 7}`). */
    customParams?: Record<string, string | number | boolean>;
    /** Delay between a heartbeat echo and the next heartbeat, ms (10000). */
    pingInterval?: number;
    /** Wait for the heartbeat echo before closing with 4002, ms (2000). */
    pongTimeout?: number;
    /** The heartbeat text; must equal the server's (""). */
    pingMsg?: string;
    /** Reconnection attempts made at the fast interval (3). */
    fastReconnectThreshold?: number;
    /** Delay of a fast attempt and start of the backoff, ms (3000). */
    fastReconnectInterval?: number;
    /** Cap of the backoff delay, ms (120000). */
    reconnectMaxInterval?: number;
    /** Most reconnection attempts in a row; `null` for no limit (null). */
    repeatLimit?: number | null;
    /** Default wait for a reply, ms (5000). */
    callbackTimeout?: number;
    /** Default delay before a request's `onPending` notice, ms (100). */
    pendingTimeout?: number;
    /** Limit on opening a connection, ms; a connection not open by then counts as a failed attempt (10000). */
    connectTimeout?: number;
    /**
     * Whether to reconnect after the server closed the connection with a close frame, or after
     * a pong timeout. Broken connections (1006) and failed attempts are always retried.
     * Default: reconnect unless the code is 1000 or an application code (4000 and up, except 4002).
     */
    reconnectOnClose?: boolean | ((close: CloseInfo) => boolean);
    /** Send `$background` true / false when the page is hidden / shown (browsers only) (false). */
    background?: boolean;
    /** The WebSocket constructor (`globalThis.WebSocket`). */
    WebSocket?: WebSocketConstructor;
    /**
     * Subprotocols offered in the handshake (`Sec-WebSocket-Protocol`); the server must echo
     * one (crosswire: `WsConfig::subprotocols`) or the connection fails (none).
     */
    protocols?: string | string[];
    /** Connect in the constructor; otherwise call `connect()` (true). */
    autoConnect?: boolean;
}
/** The connector's own events and what their listeners get. Other names are server pushes. */
export interface ClientEvents {
    open: void;
    close: CloseInfo;
    error: unknown;
    /** Every text frame, before it is parsed. */
    message: string;
    ping: void;
    /** The heartbeat round trip, ms. */
    pong: number;
    'pong-timeout': void;
    reconnect: ReconnectInfo;
    /** The repeat limit reached; no more attempts. */
    'repeat-limit': number;
}
/** What listeners of `event` get: see {@link ClientEvents}; a push's payload otherwise. */
export type EventData<E extends string> = E extends keyof ClientEvents ? ClientEvents[E] : any;
export type ErrorCode = 'WS_NOT_OPEN' | 'CALLBACK_TIMEOUT' | 'CONNECTION_CLOSED';
/** Why a request failed: `errorCode` and `error` (the message) as in the JS package. */
export interface CrosswireError extends Error {
    errorCode: ErrorCode;
    error: string;
}
export interface RequestOptions {
    /** Wait for the reply, ms (the `callbackTimeout` option). */
    timeout?: number;
    /** Alias of `timeout`, as in the JS package. */
    callbackTimeout?: number;
    /** Called once when no reply came within `pendingTimeout` (e.g. to show a spinner). */
    onPending?: () => void;
    pendingTimeout?: number;
}
export type Callback<T = any> = (error: CrosswireError | null, payload: T | null) => void;
export type Listener<T = any> = (data: T) => void;
type Tag = string | number;
type Settings = Required<Omit<CrosswireOptions, 'repeatLimit' | 'WebSocket' | 'protocols'>> & {
    repeatLimit: number | null;
    WebSocket?: WebSocketConstructor;
    protocols?: string | string[];
};
/**
 * The delay before reconnection attempt `repeat` (from 1), as in the Rust connector: the fast
 * interval up to the fast threshold, then a ceiling doubling from the fast interval up to the
 * max interval, the delay drawn from its upper half.
 */
export declare function backoffDelay(repeat: number, o: Pick<Settings, 'fastReconnectThreshold' | 'fastReconnectInterval' | 'reconnectMaxInterval'>, random?: number): number;
export declare class CrosswireClient {
    readonly options: Settings;
    private ws;
    private opened;
    private stopped;
    private repeat;
    private lastClose;
    private nextId;
    private pingSent;
    private rtt?;
    private listeners;
    private waiting;
    private retryTimer?;
    private connectTimer?;
    private pingTimer?;
    private pongTimer?;
    private onVisibility?;
    constructor(options: CrosswireOptions);
    /** The last heartbeat round trip in ms; undefined before the first. */
    get latency(): number | undefined;
    /** Whether the connection is open. */
    get isOpen(): boolean;
    /** Opens the connection (done by the constructor unless `autoConnect: false`). */
    connect(): void;
    /** Schedules a reconnection, e.g. from a close listener; `reset` restarts the attempt count. Does nothing while open or connecting, or after `close()`. */
    reconnect(reset?: boolean): void;
    /** Whether reconnection attempts are under way. */
    reconnecting(): boolean;
    /** Closes the connection with 4001 and stops for good: no reconnection, no timers. */
    close(): void;
    /** The JS package's name of `close()`. */
    manualClose(): void;
    setPingInterval(ms: number, immediate?: boolean): void;
    getPingInterval(): number;
    /**
     * Sends an event. With a callback it is a request: `callback(null, reply)`, or
     * `callback(error, null)` on timeout, closed connection or when not open.
     * Returns whether the frame was sent.
     */
    emit(event: string, payload?: unknown, callback?: Callback, options?: RequestOptions): boolean;
    /** Sends a request and resolves with the reply; rejects with a {@link CrosswireError}. */
    request<T = any>(event: string, payload?: unknown, options?: RequestOptions): Promise<T>;
    /** The JS package's promise form: resolves `{success: true, data}` or `{success: false, error, errorCode}`. */
    emitWithPromise<T = any>(event: string, payload?: unknown, options?: RequestOptions): Promise<{
        success: true;
        data: T;
    } | {
        success: false;
        error: string;
        errorCode: ErrorCode;
    }>;
    /** Listens to a server push or one of the connector's events; `tag` groups listeners for `off`. */
    on<E extends string>(event: E, listener: Listener<EventData<E>>, tag?: Tag): this;
    /** Like `on`, for the next time only. */
    once<E extends string>(event: E, listener: Listener<EventData<E>>, tag?: Tag): this;
    /** Removes the listeners of `event`: all, one function, or those with a tag. */
    off(event: string, which?: Listener<any> | Tag): this;
    private add;
    private fire;
    private receive;
    private schedulePing;
    private stopHeartbeat;
    /**
     * Forgets the current socket (closing it with `code` when it is still up), its timers and
     * waiting requests; reports a close when it had opened. Returns whether it had opened.
     */
    private drop;
    /** After a close with a code: reconnects if `reconnectOnClose` says so. */
    private afterClose;
    /** Schedules the next attempt of the backoff schedule, or gives up at the repeat limit. */
    private retry;
}
/** The name of the class in `websocket-cross-server-adapter`, whose API this one keeps. */
export { CrosswireClient as WebSocketConnector };
export default CrosswireClient;
