// The Node-RED `cluster-leader` lock pattern (COMPAT.md section 2) against a
// 3-node redraft cluster, one ioredis client per node, for both majors:
//   (b) concurrent acquire -> exactly one OK; the holder's refresh loop keeps
//       the lock while contenders keep failing; when refreshing stops the lock
//       expires after ~ttl and another node's client takes it; release.
//   (c) kill -9 the Raft leader while a holder (on a follower) refreshes:
//       value and absolute deadline survive the failover, the holder keeps the
//       lock, the clients of the killed node reconnect by themselves once it
//       is restarted, and no second holder ever appears.
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
const HOSTS = ['host-n1', 'host-n2', 'host-n3'];

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
  // Defaults otherwise: reconnection is ioredis's own retryStrategy.
  const c = new Redis({ host, port });
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

/** What the cluster-leader node does, command for command. */
class LeaderLock {
  constructor(redis, key, host, ttl) {
    Object.assign(this, { redis, key, host, ttl });
  }

  // SET <lockKey> <hostname> EX <ttl> NX -> OK or nil
  async tryAcquire() {
    const r = await this.redis.set(this.key, this.host, 'EX', this.ttl, 'NX');
    assert.ok(r === 'OK' || r === null, `SET NX replied ${JSON.stringify(r)}`);
    return r === 'OK';
  }

  // GET; if it is ours, EXPIRE ttl. Returns { held, sentAt, ackAt }.
  async refresh() {
    const v = await this.redis.get(this.key);
    if (v !== this.host) return { held: false, value: v };
    const sentAt = Date.now();
    const r = await this.redis.expire(this.key, this.ttl);
    return { held: r === 1, sentAt, ackAt: Date.now() };
  }

  // GET then DEL
  async release() {
    const v = await this.redis.get(this.key);
    if (v !== this.host) return false;
    return (await this.redis.del(this.key)) === 1;
  }
}

/** The holder's refresh loop; pauseAndDrain()/resume() around checks. */
function startRefresher(lock, intervalMs) {
  const st = { inFlight: false, refreshes: 0, lost: null, errors: [], lastSentAt: 0, lastAckAt: 0, paused: false, stopped: false };
  let wake = null;
  const loop = (async () => {
    while (!st.stopped) {
      if (!st.paused) {
        st.inFlight = true;
        try {
          const r = await lock.refresh();
          if (!r.held) {
            st.lost ??= { at: Date.now(), value: r.value };
          } else {
            st.refreshes++;
            st.lastSentAt = r.sentAt;
            st.lastAckAt = r.ackAt;
          }
        } catch (e) {
          st.errors.push(e.message);
        }
        st.inFlight = false;
      }
      if (st.stopped) break;
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, intervalMs);
      });
    }
  })();
  // Stop refreshing and wait for an iteration in flight to finish.
  st.pauseAndDrain = async () => {
    st.paused = true;
    while (st.inFlight) await sleep(5);
  };
  st.resume = () => {
    st.paused = false;
    wake?.();
  };
  st.stop = async () => {
    st.stopped = true;
    wake?.();
    await loop;
  };
  return st;
}

/**
 * Contenders poll SET NX. While `shared.phase` is 'hold', any success is a
 * second holder (a safety violation); afterwards the first success is the
 * hand-over, and the winner stops contending.
 */
