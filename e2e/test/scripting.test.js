// Lua scripting across a 3-node redraft cluster with real ioredis clients
// (both majors), as the Node-RED context store and ioredis apps use it
// (COMPAT.md section 2, DESIGN.md "Lua"):
//   - EVAL of the context store's nested set / nested delete scripts (GET,
//     cjson.decode or {}, walk the dotted path with string.gmatch, set or
//     delete, cjson.encode, SET), from clients on different nodes;
//   - defineCommand: ioredis sends the body with EVAL the first time on a
//     connection, then EVALSHA; after a SCRIPT FLUSH (on another node) its
//     EVALSHA gets NOSCRIPT and it falls back to EVAL by itself. Seen on the
//     wire through a recording proxy, and the sha works from a second client
//     on another node;
//   - script('LOAD') on one node, evalsha / EVALSHA_RO on the others at once.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Redis as Redis5 } from 'ioredis';
import { Redis as Redis6 } from 'ioredis6';
import { startCluster } from '../lib/cluster.js';
import { startRecordingProxy } from '../lib/proxy.js';

const MAJORS = [
  ['ioredis5', Redis5],
  ['ioredis6', Redis6],
];

// The context store's scripts (the same bodies as the differential corpus,
// testdata/differential/97_nodered_context.txt), kept in lua/testdata.
function readScript(name) {
  return readFileSync(new URL(`../../lua/testdata/${name}`, import.meta.url), 'utf8').replace(/\n$/, '');
}

const NESTED_SET = readScript('nodered_context_set.lua');

const NESTED_DELETE = readScript('nodered_context_delete.lua');

const sha1 = (s) => createHash('sha1').update(s).digest('hex');

let cluster;
const clients = new Set();
const proxies = new Set();

before(async () => {
  cluster = await startCluster({ nodes: 3 });
});

after(async () => {
  for (const c of clients) c.disconnect();
  for (const p of proxies) await p.close();
  await cluster?.close();
});

function connectTo(Redis, port) {
  const c = new Redis({ host: '127.0.0.1', port });
  c.on('error', () => {});
  clients.add(c);
  return c;
}

const connect = (Redis, i) => connectTo(Redis, cluster.addr(i).port);

async function ready(c) {
  if (c.status !== 'ready') await once(c, 'ready');
}

