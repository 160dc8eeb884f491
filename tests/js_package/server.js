// A cluster node of the real Node.js package `websocket-cross-server-adapter` (installed in
// target/js-package by scripts/test.sh), serving crosswire's demo event set (src/demo.rs) with
// the package's own methods, for the tests that run Node.js nodes and crosswire nodes on one
// Redis.
//
//   node tests/js_package/server.js --name N --port P --redis URL [--json] [--nodes N]
//
// --json turns Redis data compression off (JSON on the wire); the default is msgpack
// (notepack.io), the package's default. --nodes is how many replies `askAll` waits for
// (default 1) unless the client's payload says `expect`.
//
// Prints exactly one line to stdout, `listening on ws://127.0.0.1:PORT/`, once the WebSocket
// server accepts connections, every Redis connection is ready and every subscription of the
// node is acknowledged by Redis. Everything else goes to stderr.
'use strict';

const path = require('path');

const { WebSocketCrossServerAdapter } = require(path.join(__dirname, '../../target/js-package'));

// The room namespace of the demo.
const NAMESPACE = 'chat';
// A custom channel: what arrives on PING_CHANNEL is published back on PONG_CHANNEL as
// `{from: <this node>, got: <the message>}`.
const PING_CHANNEL = 'app:ping';
const PONG_CHANNEL = 'app:pong';

// The cross-server event of `askAll`.
const WHOAMI = 'demo:whoami';
// How long `askAll` waits for the nodes' answers, in ms.
const ASK_TIMEOUT = 2000;

function log(...args) {
    console.error(`[${options.name}]`, ...args);
}

function parseArgs(argv) {
    const out = { name: null, port: null, redis: null, json: false, nodes: 1 };
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
            return argv[++i];
        };
        switch (arg) {
            case '--name': out.name = value(); break;
            case '--port': out.port = Number.parseInt(value(), 10); break;
            case '--redis': out.redis = value(); break;
            case '--json': out.json = true; break;
            case '--nodes': out.nodes = Number.parseInt(value(), 10); break;
            default: throw new Error(`unknown argument ${arg}`);
        }
    }
    if (!out.name || !Number.isInteger(out.port) || out.port <= 0 || !out.redis) {
        throw new Error('usage: server.js --name N --port P --redis URL [--json] [--nodes N]');
    }
    if (!Number.isInteger(out.nodes) || out.nodes <= 0) throw new Error('--nodes must be positive');
    return out;
}

// An ioredis option object from a `redis://[user:password@]host:port[/db]` URL.
function redisOptions(url, name) {
    const u = new URL(url);
    const config = {
        host: u.hostname || '127.0.0.1',
        port: u.port ? Number.parseInt(u.port, 10) : 6379,
        connectionName: `js-package:${name}`,
    };
    if (u.username) config.username = decodeURIComponent(u.username);
    if (u.password) config.password = decodeURIComponent(u.password);
    const db = u.pathname.replace(/^\/+/, '');
    if (db) config.db = Number.parseInt(db, 10);
    return config;
}

let options;
try {
    options = parseArgs(process.argv.slice(2));
} catch (error) {
    console.error(error.message);
    process.exit(2);
}

// Resolved on every Redis health change (the package's own callback), to re-check readiness.
let healthChanged = () => {};

const server = new WebSocketCrossServerAdapter({
    serverName: options.name,
    wsOptions: { host: '127.0.0.1', port: options.port },
    redisConfig: [redisOptions(options.redis, options.name)],
    enableRedisDataCompression: !options.json,
    // The demo's namespace is subscribed at start-up (covered by the readiness check below),
    // not on the first joinRoom, whose SUBSCRIBE the package does not wait for. autoUnsubscribe
    // is off because the package unsubscribes even preset namespaces when their last local
    // member leaves (it never stores the preset list it checks).
    presetRoomNamespaces: [NAMESPACE],
    autoUnsubscribe: false,
    // Custom channel `app:ping`: every message is answered on `app:pong` (see below).
    customChannels: [PING_CHANNEL],
    onRedisHealthChange: (healthy, info) => {
        log(`redis ${info.type} ${healthy ? 'healthy' : 'unhealthy'} (${info.event})`);
        healthChanged();
    },
    onRedisSubscriptionError: (info) => log('redis subscription error', info),
});

// A socket or room id from a JSON string or number (numbers are used as strings).
function idValue(value) {
    if (typeof value === 'string' && value !== '') return value;
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    return null;
}

// Identity: the query parameter `id` binds the socket id; without one, close 4011.
server.onWebSocketEvent('connection', (socket, req) => {
    const { params } = server.parseWsRequestParams(req);
    const id = Array.isArray(params.id) ? params.id[0] : params.id;
    if (typeof id === 'string' && id !== '') {
        socket.playerId = id;
        server.setUserSocket(id, socket);
    } else {
        socket.close(4011, 'Auth failure');
    }
});

server.onWebSocketEvent('close', (socket) => {
    // The package leaves the clean-up to the application. Only the socket still bound to the id
    // unbinds it: a newer connection with the same id keeps its binding.
    if (socket.playerId && server.getSocketInstance(socket.playerId) === socket) {
        server.removeUserSocket(socket.playerId);
    }
});

server.onWebSocketEvent('joinRoom', (socket, data, callback) => {
    const room = idValue(data?.roomId);
    let msg;
    if (socket.playerId && room) {
        try {
            server.joinRoom(NAMESPACE, room, socket.playerId);
            msg = `Successfully joined the roomId:${room}`;
        } catch (error) {
            msg = `Failed to join the room: ${error.message}`;
        }
    } else {
        msg = 'Failed to join the room';
    }
    callback?.({ msg });
});

