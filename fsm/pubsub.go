package fsm

// PUBLISH goes through the Raft log like any write, so every node sees it at
// the same position relative to every other write; it changes no key. On
// apply it only records an effect: the message is handed to this node's
// subscribers (Hooks.Publish) after the batch that carries it has committed,
// so a subscriber that reads after the message sees every write before it.

// cmdPublish records the message for delivery. The reply is a placeholder:
// the count Redis answers is the number of receivers on the node that served
// the command, which only that node's server knows, so it substitutes its
// own (see respserver). A constant here keeps replies — and scripts that
// look at them — identical on every node.
func cmdPublish(c *Ctx, args [][]byte) {
	c.effects = append(c.effects, effect{channel: args[1], message: args[2]})
	c.out = AppendInt(c.out, 0)
}

// SetHooks installs the hooks; safe while raft is applying (the server
// attaches to a node whose FSM may already be replaying its log).
func (f *FSM) SetHooks(h Hooks) { f.hooks.Store(&h) }

func (f *FSM) currentHooks() Hooks {
	if h := f.hooks.Load(); h != nil {
		return *h
	}
	return f.Hooks
}

// QuietThrough suppresses the effects of entries up to idx. The node sets it
// to its log's last index before raft starts: those entries were received
// before a restart, and an FSM file that is behind the log re-applies them;
// their messages were delivered (or were due) before the restart and must
// not reach subscribers that connected since. Entries received after start
// are delivered as usual, so a node that was cut off delivers what was
// committed meanwhile, in order, when it catches up.
func (f *FSM) QuietThrough(idx uint64) { f.quiet.Store(idx) }
