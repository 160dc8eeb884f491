// Runs the tests with Node's test runner. Node 20 has a global WebSocket behind a flag;
// Node 22 and later have it on by default.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

process.chdir(fileURLToPath(new URL('..', import.meta.url)));
const flags = [];
if (typeof WebSocket === 'undefined' && process.allowedNodeEnvironmentFlags.has('--experimental-websocket')) {
  flags.push('--experimental-websocket');
}
const files = readdirSync('test').filter((f) => f.endsWith('.test.mjs')).map((f) => `test/${f}`);
const run = spawnSync(process.execPath, [...flags, '--test', '--test-reporter=spec', '--test-concurrency=4', ...files], { stdio: 'inherit' });
process.exit(run.status ?? 1);
