// Runs real redraft processes for the end-to-end tests.
//
//   const cluster = await startCluster({ nodes: 3 });
//   cluster.nodes[i].port      RESP port (kept across restarts)
//   await cluster.leader()     index of the node whose ROLE says master
//   await cluster.kill(i)      kill -9
//   await cluster.start(i)     restart with the same data dir and ports
//   await cluster.close()      kill everything, remove the temp dir
//
// The binary comes from REDRAFT_BIN (required). Everything binds to
// 127.0.0.1 with OS-picked ports. Every process is killed on close(), on
// process exit and on SIGINT/SIGTERM; a small watchdog process also kills
// them if this Node.js process dies without running its handlers (SIGKILL).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { command } from './resp.js';

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 30_000;

const liveProcs = new Set();
let handlersInstalled = false;

function installExitHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const p of liveProcs) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => process.exit(128 + (os.constants.signals[sig] ?? 0)));
  }
}

/** Resolve the redraft binary from REDRAFT_BIN or throw a clear error. */
export function redraftBinary() {
  const bin = process.env.REDRAFT_BIN;
  if (!bin) {
    throw new Error(
      'REDRAFT_BIN is not set: build the server (go build -o /tmp/redraft ./cmd/redraft) ' +
        'and run e.g. `REDRAFT_BIN=/tmp/redraft node --test` in e2e/',
    );
  }
  if (!fs.existsSync(bin)) throw new Error(`REDRAFT_BIN=${bin}: no such file`);
  return path.resolve(bin);
}

