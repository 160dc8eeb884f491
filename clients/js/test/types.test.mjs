import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

test('the declarations type-check a use of the API, and refuse misuse (test/types.ts)', () => {
  const dir = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'test/tsconfig.json'], { cwd: dir, stdio: 'pipe' });
});
