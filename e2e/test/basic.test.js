// (a) ioredis with its defaults against one redraft node, for both majors:
// the connection handshake (CLIENT SETINFO, INFO ready check, HELLO 3
// fallback on ioredis 6), the `db` and `connectionName` options, and the
// everyday commands.
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

const PASSWORD = 'e2e-s3cret';

let cluster;
let secured; // a second node with requirepass
const clients = new Set();
const proxies = new Set();

before(async () => {
  [cluster, secured] = await Promise.all([startCluster({ nodes: 1 }), startCluster({ nodes: 1, password: PASSWORD })]);
});

after(async () => {
  for (const c of clients) c.disconnect();
  for (const p of proxies) await p.close();
  await cluster?.close();
  await secured?.close();
});

function connect(Redis, port, opts = {}) {
  const c = new Redis({ host: '127.0.0.1', port, ...opts });
  c.on('error', () => {}); // connection errors surface through commands
  clients.add(c);
  return c;
}

async function ready(c) {
  if (c.status !== 'ready') await once(c, 'ready');
}

async function proxied(node = cluster) {
  const { host, port } = node.addr(0);
  const p = await startRecordingProxy(host, port);
  proxies.add(p);
  return p;
}

const name = (args) => args.map((a) => a.toLowerCase());
const isCmd = (e, ...words) => words.every((w, i) => (e.args[i] ?? '').toLowerCase() === w.toLowerCase());

