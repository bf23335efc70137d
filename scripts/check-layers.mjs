#!/usr/bin/env node
// check-layers: the include and call graph of src/ and apps/ keeps its
// shape. Prints each problem and exits 1 when there is one.
//
//  1. Layers: an #include "..." only points down:
//       util < core < store < net < api < cli, src/main.c
//     and nothing under src/ includes a file under apps/.
//  2. No circle between the files of a folder: file A depends on B when
//     A includes B's header, or calls a function that B defines (a
//     non-static function; A.c and A.h count as one module). A circle
//     means neither can be read, or changed, without the other.
//
// Usage: node scripts/check-layers.mjs [ROOT]   (make check-layers)
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname, basename, extname } from 'node:path';

const root = process.argv[2] ?? new URL('..', import.meta.url).pathname;
const LAYERS = ['util', 'core', 'store', 'net', 'api', 'cli'];

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.[ch]$/.test(name)) out.push(p);
  }
  return out;
}

function layerOf(rel) {
  const parts = rel.split('/');
  if (parts[0] === 'apps') return { rank: LAYERS.length + 1, name: 'apps' };
  if (rel === 'src/main.c') return { rank: LAYERS.length, name: 'main' };
  const i = LAYERS.indexOf(parts[1]);
  return { rank: i, name: parts[1] };
}

// The text without comments and string literals, so that a name in either
// is not a call.
function code(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\/\/.*$/gm, ' ')
    .replace(/"(?:[^"\\\n]|\\.)*"/g, '""');
}

const files = [...walk(join(root, 'src')), ...walk(join(root, 'apps'))].map((p) => {
  const rel = relative(root, p);
  const text = readFileSync(p, 'utf8');
  // Files that share a private header (realtime_int.h, sqlite_int.h) are
  // one module split for reading: circles among them are their own affair.
  const priv = text.match(/^#include "(\w+)_int\.h"/m);
  const module = priv ? join(dirname(rel), priv[1]) : rel.replace(/(_int)?\.[ch]$/, '');
  return { rel, text, body: code(text), module };
});
const problems = [];

// 1. Layers.
for (const f of files) {
  for (const m of f.text.matchAll(/^#include "([^"]+)"/gm)) {
    const target = relative(root, join(root, dirname(f.rel), m[1]));
    if (target.startsWith('build/')) continue; // generated
    const from = layerOf(f.rel), to = layerOf(target);
    if (f.rel.startsWith('src/') && target.startsWith('apps/'))
      problems.push(`${f.rel} includes ${target}: nothing in src/ names an app`);
    else if (to.rank > from.rank)
      problems.push(`${f.rel} (${from.name}) includes ${target} (${to.name}): an arrow up`);
  }
}

// 2. Circles within a folder.
const defines = new Map(); // function name -> module
for (const f of files.filter((x) => x.rel.endsWith('.c'))) {
  for (const m of f.body.matchAll(/^(?!static\b)[A-Za-z_][\w \t*]*?\b(\w+)\s*\([^;{]*\)\s*\{/gm))
    defines.set(m[1], f.module);
}
const edges = new Map(); // module -> Set(module)
const why = new Map();
function edge(a, b, reason) {
  if (a === b || dirname(a) !== dirname(b)) return;
  if (!edges.has(a)) edges.set(a, new Set());
  if (!edges.get(a).has(b)) why.set(`${a} ${b}`, reason);
  edges.get(a).add(b);
}
for (const f of files) {
  for (const m of f.text.matchAll(/^#include "([^"]+)"/gm)) {
    const path = relative(root, join(root, dirname(f.rel), m[1]));
    const target = files.find((x) => x.rel === path)?.module ?? path.replace(/\.[ch]$/, '');
    edge(f.module, target, `includes ${basename(m[1])}`);
  }
  if (!f.rel.endsWith('.c')) continue;
  for (const m of f.body.matchAll(/\b([A-Za-z_]\w*)\s*\(/g)) {
    const owner = defines.get(m[1]);
    if (owner) edge(f.module, owner, `calls ${m[1]}`);
  }
}
// Tarjan's strongly connected components.
let index = 0;
const idx = new Map(), low = new Map(), stack = [], on = new Set();
function strong(v) {
  idx.set(v, index); low.set(v, index); index++;
  stack.push(v); on.add(v);
  for (const w of edges.get(v) ?? []) {
    if (!idx.has(w)) { strong(w); low.set(v, Math.min(low.get(v), low.get(w))); }
    else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const comp = [];
    let w;
    do { w = stack.pop(); on.delete(w); comp.push(w); } while (w !== v);
    if (comp.length > 1) {
      const inside = new Set(comp);
      const lines = [];
      for (const a of comp) for (const b of edges.get(a) ?? []) if (inside.has(b)) lines.push(`    ${a} -> ${b} (${why.get(`${a} ${b}`)})`);
      problems.push(`a circle of ${comp.length} modules:\n${lines.sort().join('\n')}`);
    }
  }
}
for (const v of edges.keys()) if (!idx.has(v)) strong(v);

if (problems.length) {
  for (const p of problems) console.log(`check-layers: ${p}`);
  process.exit(1);
}
console.log(`check-layers: ${files.length} files, every arrow down, no circle`);
