// A TCP proxy that records both directions of every connection, so a test can
// see exactly what ioredis sent (its handshake) and what the server answered.
import net from 'node:net';
import { parseAll } from './resp.js';

export class RecordingProxy {
  constructor(targetHost, targetPort) {
    this.targetHost = targetHost;
    this.targetPort = targetPort;
    this.conns = []; // { c2s: Buffer[], s2c: Buffer[] }
    this.sockets = new Set();
    this.server = net.createServer((client) => this._accept(client));
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve(this);
      });
    });
  }

  _accept(client) {
    const rec = { c2s: [], s2c: [] };
    this.conns.push(rec);
    const upstream = net.connect({ host: this.targetHost, port: this.targetPort });
    this.sockets.add(client);
    this.sockets.add(upstream);
    client.on('data', (d) => {
      rec.c2s.push(d);
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      rec.s2c.push(d);
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }

  /**
   * The commands of connection n (default: the first) paired with their
   * replies: [{ args: [...], reply: value, raw: string }]. Replies arrive in
   * order, so the i-th reply belongs to the i-th command.
   */
  transcript(n = 0) {
    const rec = this.conns[n];
    if (!rec) return [];
    const cmds = parseAll(Buffer.concat(rec.c2s)).map((r) => r.value);
    const replies = parseAll(Buffer.concat(rec.s2c));
    return cmds.map((args, i) => ({
      args: Array.isArray(args) ? args.map(String) : [String(args)],
      reply: replies[i]?.value,
      raw: replies[i] ? replies[i].raw.toString('utf8') : undefined,
      type: replies[i]?.type,
    }));
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

export async function startRecordingProxy(host, port) {
  return new RecordingProxy(host, port).listen();
}
