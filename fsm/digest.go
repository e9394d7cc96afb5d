package fsm

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"

	bolt "go.etcd.io/bbolt"
)

// digestBuckets are the buckets that make up the replicated state: every
// node that applied the same log has the same content in them, whatever its
// batch boundaries (meta also holds node-local bookkeeping, so only its
// replicated fields count).
func digestBuckets() [][]byte {
	out := [][]byte{bucketExpires, bucketScripts}
	for i := 0; i < Databases; i++ {
		out = append(out, dbBuckets[i], scanBuckets[i])
	}
	return out
}

// digest hashes the replicated state in key order.
func digest(tx *bolt.Tx) []byte {
	h := sha1.New()
	var lenBuf [binary.MaxVarintLen64]byte
	write := func(b []byte) {
		h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(b)))])
		h.Write(b)
	}
	for _, name := range digestBuckets() {
		write(name)
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		b.ForEach(func(k, v []byte) error {
			write(k)
			write(v)
			return nil
		})
	}
	m := tx.Bucket(bucketMeta)
	for i := 0; i < Databases; i++ {
		write(m.Get(countKeys[i]))
		write(m.Get(expireKeys[i]))
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
	c.out = AppendBulkString(c.out, hex.EncodeToString(digest(c.tx)))
}