for (const [major, Redis] of MAJORS) {
  describe(major, () => {
    test('handshake: CLIENT SETINFO answered +OK, INFO ready check passes', async () => {
      const proxy = await proxied();
      const c = connect(Redis, proxy.port);
      await ready(c);
      assert.equal(await c.ping(), 'PONG');
      const tr = proxy.transcript(0);
      const setinfo = tr.filter((e) => isCmd(e, 'client', 'setinfo'));
      assert.ok(setinfo.length >= 2, `expected CLIENT SETINFO LIB-VER and LIB-NAME, saw ${JSON.stringify(tr.map((e) => e.args))}`);
      for (const e of setinfo) {
        assert.equal(e.raw, '+OK\r\n', `${e.args.join(' ')} must answer +OK (COMPAT.md section 1)`);
      }
      const info = tr.find((e) => isCmd(e, 'info'));
      assert.ok(info, `no INFO ready check in ${JSON.stringify(tr.map((e) => name(e.args)))}`);
      assert.equal(typeof info.reply, 'string', `INFO replied ${info.raw}`);
      assert.match(info.reply, /(^|\r\n)redis_version:[^\r\n]+/);
      assert.match(info.reply, /(^|\r\n)loading:0(\r\n|$)/);
      assert.match(info.reply, /(^|\r\n)role:master(\r\n|$)/);
      for (const section of ['Server', 'Clients', 'Memory', 'Replication', 'Keyspace']) {
        assert.match(info.reply, new RegExp(`(^|\\r\\n)# ${section}\\r\\n`), `INFO lacks a # ${section} section`);
      }
      // Parsed the way ioredis's ready check does (Redis#_readyCheck).
      const fields = {};
      for (const line of info.reply.split('\r\n')) {
        const [k, ...rest] = line.split(':');
        if (rest.join(':')) fields[k] = rest.join(':');
      }
      assert.ok(!fields.loading || fields.loading === '0', `loading:${fields.loading}`);
      assert.equal(fields.role, 'master');
      assert.match(fields.redis_version ?? '', /^\d+\.\d+\.\d+/);
      const ping = tr.find((e) => isCmd(e, 'ping'));
      assert.equal(ping?.raw, '+PONG\r\n');
    });

    if (major === 'ioredis6') {
      test('HELLO 3 first, then RESP2 (fallback on -NOPROTO) or RESP3', async () => {
        const proxy = await proxied();
        const c = connect(Redis, proxy.port);
        await ready(c);
        await c.set('e2e6:hello', 'v');
        assert.equal(await c.get('e2e6:hello'), 'v');
        const tr = proxy.transcript(0);
        assert.ok(tr.length > 0 && isCmd(tr[0], 'hello', '3'), `first command was ${JSON.stringify(tr[0]?.args)}`);
        const hello = tr[0];
        if (hello.type === '-') {
          // Fallback path: the error must be one ioredis recognises.
          assert.match(hello.raw, /NOPROTO|unknown command.*hello/i, `HELLO 3 error ${JSON.stringify(hello.raw)} is not recognised by ioredis 6 as "no RESP3"`);
          const later = tr.slice(1);
          const info = later.find((e) => isCmd(e, 'info'));
          assert.ok(info && info.type === '$', 'INFO after the RESP2 fallback');
          // Every reply after the fallback is RESP2.
          for (const e of later) {
            assert.ok('+-:$*'.includes(e.type), `RESP3 reply ${JSON.stringify(e.raw)} to ${e.args.join(' ')} after HELLO failed`);
          }
        } else {
          assert.ok(hello.type === '%' || hello.type === '*', `HELLO 3 replied ${JSON.stringify(hello.raw)}`);
        }
        assert.equal(await c.del('e2e6:hello'), 1);
      });
    }

    test('db option sends SELECT and keeps databases apart', async () => {
      const { port } = cluster.addr(0);
      const proxy = await proxied();
      const c3 = connect(Redis, proxy.port, { db: 3 });
      const c0 = connect(Redis, port);
      const key = `${major}:dbkey`;
      await c3.set(key, 'in-db-3');
      assert.equal(await c3.get(key), 'in-db-3');
      assert.equal(await c0.get(key), null);
      assert.equal(await c0.exists(key), 0);
      const sel = proxy.transcript(0).find((e) => isCmd(e, 'select'));
      assert.deepEqual(sel?.args.slice(1), ['3']);
      assert.equal(sel.raw, '+OK\r\n');
      // After a reconnect the client selects db 3 again.
      c3.disconnect(true);
      await ready(c3);
      assert.equal(await c3.get(key), 'in-db-3');
      assert.equal(await c3.del(key), 1);
    });

    test('password option: AUTH in the handshake, NOAUTH/WRONGPASS otherwise', async () => {
      const proxy = await proxied(secured);
      const c = connect(Redis, proxy.port, { password: PASSWORD, db: 2 });
      await ready(c);
      assert.equal(await c.ping(), 'PONG');
      assert.equal(await c.set(`${major}:auth`, 'v'), 'OK');
      assert.equal(await c.get(`${major}:auth`), 'v');
      const tr = proxy.transcript(0);
      const auth = tr.find((e) => isCmd(e, 'auth') || (isCmd(e, 'hello') && e.args.some((a) => a.toLowerCase() === 'auth') && e.type === '%'));
      assert.ok(auth, `no successful AUTH in ${JSON.stringify(tr.map((e) => [e.args[0], e.raw]))}`);
      if (isCmd(auth, 'auth')) assert.equal(auth.raw, '+OK\r\n');

      // No password: commands fail with NOAUTH.
      const anon = connect(Redis, secured.addr(0).port, { enableReadyCheck: false, maxRetriesPerRequest: 0 });
      await assert.rejects(anon.get(`${major}:auth`), /NOAUTH Authentication required/);
      // Wrong password: the handshake fails with WRONGPASS.
      const wrong = connect(Redis, secured.addr(0).port, { password: 'wrong', lazyConnect: true, retryStrategy: () => null });
      const err = new Promise((resolve) => wrong.once('error', resolve));
      wrong.connect().catch(() => {});
      assert.match(String((await err)?.message), /WRONGPASS invalid username-password pair or user is disabled/);
      assert.equal(await c.del(`${major}:auth`), 1);
    });

    test('connectionName sets the client name', async () => {
      const { port } = cluster.addr(0);
      const c = connect(Redis, port, { connectionName: `nr-${major}` });
      await ready(c);
      assert.equal(await c.client('GETNAME'), `nr-${major}`);
    });

    test('get/set/expire/ttl/del/keys/pipeline', async () => {
      const { port } = cluster.addr(0);
      const c = connect(Redis, port);
      const p = `${major}:basic:`;
      assert.equal(await c.set(`${p}a`, '1'), 'OK');
      assert.equal(await c.get(`${p}a`), '1');
      assert.equal(await c.get(`${p}missing`), null);
      assert.equal(await c.set(`${p}a`, '2', 'NX'), null);
      assert.equal(await c.set(`${p}a`, '3', 'XX'), 'OK');
      assert.equal(await c.set(`${p}a`, '4', 'GET'), '3');
      assert.equal(await c.ttl(`${p}a`), -1);
      assert.equal(await c.ttl(`${p}missing`), -2);
      assert.equal(await c.expire(`${p}a`, 100), 1);
      const ttl = await c.ttl(`${p}a`);
      assert.ok(ttl > 98 && ttl <= 100, `ttl ${ttl}`);
      const pttl = await c.pttl(`${p}a`);
      assert.ok(pttl > 98_000 && pttl <= 100_000, `pttl ${pttl}`);
      assert.equal(await c.expire(`${p}missing`, 100), 0);
      assert.equal(await c.persist(`${p}a`), 1);
      assert.equal(await c.ttl(`${p}a`), -1);
      assert.equal(await c.set(`${p}b`, 'x', 'EX', 50), 'OK');
      const ttlb = await c.ttl(`${p}b`);
      assert.ok(ttlb > 48 && ttlb <= 50, `ttl ${ttlb}`);
      assert.equal(await c.set(`${p}c`, 'x', 'PX', 150), 'OK');
      assert.equal(await c.incr(`${p}n`), 1);
      assert.equal(await c.incrby(`${p}n`, 41), 42);
      assert.deepEqual(await c.mget(`${p}a`, `${p}missing`, `${p}n`), ['4', null, '42']);
      assert.deepEqual((await c.keys(`${p}*`)).sort(), [`${p}a`, `${p}b`, `${p}c`, `${p}n`]);
      // the PX 150 key expires (poll, no fixed sleep)
      const deadline = Date.now() + 5000;
      while ((await c.exists(`${p}c`)) === 1) {
        assert.ok(Date.now() < deadline, 'PX 150 key did not expire within 5 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      await assert.rejects(c.incr(`${p}b`), /value is not an integer or out of range/);
      await assert.rejects(c.call('nosuchcommand', 'x'), /unknown command 'nosuchcommand', with args beginning with: 'x'/);

      const res = await c
        .pipeline()
        .set(`${p}p1`, 'v1')
        .get(`${p}p1`)
        .incr(`${p}p2`)
        .incr(`${p}p1`)
        .expire(`${p}p1`, 30)
        .ttl(`${p}p1`)
        .del(`${p}p1`, `${p}p2`, `${p}missing`)
        .exec();
      assert.deepEqual(res.slice(0, 3), [[null, 'OK'], [null, 'v1'], [null, 1]]);
      assert.match(String(res[3][0]), /value is not an integer or out of range/);
      assert.deepEqual(res[4], [null, 1]);
      assert.ok(res[5][1] > 28 && res[5][1] <= 30, `pipeline ttl ${res[5][1]}`);
      assert.deepEqual(res[6], [null, 2]);

      assert.equal(await c.del(`${p}a`, `${p}b`, `${p}n`, `${p}missing`), 3);
      assert.deepEqual(await c.keys(`${p}*`), []);
    });

    test('scanStream walks every key', async () => {
      const { port } = cluster.addr(0);
      const c = connect(Redis, port);
      const p = `${major}:scan:`;
      const want = [];
      const pl = c.pipeline();
      for (let i = 0; i < 120; i++) {
        want.push(`${p}${i}`);
        pl.set(`${p}${i}`, String(i));
      }
      await pl.exec();
      const seen = new Set();
      for await (const batch of c.scanStream({ match: `${p}*`, count: 17 })) {
        for (const k of batch) seen.add(k);
      }
      assert.deepEqual([...seen].sort(), want.sort());
      assert.equal(await c.del(...want), 120);
    });
  });
}
