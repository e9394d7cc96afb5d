package fsm

// effect is something a command causes outside the state, carried out only
// after the batch that caused it has applied (see ApplyBatch).
type effect struct {
	channel, message []byte
}

func (e effect) deliver(f *FSM) {
	if h := f.currentHooks(); h.Publish != nil {
		h.Publish(e.channel, e.message)
	}
}
