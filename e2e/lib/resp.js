// A minimal RESP client and parser, independent of ioredis, for the harness
// itself (PING, ROLE) and for decoding what the recording proxy saw.
import net from 'node:net';

export class RespError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RespError';
  }
}

/** Encode a command as a RESP array of bulk strings. */
export function encodeCommand(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
}

/**
 * Parse one RESP2/RESP3 value from buf at offset.
 * Returns { value, raw, end } or undefined when buf holds an incomplete value.
 * Errors are returned as RespError instances, bulk strings as strings
 * (latin1-safe via utf8 here: the harness only looks at ASCII), nulls as null.
 */
export function parseReply(buf, offset = 0) {
  const lineEnd = buf.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[offset]);
  const line = buf.toString('utf8', offset + 1, lineEnd);
  let pos = lineEnd + 2;
  const done = (value) => ({ value, raw: buf.subarray(offset, pos), end: pos, type });
  switch (type) {
    case '+':
      return done(line);
    case '-':
      return done(new RespError(line));
    case ':':
      return done(Number(line));
    case '_':
      return done(null);
    case ',':
      return done(Number(line));
    case '#':
      return done(line === 't');
    case '(':
      return done(BigInt(line));
    case '$':
    case '!':
    case '=': {
      const n = Number(line);
      if (n < 0) return done(null);
      if (buf.length < pos + n + 2) return undefined;
      const s = buf.toString('utf8', pos, pos + n);
      pos += n + 2;
      return done(type === '!' ? new RespError(s) : s);
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      let n = Number(line);
      if (n < 0) return done(null);
      if (type === '%' || type === '|') n *= 2;
      const out = [];
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, pos);
        if (!r) return undefined;
        out.push(r.value);
        pos = r.end;
      }
      return done(out);
    }
    default:
      throw new Error(`bad RESP type byte ${JSON.stringify(type)} at ${offset}`);
  }
}

/** Parse a stream of RESP values (complete ones only). */
export function parseAll(buf) {
  const out = [];
  let off = 0;
  while (off < buf.length) {
    const r = parseReply(buf, off);
    if (!r) break;
    out.push(r);
    off = r.end;
  }
  return out;
}

/**
 * Send one command on a fresh connection (after AUTH when a password is
 * given) and resolve with its reply (a RespError is resolved, not thrown).
 * Rejects on I/O errors and timeouts.
 */
export function command(host, port, args, { timeout = 2000, password = '' } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (err, val) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(val);
    };
    const timer = setTimeout(() => finish(new Error(`timeout after ${timeout} ms: ${args.join(' ')}`)), timeout);
    // With a password, AUTH goes first (pipelined) and its reply is skipped.
    sock.on('connect', () => {
      if (password) sock.write(encodeCommand(['AUTH', password]));
      sock.write(encodeCommand(args));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r;
      try {
        r = parseReply(buf);
        if (r && password) r = parseReply(buf, r.end);
      } catch (e) {
        finish(e);
        return;
      }
      if (r) finish(null, r.value);
    });
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(new Error('connection closed before a reply')));
  });
}
