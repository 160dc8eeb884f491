// Compiled by `tsc --noEmit` against the published declarations (dist/index.d.ts); every
// `@ts-expect-error` line must be an error, or the compilation fails.
import CrosswireDefault, {
  CrosswireClient,
  WebSocketConnector,
  type CloseInfo,
  type CrosswireError,
  type ReconnectInfo,
} from '../dist/index.js';

const client = new CrosswireClient({
  url: 'ws://127.0.0.1:9000/',
  customParams: { id: 7, name: 'Sam' },
  pingInterval: 5000,
  repeatLimit: null,
  reconnectOnClose: ({ code }) => code !== 4012,
  background: true,
});
const legacy: CrosswireClient = new WebSocketConnector({ url: 'wss://example.com/chat', autoConnect: false });
const viaDefault: CrosswireClient = new CrosswireDefault({ url: 'ws://h/' });

client.on('open', () => {});
client.on('close', (info: CloseInfo) => info.code.toFixed());
client.on('pong', (ms: number) => ms.toFixed(1));
client.on('reconnect', ({ repeat, timeout }: ReconnectInfo) => repeat + timeout);
client.on('say', (data: { msg: string }) => data.msg.toUpperCase(), 'chat');
client.once('repeat-limit', (limit: number) => limit);
client.off('say', 'chat').off('say');
const latency: number | undefined = client.latency;
const open: boolean = client.isOpen;

const sent: boolean = client.emit('say', { msg: 'hi' });
client.emit('say', { msg: 'hi' }, (error: CrosswireError | null, reply) => error?.errorCode ?? reply, {
  timeout: 1000,
  onPending: () => {},
});
async function requests() {
  const reply = await client.request<{ msg: string; echo: unknown }>('say', { msg: 'hi' }, { timeout: 500 });
  reply.msg.toUpperCase();
  const legacyReply = await client.emitWithPromise('say', {});
  if (legacyReply.success) legacyReply.data;
  else legacyReply.errorCode === 'CALLBACK_TIMEOUT';
}
client.setPingInterval(2000, true);
client.close();

// @ts-expect-error: the url is required
new CrosswireClient({ pingInterval: 1000 });
// @ts-expect-error: a pong listener gets the latency as a number
client.on('pong', (ms: string) => ms);
// @ts-expect-error: request options take numbers
client.request('say', {}, { timeout: '1s' });
// @ts-expect-error: latency is not a method
client.latency();

export { legacy, viaDefault, latency, open, sent, requests };