/** A free loopback TCP port (listen on :0, note the port, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('REDRAFT_')) env[k] = v;
  }
  return env;
}

export class Cluster {
  constructor({ bin, dir, nodes, extraArgs, password }) {
    this.bin = bin;
    this.password = password;
    this.dir = dir;
    this.extraArgs = extraArgs;
    this.nodes = nodes; // [{ id, raftPort, port, dataDir, logPath, proc, exited }]
    this.closed = false;
    this.pidFile = path.join(dir, 'pids');
    this.watchdog = null;
  }

  get size() {
    return this.nodes.length;
  }

  /** RESP address of node i as { host, port }. */
  addr(i) {
    return { host: HOST, port: this.nodes[i].port };
  }

  running(i) {
    const n = this.nodes[i];
    return !!n.proc && n.exited === null;
  }

  _args(n) {
    const args = [
      '--id', n.id,
      '--addr', `${HOST}:${n.port ?? 0}`,
      '--raft-addr', `${HOST}:${n.raftPort}`,
      '--data-dir', n.dataDir,
    ];
    if (this.nodes.length > 1) {
      args.push('--initial-cluster', this.nodes.map((m) => `${m.id}=${HOST}:${m.raftPort}`).join(','));
    }
    return args.concat(this.extraArgs);
  }

  _writePids() {
    const pids = this.nodes.filter((n) => n.proc && n.exited === null).map((n) => n.proc.pid);
    fs.writeFileSync(this.pidFile, pids.join(' ') + '\n');
  }

  _startWatchdog() {
    // Kills the nodes and removes the temp dir if this process disappears
    // without running its exit handlers.
    const script =
      'while kill -0 "$0" 2>/dev/null; do sleep 0.5; done; ' +
      'kill -9 $(cat "$1" 2>/dev/null) 2>/dev/null; rm -rf "$2"';
    this.watchdog = spawn('sh', ['-c', script, String(process.pid), this.pidFile, this.dir], {
      stdio: 'ignore',
      detached: true,
    });
    this.watchdog.unref();
  }

  _spawn(i) {
    const n = this.nodes[i];
    try {
      fs.rmSync(path.join(n.dataDir, 'addrs.json'), { force: true });
    } catch {
      // ignore
    }
    const log = fs.openSync(n.logPath, 'a');
    fs.writeSync(log, `e2e: starting ${this.bin} ${this._args(n).join(' ')}\n`);
    // The password goes in the environment, not on the command line
    // (DESIGN.md: secrets never on the command line).
    const env = cleanEnv();
    if (this.password) env.REDRAFT_REQUIREPASS = this.password;
    const proc = spawn(this.bin, this._args(n), { stdio: ['ignore', log, log], env });
    fs.closeSync(log);
    n.proc = proc;
    n.exited = null;
    n.exitPromise = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        n.exited = { code, signal };
        liveProcs.delete(proc);
        resolve(n.exited);
      });
      proc.on('error', (err) => {
        n.exited = { error: err };
        liveProcs.delete(proc);
        resolve(n.exited);
      });
    });
    liveProcs.add(proc);
    this._writePids();
  }

  async _waitReady(i, timeoutMs = READY_TIMEOUT_MS) {
    const n = this.nodes[i];
    const deadline = Date.now() + timeoutMs;
    const addrsFile = path.join(n.dataDir, 'addrs.json');
    let resp = null;
    let lastErr = 'no addrs.json yet';
    while (Date.now() < deadline) {
      if (n.exited !== null) {
        throw new Error(`${n.id} exited while starting (${JSON.stringify(n.exited)})\n${this.logTail(i)}`);
      }
      if (!resp) {
        try {
          const a = JSON.parse(fs.readFileSync(addrsFile, 'utf8'));
          if (a.resp) resp = a.resp;
        } catch (e) {
          lastErr = e.message;
        }
      }
      if (resp) {
        const port = Number(resp.slice(resp.lastIndexOf(':') + 1));
        try {
          const r = await command(HOST, port, ['PING'], { timeout: 1000, password: this.password });
          if (r === 'PONG') {
            n.port = port;
            return;
          }
          lastErr = `PING replied ${JSON.stringify(r)}`;
        } catch (e) {
          lastErr = e.message;
        }
      }
      await sleep(50);
    }
    throw new Error(`${n.id} not ready after ${timeoutMs} ms: ${lastErr}\n${this.logTail(i)}`);
  }

  /** ROLE of node i ("master", "slave", ...) or null when it does not answer. */
  async role(i, timeout = 1000) {
    if (!this.running(i)) return null;
    try {
      const r = await command(HOST, this.nodes[i].port, ['ROLE'], { timeout, password: this.password });
      return Array.isArray(r) ? String(r[0]) : null;
    } catch {
      return null;
    }
  }

  /**
   * Wait until exactly one running node says master and every other running
   * node that answers says it is not; resolve with that node's index.
   */
  async leader(timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const roles = await Promise.all(this.nodes.map((_, i) => this.role(i)));
      const masters = roles.map((r, i) => (r === 'master' ? i : -1)).filter((i) => i >= 0);
      if (masters.length === 1) return masters[0];
      last = roles.map((r, i) => `${this.nodes[i].id}=${r}`).join(' ');
      await sleep(50);
    }
    throw new Error(`no single leader after ${timeoutMs} ms (${last})`);
  }

  /** kill -9 node i and wait for it to exit. */
  async kill(i) {
    const n = this.nodes[i];
    if (!this.running(i)) return;
    n.proc.kill('SIGKILL');
    await n.exitPromise;
    this._writePids();
  }

  /** Restart node i with the same data dir, Raft port and RESP port. */
  async start(i) {
    if (this.running(i)) throw new Error(`${this.nodes[i].id} is already running`);
    this._spawn(i);
    await this._waitReady(i);
  }

  /** Run fn; on failure append every node's log tail to the error. */
  async withLogs(fn) {
    try {
      await fn();
    } catch (e) {
      e.message += '\n' + this.nodes.map((_, i) => this.logTail(i, 25)).join('\n');
      throw e;
    }
  }

  logTail(i, lines = 40) {
    try {
      const all = fs.readFileSync(this.nodes[i].logPath, 'utf8').split('\n');
      return `--- ${this.nodes[i].id} log (tail) ---\n` + all.slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.nodes.map((_, i) => this.kill(i)));
    try {
      if (this.watchdog) process.kill(-this.watchdog.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    if (process.env.E2E_KEEP_LOGS) {
      console.log(`e2e: logs kept in ${this.dir}`);
    } else {
      await fsp.rm(this.dir, { recursive: true, force: true });
    }
  }
}

/**
 * Start `nodes` redraft processes (one: a single bootstrapped node; more: a
 * cluster with --initial-cluster), wait until each answers PING and one of
 * them is the leader. `password` sets requirepass (via REDRAFT_REQUIREPASS).
 */
export async function startCluster({ nodes = 3, extraArgs = [], password = '' } = {}) {
  const bin = redraftBinary();
  installExitHandlers();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'redraft-e2e-'));
  const specs = [];
  for (let i = 0; i < nodes; i++) {
    const id = `n${i + 1}`;
    const dataDir = path.join(dir, id);
    await fsp.mkdir(dataDir, { recursive: true });
    specs.push({
      id,
      dataDir,
      logPath: path.join(dir, `${id}.log`),
      raftPort: await freePort(),
      port: null, // 0 on the first start, then the port it got
      proc: null,
      exited: null,
    });
  }
  const cluster = new Cluster({ bin, dir, nodes: specs, extraArgs, password });
  cluster._writePids();
  cluster._startWatchdog();
  try {
    // Start all first: a node may wait for its peers before it answers.
    for (let i = 0; i < nodes; i++) cluster._spawn(i);
    await Promise.all(specs.map((_, i) => cluster._waitReady(i)));
    await cluster.leader(READY_TIMEOUT_MS);
  } catch (e) {
    const logs = specs.map((_, i) => cluster.logTail(i)).join('\n');
    await cluster.close();
    e.message += `\n${logs}`;
    throw e;
  }
  return cluster;
}
