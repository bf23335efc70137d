// scripts/check-layers.mjs: this tree passes, and a tree with an arrow up
// or a circle does not (the check can fail).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const script = new URL('../../scripts/check-layers.mjs', import.meta.url).pathname;

function tree(files) {
  const dir = mkdtempSync(join(tmpdir(), 'livedb-layers-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  mkdirSync(join(dir, 'apps'), { recursive: true });
  return dir;
}

function check(dir) {
  const r = spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
  rmSync(dir, { recursive: true, force: true });
  return r;
}

test('the project tree keeps its layers, with no circle', () => {
  const out = execFileSync(process.execPath, [script], { encoding: 'utf8' });
  assert.match(out, /every arrow down, no circle/);
});

test('an include up a layer is refused, naming the edge', () => {
  const r = check(tree({
    'src/core/a.c': '#include "../api/b.h"\n',
    'src/api/b.h': '\n',
  }));
  assert.equal(r.status, 1);
  assert.match(r.stdout, /src\/core\/a\.c \(core\) includes src\/api\/b\.h \(api\): an arrow up/);
});

test('a circle of calls between two files is refused, naming both', () => {
  const r = check(tree({
    'src/api/a.c': 'void a_fn(void) { b_fn(); }\n',
    'src/api/b.c': 'void b_fn(void) { a_fn(); }\n',
  }));
  assert.equal(r.status, 1);
  assert.match(r.stdout, /a circle of 2 modules/);
  assert.match(r.stdout, /src\/api\/a -> src\/api\/b \(calls b_fn\)/);
});

test('files sharing a private header are one module', () => {
  const r = check(tree({
    'src/api/x_int.h': 'void x_one(void);\nvoid x_two(void);\n',
    'src/api/x.c': '#include "x_int.h"\nvoid x_one(void) { x_two(); }\n',
    'src/api/x_more.c': '#include "x_int.h"\nvoid x_two(void) { x_one(); }\n',
  }));
  assert.equal(r.status, 0, r.stdout);
});
