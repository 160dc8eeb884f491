// Closed-loop requests, for bench/callgrind.sh: CLIENTS connections to ws://127.0.0.1:PORT
// (`?id=u<n>`, as the demo binds them) each send REQUESTS `say` requests one after another,
// the next when the reply to the last came back, and check every reply's callbackId and echo.
// Prints the number of replies. Usage: node requests.mjs PORT CLIENTS REQUESTS
import WebSocket from 'ws';

const [port, clients, requests] = process.argv.slice(2).map(Number);
if (!port || !clients || !requests) {
  console.error('usage: node requests.mjs PORT CLIENTS REQUESTS');
  process.exit(2);
}

function client(n) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/?id=u${n}`);
    let seq = 0;
    const send = () =>
      ws.send(JSON.stringify({ event: 'say', payload: { n: seq }, callbackId: `${n}_${seq}` }));
    ws.on('open', send);
    ws.on('error', reject);
    ws.on('close', (code) => seq < requests && reject(new Error(`client ${n} closed: ${code}`)));
    ws.on('message', (data) => {
      const reply = JSON.parse(data.toString());
      if (reply.callbackId !== `${n}_${seq}` || reply.payload?.echo?.n !== seq) {
        reject(new Error(`client ${n}: unexpected frame ${data}`));
        return;
      }
      seq += 1;
      if (seq < requests) {
        send();
      } else {
        ws.close();
        resolve(seq);
      }
    });
  });
}

const replies = await Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
console.log(`replies ${replies.reduce((a, b) => a + b, 0)}`);
