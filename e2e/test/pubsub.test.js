// Pub/sub across a 3-node redraft cluster with real ioredis clients (both
// majors), as the Node-RED storage module uses it (COMPAT.md section 2):
//   - workers keep a duplicate() connection in SUBSCRIBE mode on
//     <p>flows:updated; the admin, on another node, SETs <p>flows and
//     PUBLISHes; a worker that gets the message GETs the flows on its own
//     node and must see what was written before the PUBLISH;
//   - the subscriber's node is killed (-9) and restarted: ioredis reconnects
//     and resubscribes by itself, and later messages arrive.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis as Redis5 } from 'ioredis';
import { Redis as Redis6 } from 'ioredis6';
import { startCluster } from '../lib/cluster.js';

const MAJORS = [
  ['ioredis5', Redis5],
  ['ioredis6', Redis6],
];

let cluster;
const clients = new Set();

before(async () => {
  cluster = await startCluster({ nodes: 3 });
});

after(async () => {
  for (const c of clients) c.disconnect();
  await cluster?.close();
});

function connect(Redis, i) {
  const { host, port } = cluster.addr(i);
  const c = new Redis({ host, port }); // ioredis's own defaults: retry, autoResubscribe
  c.on('error', () => {});
  clients.add(c);
  return c;
}

function track(c) {
  c.on('error', () => {});
  clients.add(c);
  return c;
}

async function ready(c) {
  if (c.status !== 'ready') await once(c, 'ready');
}

async function waitFor(what, pred, timeoutMs, intervalMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Two distinct followers (writer, subscriber) and the leader. */
async function roles() {
  const leader = await cluster.leader();
  return { leader, a: (leader + 1) % 3, b: (leader + 2) % 3 };
}

/**
 * A Node-RED worker: a normal connection for reads and its duplicate() in
 * subscribe mode; on each message it reloads the flows on its own node.
 */
async function worker(Redis, node, prefix) {
  const main = connect(Redis, node);
  await ready(main);
  const sub = track(main.duplicate());
  const seen = []; // { msg, flows } in arrival order
  const pending = [];
  sub.on('message', (channel, msg) => {
    if (channel !== `${prefix}flows:updated`) return;
    pending.push(
      main.get(`${prefix}flows`).then((flows) => {
        seen.push({ msg, flows: JSON.parse(flows) });
      }),
    );
  });
  assert.equal(await sub.subscribe(`${prefix}flows:updated`), 1);
  return { main, sub, seen, settle: () => Promise.all(pending) };
}

for (const [major, Redis] of MAJORS) {
  describe(major, () => {
    test('storage module: SET flows, PUBLISH flows:updated on one node; the subscriber GETs on another and sees the flows', () =>
      cluster.withLogs(async () => {
        const prefix = `nodered-${major}:`;
        const { a, b, leader } = await roles();
        const admin = connect(Redis, a);
        await ready(admin);
        const w = await worker(Redis, b, prefix);
        const onLeader = connect(Redis, leader);

        // One at a time: each reload must see exactly the flows just saved.
        for (let rev = 1; rev <= 20; rev++) {
          await admin.set(`${prefix}flows`, JSON.stringify({ rev, nodes: [{ id: `n${rev}` }] }));
          // PUBLISH counts the receivers of the node that served it (none on
          // the admin's node), as Redis Cluster does.
          assert.equal(await admin.publish(`${prefix}flows:updated`, String(Date.now())), 0);
          await waitFor(`reload ${rev}`, () => w.seen.length === rev, 5000, 2);
          await w.settle();
          assert.equal(w.seen[rev - 1].flows.rev, rev);
        }
        // The subscriber's own node counts it; another node does not.
        assert.equal(await w.main.publish(`${prefix}flows:updated`, 'x'), 1);
        assert.equal(await onLeader.publish(`${prefix}flows:updated`, 'y'), 0);
        await waitFor('the two extra messages', () => w.seen.length === 22, 5000);
        await w.settle();

        // Saves in a burst, admin on a follower, pipelined: every reload sees
        // at least the revision its message announced.
        w.seen.length = 0;
        const pipe = admin.pipeline();
        for (let rev = 100; rev < 200; rev++) {
          pipe.set(`${prefix}flows`, JSON.stringify({ rev }));
          pipe.publish(`${prefix}flows:updated`, String(rev));
        }
        for (const [err] of await pipe.exec()) assert.equal(err, null);
        await waitFor('100 reloads', () => w.seen.length === 100, 10000);
        await w.settle();
        w.seen.forEach(({ msg, flows }, i) => {
          assert.equal(msg, String(100 + i), 'messages in publish order');
          assert.ok(flows.rev >= Number(msg), `message ${msg} then GET saw rev ${flows.rev}`);
        });
      }));

    test("subscriber's node killed (-9) and restarted: ioredis resubscribes, later messages arrive", () =>
      cluster.withLogs(async () => {
        const prefix = `restart-${major}:`;
        const { a, b } = await roles();
        const admin = connect(Redis, a);
        await ready(admin);
        const w = await worker(Redis, b, prefix);
        const publish = async (msg) => {
          // During a restart (or an election) a PUBLISH may fail: retry.
          await waitFor(`PUBLISH ${msg}`, async () => {
            try {
              await admin.set(`${prefix}flows`, JSON.stringify({ rev: msg }));
              await admin.publish(`${prefix}flows:updated`, msg);
              return true;
            } catch {
              return false;
            }
          }, 20000, 50);
        };
        await publish('before');
        await waitFor('the message before the restart', () => w.seen.length === 1, 5000);

        await cluster.kill(b);
        await publish('while-down');
        await cluster.start(b);
        await waitFor('ioredis to resubscribe', async () => {
          try {
            return (await admin.pubsub('NUMSUB', `${prefix}flows:updated`))[1] === 0 &&
              (await w.main.pubsub('NUMSUB', `${prefix}flows:updated`))[1] === 1;
          } catch {
            return false;
          }
        }, 20000, 50);
        for (const msg of ['after-1', 'after-2', 'after-3']) await publish(msg);
        await waitFor('messages after the restart', () => w.seen.some((s) => s.msg === 'after-3'), 10000);
        await w.settle();
        const msgs = w.seen.map((s) => s.msg);
        assert.deepEqual(msgs.filter((m) => m.startsWith('after')), ['after-1', 'after-2', 'after-3']);
        assert.equal(new Set(msgs).size, msgs.length, `no duplicates: ${msgs}`);
        // 'before' was in the node's log when it restarted: re-applying it
        // must not deliver it again. ('while-down' reached the node after its
        // start: delivered if ioredis had resubscribed by then, or not.)
        assert.deepEqual(msgs.filter((m) => m === 'before'), ['before']);
        // Each reload sees the flows saved with its message, or later ones.
        const order = ['after-1', 'after-2', 'after-3'];
        for (const s of w.seen.filter((x) => x.msg.startsWith('after'))) {
          assert.ok(order.indexOf(s.flows.rev) >= order.indexOf(s.msg), `message ${s.msg} then GET saw ${s.flows.rev}`);
        }
      }));
  });
}