function startContender(lock, idx, shared, intervalMs) {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const phase = shared.phase;
      try {
        const got = await lock.tryAcquire();
        shared.attempts++;
        if (got) {
          const ev = { idx, at: Date.now(), phase };
          if (phase === 'hold') shared.violations.push(ev);
          else shared.handovers.push(ev);
          return;
        }
      } catch (e) {
        shared.errors.push(`${lock.host}: ${e.message}`);
      }
      await sleep(intervalMs);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

/** Absolute deadline of key in ms (PEXPIRETIME, or EXPIRETIME*1000). */
async function deadlineMs(c, key) {
  try {
    return Number(await c.call('PEXPIRETIME', key));
  } catch (e) {
    if (!/unknown command/i.test(e.message)) throw e;
    return Number(await c.call('EXPIRETIME', key)) * 1000;
  }
}

// Runs first, on the freshly started cluster: Node-RED's storage module opens
// with PING then EXISTS <p>flows, a read, before anything has been written.
test('a fresh cluster answers a read before any write, on every node', { timeout: 30_000 }, () =>
  cluster.withLogs(async () => {
    const cs = [0, 1, 2].map((i) => connect(Redis5, i));
    await Promise.all(cs.map(ready));
    for (const [i, c] of cs.entries()) {
      const t0 = Date.now();
      assert.equal(await c.ping(), 'PONG');
      let r;
      try {
        r = await c.exists('nodered:flows');
      } catch (e) {
        r = e.message;
      }
      const ms = Date.now() - t0;
      assert.equal(r, 0, `node ${cluster.nodes[i].id}: EXISTS nodered:flows -> ${JSON.stringify(r)} after ${ms} ms`);
      assert.ok(ms < 1000, `node ${cluster.nodes[i].id}: EXISTS took ${ms} ms`);
    }
  }),
);

for (const [major, Redis] of MAJORS) {
  describe(major, () => {
    test('(b) cluster-leader lock: one winner, refresh holds, expiry hands over, release', { timeout: 60_000 }, () =>
      cluster.withLogs(async () => {
        const cs = [0, 1, 2].map((i) => connect(Redis, i));
        await Promise.all(cs.map(ready));

        // Concurrent acquires from all three nodes: exactly one OK, the others nil.
        for (let round = 0; round < 8; round++) {
          const k = `nodered:${major}:race:${round}`;
          const res = await Promise.all(cs.map((c, i) => c.set(k, HOSTS[i], 'EX', 30, 'NX')));
          const winners = res.flatMap((v, i) => (v === 'OK' ? [i] : []));
          assert.equal(winners.length, 1, `round ${round}: replies ${JSON.stringify(res)}`);
          for (const [i, v] of res.entries()) if (i !== winners[0]) assert.equal(v, null, `loser got ${JSON.stringify(v)}`);
          const views = await Promise.all(cs.map((c) => c.get(k)));
          assert.deepEqual(views, [0, 1, 2].map(() => HOSTS[winners[0]]), 'every node sees the winner');
          assert.equal(await cs[round % 3].del(k), 1);
        }

        const TTL = 2;
        const key = `nodered:${major}:leader-b`;
        const locks = cs.map((c, i) => new LeaderLock(c, key, HOSTS[i], TTL));
        const got = await Promise.all(locks.map((l) => l.tryAcquire()));
        assert.equal(got.filter(Boolean).length, 1, `acquire: ${JSON.stringify(got)}`);
        const holder = got.indexOf(true);

        const shared = { phase: 'hold', violations: [], handovers: [], errors: [], attempts: 0 };
        const refresher = startRefresher(locks[holder], 400);
        const others = [0, 1, 2].filter((i) => i !== holder);
        const contenders = others.map((i) => startContender(locks[i], i, shared, 150));

        // Hold for more than two TTLs: without the refreshes it would expire.
        const holdUntil = Date.now() + 2 * TTL * 1000 + 500;
        await waitFor('the hold period', () => Date.now() >= holdUntil || shared.violations.length > 0, 10_000, 50);
        assert.deepEqual(shared.violations, [], 'a contender acquired the lock while the holder refreshed it');
        assert.equal(refresher.lost, null, `holder lost the lock: ${JSON.stringify(refresher.lost)}`);
        assert.ok(refresher.refreshes >= 5, `only ${refresher.refreshes} refreshes`);
        assert.deepEqual(refresher.errors, []);
        assert.ok(shared.attempts >= 10, `only ${shared.attempts} contender attempts`);

        // Stop refreshing: the lock must expire ~TTL after the last EXPIRE and
        // exactly one contender takes it.
        await refresher.stop();
        const { lastSentAt, lastAckAt } = refresher;
        shared.phase = 'expire';
        await waitFor('a contender to take the expired lock', () => shared.handovers.length > 0, TTL * 1000 + 5000);
        await Promise.all(contenders.map((c) => c.stop()));
        assert.equal(shared.handovers.length, 1, `hand-overs: ${JSON.stringify(shared.handovers)}`);
        const { idx: next, at } = shared.handovers[0];
        const earliest = lastSentAt + TTL * 1000;
        assert.ok(at >= earliest - 5, `lock taken ${earliest - at} ms before its deadline`);
        assert.ok(at <= lastAckAt + TTL * 1000 + 1500, `lock taken ${at - lastAckAt - TTL * 1000} ms after its deadline`);
        assert.deepEqual(shared.errors, []);

        // Everyone sees the new holder; the old holder's refresh now fails.
        assert.deepEqual(await Promise.all(cs.map((c) => c.get(key))), [0, 1, 2].map(() => HOSTS[next]));
        assert.equal((await locks[holder].refresh()).held, false);

        // Release: GET then DEL, only by the holder.
        assert.equal(await locks[holder].release(), false);
        assert.equal(await locks[next].release(), true);
        assert.deepEqual(await Promise.all(cs.map((c) => c.get(key))), [null, null, null]);
        assert.equal(await locks[next].release(), false);
      }),
    );

    test('(c) kill -9 the Raft leader while the holder refreshes', { timeout: 90_000 }, (t) =>
      cluster.withLogs(async () => {
        const TTL = 15;
        const key = `nodered:${major}:leader-c`;
        const L = await cluster.leader();
        const H = (L + 1) % 3; // the holder is on a follower
        const O = (L + 2) % 3;
        const cs = [0, 1, 2].map((i) => connect(Redis, i));
        await Promise.all(cs.map(ready));
        let reconnects = 0;
        cs[L].on('reconnecting', () => reconnects++);
        const locks = cs.map((c, i) => new LeaderLock(c, key, HOSTS[i], TTL));

        assert.equal(await locks[H].tryAcquire(), true);
        assert.equal(await locks[L].tryAcquire(), false);
        assert.equal(await locks[O].tryAcquire(), false);

        const shared = { phase: 'hold', violations: [], handovers: [], errors: [], attempts: 0 };
        const refresher = startRefresher(locks[H], 300);
        const contenders = [L, O].map((i) => startContender(locks[i], i, shared, 150));
        await waitFor('two refreshes', () => refresher.refreshes >= 2, 10_000);

        // Freeze the deadline, note it, and kill the leader.
        await refresher.pauseAndDrain();
        const d1 = await deadlineMs(cs[H], key);
        assert.ok(d1 > Date.now(), `deadline ${d1} already past`);
        await cluster.kill(L);
        const killedAt = Date.now();

        const newLeader = await cluster.leader(30_000);
        assert.notEqual(newLeader, L);
        const failoverMs = Date.now() - killedAt;

        // The lock survived: same holder, same absolute deadline, counting down.
        assert.equal(await cs[H].get(key), HOSTS[H]);
        assert.equal(await cs[O].get(key), HOSTS[H]);
        assert.equal(await deadlineMs(cs[H], key), d1, 'deadline changed across the failover');
        assert.equal(await deadlineMs(cs[O], key), d1, 'deadline differs on the other survivor');
        const before = Date.now();
        const pttl = await cs[H].pttl(key);
        assert.ok(pttl > 0 && pttl <= d1 - before + 50, `pttl ${pttl} vs deadline in ${d1 - before} ms`);
        assert.ok(pttl >= d1 - Date.now() - 1000, `pttl ${pttl} too small for deadline in ${d1 - Date.now()} ms`);
        assert.equal(await locks[O].tryAcquire(), false);

        // The holder refreshes again through the new leader.
        const n0 = refresher.refreshes;
        refresher.resume();
        await waitFor('refreshes after the failover', () => refresher.refreshes >= n0 + 2, 15_000);
        assert.ok((await deadlineMs(cs[H], key)) > d1, 'refresh after failover did not move the deadline');

        // Restart the killed node; its ioredis client reconnects by itself.
        await cluster.start(L);
        await waitFor(`${major} client of the restarted node to be ready again`, () => cs[L].status === 'ready', 20_000);
        assert.ok(reconnects > 0, 'the client of the killed node never noticed');
        assert.equal(await cs[L].get(key), HOSTS[H]);
        assert.equal(await locks[L].tryAcquire(), false);
        await cluster.leader(30_000);

        // A little more contention with all three nodes up, then stop.
        const untilMs = Date.now() + 1000;
        await waitFor('post-restart contention', () => Date.now() >= untilMs, 5000, 50);
        await refresher.stop();
        await Promise.all(contenders.map((c) => c.stop()));
        assert.deepEqual(shared.violations, [], 'a second holder appeared');
        assert.equal(refresher.lost, null, `holder lost the lock: ${JSON.stringify(refresher.lost)}`);
        assert.equal(await cs[H].get(key), HOSTS[H]);

        assert.equal(await locks[L].release(), false);
        assert.equal(await locks[H].release(), true);
        assert.deepEqual(await Promise.all(cs.map((c) => c.get(key))), [null, null, null]);
        t.diagnostic(
          `${major}: failover took ${failoverMs} ms; ${shared.attempts} contender attempts, ` +
            `${shared.errors.length} contender errors, ${refresher.errors.length} refresh errors during the failover ` +
            JSON.stringify([...new Set([...shared.errors, ...refresher.errors])].slice(0, 5)),
        );
      }),
    );
  });
}

// After a leader change, reads (Node-RED workers GET their flows, the
// cluster-leader refresh starts with GET) must be served at once, also when
// nothing has been written since the election.
test('reads are served right after a failover, before any write', { timeout: 60_000 }, () =>
  cluster.withLogs(async () => {
    const key = 'nodered:failover-read';
    const L = await cluster.leader();
    const survivors = [0, 1, 2].filter((i) => i !== L);
    const cs = survivors.map((i) => connect(Redis5, i));
    await Promise.all(cs.map(ready));
    assert.equal(await cs[0].set(key, 'v'), 'OK');
    await cluster.kill(L);
    await cluster.leader(30_000);
    const timedGet = async (c, id) => {
      const t0 = Date.now();
      let r;
      try {
        r = await c.get(key);
      } catch (e) {
        r = e.message;
      }
      return { id, r, ms: Date.now() - t0 };
    };
    const results = [];
    for (const [j, c] of cs.entries()) results.push(await timedGet(c, cluster.nodes[survivors[j]].id));
    await cluster.start(L);
    await cluster.leader(30_000);
    const cl = connect(Redis5, L);
    await ready(cl);
    results.push(await timedGet(cl, `${cluster.nodes[L].id} (restarted)`));
    for (const { id, r, ms } of results) {
      assert.equal(r, 'v', `GET on ${id} after the failover -> ${JSON.stringify(r)} after ${ms} ms`);
      assert.ok(ms < 1500, `GET on ${id} took ${ms} ms`);
    }
    assert.equal(await cs[0].del(key), 1);
  }),
);
