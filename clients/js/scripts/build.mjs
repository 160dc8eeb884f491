// Builds dist/ from the source (src/index.js, plain ES module, and its declarations
// src/index.d.ts): type-checks the source, bundles it with its minified copy, copies the
// declarations; prints the sizes. The source itself runs in browsers as it is.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

process.chdir(fileURLToPath(new URL('..', import.meta.url)));
try {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
} catch {
  process.exit(1); // tsc printed why
}
const common = { entryPoints: ['src/index.js'], bundle: true, format: 'esm', target: 'es2020', logLevel: 'warning' };
await build({ ...common, outfile: 'dist/crosswire-client.js' });
await build({ ...common, outfile: 'dist/crosswire-client.min.js', minify: true });
mkdirSync('dist', { recursive: true });
copyFileSync('src/index.d.ts', 'dist/index.d.ts');

for (const file of ['dist/crosswire-client.js', 'dist/crosswire-client.min.js']) {
  const bytes = readFileSync(file);
  console.log(`${file}: ${bytes.length} bytes, ${gzipSync(bytes, { level: 9 }).length} gzipped`);
}