server.onWebSocketEvent('leaveRoom', (socket, data, callback) => {
    const room = idValue(data?.roomId);
    let msg;
    if (socket.playerId && room) {
        try {
            server.leaveRoom(NAMESPACE, room, socket.playerId);
            msg = `Left the roomId:${room}`;
        } catch (error) {
            msg = `Failed to leave the room: ${error.message}`;
        }
    } else {
        msg = 'Failed to leave the room';
    }
    callback?.({ msg });
});

// Runs a `command` and returns the text of its reply.
function command(data) {
    const action = data?.action;
    if (typeof action !== 'string') return 'Failed to send message';
    const push = { action, msg: data.msg };
    try {
        switch (action) {
            case 'broadcast':
                server.broadcast('say', push);
                break;
            case 'toPlayer': {
                const id = idValue(data.toPlayerId);
                if (!id) return 'Missing toPlayerId';
                server.toSocketId(id, 'say', push);
                break;
            }
            case 'toPlayers': {
                if (!Array.isArray(data.toPlayerIds)) return 'Missing toPlayerIds';
                const ids = data.toPlayerIds.map(idValue).filter((id) => id !== null);
                server.toSocketIds(ids, 'say', push);
                break;
            }
            case 'toRoom': {
                const room = idValue(data.roomId);
                if (!room) return 'Missing roomId';
                server.broadcastToRoom(NAMESPACE, room, 'say', push);
                break;
            }
            case 'toRoomExcept': {
                const room = idValue(data.roomId);
                if (!room || !Array.isArray(data.exceptIds)) return 'Missing roomId or exceptIds';
                const excludeSocketIds = data.exceptIds.map(idValue).filter((id) => id !== null);
                server.broadcastToRoom(NAMESPACE, room, 'say', push, { excludeSocketIds });
                break;
            }
            default:
                return 'Unknown action type';
        }
    } catch (error) {
        return `Failed to send message: ${error.message}`;
    }
    return `Message sent successfully [action:${action}] `;
}

server.onWebSocketEvent('command', (socket, data, callback) => {
    callback?.({ msg: command(data) });
});

server.onWebSocketEvent('say', (socket, data, callback) => {
    callback?.({ msg: 'I am a callback for your say event', echo: data });
});

// askAll: a cross-server request to every node (this one included: the package runs its own
// listener locally and counts its reply), waiting for `expect` (or --nodes) replies.
server.onWebSocketEvent('askAll', async (socket, data, callback) => {
    const expect = Number.isInteger(data?.expect) && data.expect > 0 ? data.expect : options.nodes;
    // `nodes`: ask only these (the package then waits for one reply from each).
    const targetServer = Array.isArray(data?.nodes) ? data.nodes : [];
    const result = await server.emitCrossServerWithPromise(WHOAMI, {}, {
        targetServer,
        expectedResponses: expect,
        timeout: ASK_TIMEOUT,
    });
    if (!result.success) log(`askAll: ${result.message} (${result.unrespondedCount ?? '?'} missing)`);
    const names = Object.values(result.responses || {})
        .map((reply) => reply?.payload?.name)
        .filter((name) => typeof name === 'string')
        .sort();
    callback?.({ names });
});

server.setCustomChannelHandler((channel, message) => {
    if (channel === PING_CHANNEL) {
        server.publishRedisMessage(PONG_CHANNEL, { from: server.getServerName(), got: message });
    }
});

server.onCrossServerEvent(WHOAMI, (data, reply) => {
    reply?.({ name: server.getServerName() });
});

server.onWebSocketEvent('server-error', (error) => {
    log('WebSocket server error:', error.message);
    process.exit(1);
});

// Resolves once the WebSocket server listens.
function listening() {
    const wss = server.getWss();
    return new Promise((resolve) => {
        if (wss.address()) resolve();
        else wss.once('listening', resolve);
    });
}

// Resolves once every publisher and subscriber connection is healthy (ready), re-checked on
// each health change the package reports.
function redisHealthy() {
    const total = server.getRedisInstancesCount();
    const healthy = () =>
        server.getHealthyRedisInstancesCount('publisher') === total &&
        server.getHealthyRedisInstancesCount('subscriber') === total;
    return new Promise((resolve) => {
        if (healthy()) return resolve();
        healthChanged = () => {
            if (healthy()) {
                healthChanged = () => {};
                resolve();
            }
        };
    });
}

// Resolves once Redis has acknowledged every SUBSCRIBE the package sent. The package does not
// report that, so one more SUBSCRIBE goes down each subscriber connection after them: Redis
// answers the commands of a connection in order, so its acknowledgement comes after theirs.
async function subscriptionsAcknowledged() {
    const probe = `crosswire-test:ready:${options.name}`;
    for (const { subscriber } of server.redisInstances) {
        await subscriber.subscribe(probe);
        await subscriber.unsubscribe(probe);
    }
}

Promise.all([listening(), redisHealthy(), subscriptionsAcknowledged()])
    .then(() => {
        const { port } = server.getWss().address();
        process.stdout.write(`listening on ws://127.0.0.1:${port}/\n`);
        log(`ready (${options.json ? 'json' : 'msgpack'}, ${options.nodes} node(s))`);
    })
    .catch((error) => {
        log('start-up failed:', error);
        process.exit(1);
    });

for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => process.exit(0));
}
