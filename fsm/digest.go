package fsm

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
)

// digestBuckets are the buckets that make up the replicated state: every
// node that applied the same log has the same content in them, whatever its
// batch boundaries or flushes.
var digestBuckets = func() []bucketID {
	out := []bucketID{bucketIDExpires, bucketIDScripts}
	for i := 0; i < Databases; i++ {
		out = append(out, bucketIDDB0+bucketID(i), bucketIDScan0+bucketID(i))
	}
	return out
}()

// digest hashes the replicated state in key order, and the key counts.
func digest(v *view, m *meta) []byte {
	h := sha1.New()
	var lenBuf [binary.MaxVarintLen64]byte
	write := func(b []byte) {
		h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(b)))])
		h.Write(b)
	}
	for _, b := range digestBuckets {
		write(bucketNames[b])
		cur := v.cursor(b)
		for k, val := cur.First(); k != nil; k, val = cur.Next() {
			write(k)
			write(val)
		}
	}
	for i := 0; i < Databases; i++ {
		write(putU64(uint64(m.keys[i])))
		write(putU64(uint64(m.expires[i])))
	}
	return h.Sum(nil)
}

// cmdDebug implements DEBUG DIGEST: a hex digest of the whole replicated
// state, equal on every node at the same applied index. Tests and operators
// compare it across nodes.
func cmdDebug(c *Ctx, args [][]byte) {
	if !eqFold(args[1], "digest") || len(args) != 2 {
		c.out = AppendError(c.out, "ERR DEBUG supports only DIGEST in redraft")
		return
	}
	c.out = AppendBulkString(c.out, hex.EncodeToString(digest(c.v, c.meta)))
}
