package fsm

// effect is something a command causes outside the state, carried out only
// after the batch that caused it has committed.
type effect struct {
	index            int // the entry's position in its batch: its reply slot
	channel, message []byte
}

func (e effect) deliver(f *FSM, replies []interface{}) {
	if h := f.currentHooks(); h.Publish != nil {
		h.Publish(e.channel, e.message)
	}
}