/** The error a promise rejects with (fails if it resolves). */
async function rejection(p) {
  try {
    const v = await p;
    assert.fail(`expected an error, got ${JSON.stringify(v)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}

for (const [major, Redis] of MAJORS) {
  describe(major, () => {
    const p = `e2e:${major}:`;

    test('context store: nested set / delete with EVAL from clients on every node', () =>
      cluster.withLogs(async () => {
        const cs = [0, 1, 2].map((i) => connect(Redis, i));
        await Promise.all(cs.map(ready));
        // Loaded at start, as the context store does (the sha is not used).
        assert.equal(await cs[0].script('LOAD', NESTED_SET), sha1(NESTED_SET));
        assert.equal(await cs[1].script('LOAD', NESTED_DELETE), sha1(NESTED_DELETE));
        const key = `${p}context:global:global`;
        const set = (c, path, value) => c.eval(NESTED_SET, 1, key, path, JSON.stringify(value));
        const del = (c, path) => c.eval(NESTED_DELETE, 1, key, path);

        assert.equal(await set(cs[0], 'a.b.c', 1), 1);
        // Exactly Redis's bytes for a one-key-per-level object.
        for (const c of cs) assert.equal(await c.get(key), '{"a":{"b":{"c":1}}}');

        const want = { a: { b: { c: 1 } } };
        const steps = [
          [1, 'a.b.d', 'str'],
          [2, 'a.list', [1, 2, 3]],
          [0, 'url', 'http://example.com/a/b'],
          [1, 'ratio', 0.75],
          [2, 'name', 'J\u00e9r\u00f4me \u2603'],
          [0, 'a.b.c.deeper', true], // a number replaced by a table
          [1, 'nothing', null],
          [2, 'obj', { k: 'v', n: [{}] }],
        ];
        for (const [i, path, value] of steps) {
          assert.equal(await set(cs[i], path, value), 1, `set ${path} via node ${i}`);
          const parts = path.split('.');
          let cur = want;
          for (const part of parts.slice(0, -1)) {
            if (typeof cur[part] !== 'object' || cur[part] === null) cur[part] = {};
            cur = cur[part];
          }
          cur[parts.at(-1)] = value;
          // Read back through every node: the write is visible at once.
          for (const [j, c] of cs.entries()) {
            const raw = await c.get(key);
            assert.deepEqual(JSON.parse(raw), want, `after set ${path} via node ${i}, GET via node ${j}: ${raw}`);
          }
        }
        const raw = await cs[2].get(key);
        assert.match(raw, /"url":"http:\\\/\\\/example\.com\\\/a\\\/b"/, `cjson escapes / as \\/: ${raw}`);
        assert.match(raw, /"obj":\{/, raw);
        assert.match(raw, /"n":\[\{\}\]/, `an empty table encodes as {}: ${raw}`);

        assert.equal(await del(cs[0], 'a.b.d'), 1);
        delete want.a.b.d;
        assert.equal(await del(cs[1], 'obj.k'), 1);
        delete want.obj.k;
        assert.equal(await del(cs[2], 'nosuch.path'), 0); // through a missing table: untouched
        assert.equal(await del(cs[0], 'url'), 1);
        delete want.url;
        for (const c of cs) assert.deepEqual(JSON.parse(await c.get(key)), want);

        // Other scopes; a delete on a missing key writes {}.
        const flowKey = `${p}context:flow1:state`;
        assert.equal(await cs[1].set(flowKey, '{"count":1}'), 'OK');
        assert.equal(await cs[2].eval(NESTED_SET, 1, flowKey, 'count', '2'), 1);
        assert.equal(await cs[0].get(flowKey), '{"count":2}');
        const nodeKey = `${p}context:node:n1:flow1`;
        assert.equal(await cs[0].eval(NESTED_DELETE, 1, nodeKey, 'x'), 1);
        assert.equal(await cs[1].get(nodeKey), '{}');
        // Invalid JSON in the value: the script's error reaches the client.
        const e = await rejection(cs[1].eval(NESTED_SET, 1, flowKey, 'bad', '{nope'));
        assert.match(e.message, /^ERR user_script:\d+: Expected object key string but found invalid token at character 2 script: [0-9a-f]{40}, on @user_script:\d+\.$/);
        assert.equal(await cs[2].get(flowKey), '{"count":2}');
        const keys = (await cs[2].keys(`${p}context:*`)).sort();
        assert.deepEqual(keys, [flowKey, key, nodeKey].sort());
      }));

    test('defineCommand: EVAL first, then EVALSHA; NOSCRIPT after a flush falls back to EVAL', () =>
      cluster.withLogs(async () => {
        const lua = `local n = redis.call('INCRBY', KEYS[1], ARGV[1])
return {n, KEYS[1], ARGV[2]}`;
        const sha = sha1(lua);
        const key = `${p}defined:counter`;
        const { host, port } = cluster.addr(1);
        const proxy = await startRecordingProxy(host, port);
        proxies.add(proxy);
        const c = connectTo(Redis, proxy.port);
        c.defineCommand('ctxIncr', { numberOfKeys: 1, lua });
        const other = connect(Redis, 2);
        const admin = connect(Redis, 0);
        await Promise.all([c, other, admin].map(ready));

        assert.deepEqual(await c.ctxIncr(key, 5, 'first'), [5, key, 'first']);
        assert.deepEqual(await c.ctxIncr(key, 2, 'second'), [7, key, 'second']);
        assert.deepEqual(await c.ctxIncr(key, 1, 'third'), [8, key, 'third']);
        // A second client on another node: the sha is in every node's cache.
        assert.deepEqual(await other.evalsha(sha, 1, key, 10, 'other'), [18, key, 'other']);

        // A flush on node 0: the proxied client's next EVALSHA gets NOSCRIPT
        // from node 1, and ioredis resends the body with EVAL.
        assert.equal(await admin.script('FLUSH'), 'OK');
        assert.deepEqual(await other.script('EXISTS', sha), [0]);
        assert.match((await rejection(other.evalsha(sha, 1, key, 1, 'x'))).message, /^NOSCRIPT /);
        assert.deepEqual(await c.ctxIncr(key, 100, 'after flush'), [118, key, 'after flush']);
        assert.deepEqual(await c.ctxIncr(key, 1, 'again'), [119, key, 'again']);
        assert.deepEqual(await other.evalsha(sha, 1, key, 1, 'other again'), [120, key, 'other again']);
        for (const i of [0, 1, 2]) {
          assert.equal(await connect(Redis, i).get(key), '120', `GET via node ${i}`);
        }

        // What ioredis sent, and what redraft answered.
        const conn = proxy.conns.findIndex((_, n) => proxy.transcript(n).some((e) => /^eval/i.test(e.args[0])));
        assert.ok(conn >= 0, 'no EVAL/EVALSHA went through the proxy');
        const scripts = proxy
          .transcript(conn)
          .filter((e) => /^eval/i.test(e.args[0]))
          .map((e) => ({
            cmd: e.args[0].toLowerCase(),
            first: e.args[1] === lua ? '<body>' : e.args[1] === sha ? '<sha>' : e.args[1],
            reply: e.type === '-' ? e.raw.trim() : 'ok',
          }));
        assert.deepEqual(scripts, [
          { cmd: 'eval', first: '<body>', reply: 'ok' },
          { cmd: 'evalsha', first: '<sha>', reply: 'ok' },
          { cmd: 'evalsha', first: '<sha>', reply: 'ok' },
          { cmd: 'evalsha', first: '<sha>', reply: '-NOSCRIPT No matching script. Please use EVAL.' },
          { cmd: 'eval', first: '<body>', reply: 'ok' },
          { cmd: 'evalsha', first: '<sha>', reply: 'ok' },
        ]);
      }));

    test("script('LOAD') on one node, evalsha on the others at once; SCRIPT FLUSH everywhere", () =>
      cluster.withLogs(async () => {
        const cs = [0, 1, 2].map((i) => connect(Redis, i));
        await Promise.all(cs.map(ready));
        const shas = [];
        for (const loader of [0, 1, 2]) {
          const body = `return {'${major} loaded on node ${loader}', KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}`;
          const sha = await cs[loader].script('LOAD', body);
          assert.equal(sha, sha1(body));
          shas.push(sha);
          const key = `${p}loaded:${loader}`;
          let n = 0;
          for (const j of [0, 1, 2]) {
            if (j === loader) continue;
            // No wait, no retry: the next command, on another node.
            n++;
            assert.deepEqual(await cs[j].evalsha(sha, 1, key, 'arg'), [`${major} loaded on node ${loader}`, key, 'arg', n], `LOAD on node ${loader}, EVALSHA on node ${j}`);
          }
          // Read-only variant on the read path: sees the cache too, refuses writes.
          const roBody = `return {'ro', redis.call('GET', KEYS[1])}`;
          const roSha = await cs[loader].script('LOAD', roBody);
          shas.push(roSha);
          for (const j of [0, 1, 2]) {
            assert.deepEqual(await cs[j].call('EVALSHA_RO', roSha, 1, key), ['ro', String(n)], `EVALSHA_RO on node ${j}`);
          }
          const e = await rejection(cs[(loader + 1) % 3].call('EVALSHA_RO', sha, 1, key, 'arg'));
          assert.match(e.message, /^ERR Write commands are not allowed from read-only scripts\. script: [0-9a-f]{40}, on @user_script:1\.$/);
        }
        for (const c of cs) assert.deepEqual(await c.script('EXISTS', ...shas), shas.map(() => 1));

        assert.equal(await cs[2].script('FLUSH'), 'OK');
        for (const [j, c] of cs.entries()) {
          assert.deepEqual(await c.script('EXISTS', ...shas), shas.map(() => 0), `node ${j}`);
          for (const sha of shas) {
            assert.match((await rejection(c.evalsha(sha, 1, `${p}x`, 'a'))).message, /^NOSCRIPT No matching script\. Please use EVAL\.$/, `node ${j}`);
          }
        }
      }));
  });
}
