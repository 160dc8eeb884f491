import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';

test('the minified bundle stays under 5 KB gzipped', () => {
  const min = readFileSync(new URL('../dist/crosswire-client.min.js', import.meta.url));
  const gzipped = gzipSync(min, { level: 9 }).length;
  assert.ok(gzipped <= 5 * 1024, `${gzipped} bytes gzipped`);
});
