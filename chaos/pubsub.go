package chaos

import (
	"fmt"
	"time"
)

// SubStream is what one subscriber received on one channel, in order.
type SubStream struct {
	Subscriber string        `json:"subscriber"`
	Node       int           `json:"node"`
	Channel    string        `json:"channel"`
	From       time.Duration `json:"from"` // subscription confirmed
	// To bounds what the stream owes: acknowledged messages returned by
	// then (the workload uses the invocation time of the latest-sent
	// message the connection received, see pubsubStreams).
	To       time.Duration `json:"to"`
	Messages []string      `json:"messages"`
	// CutOff is set when the subscriber's node was killed, paused or
	// partitioned while it listened (or its previous connection dropped):
	// gaps are then allowed, disorder and duplicates still are not.
	CutOff bool `json:"cut_off"`
}

// CheckPubSub checks subscriber streams against the PUBLISH ops (KindPublish,
// Key = channel, Value = a unique payload):
//   - no duplicates in a stream, and nothing that was never published or was
//     refused with -CLUSTERDOWN;
//   - publish order: a message acknowledged before another was sent is
//     received first, and all subscribers see common messages in one order
//     (the Raft log's);
//   - no gaps: a subscriber that was never cut off receives every message
//     acknowledged while it listened.
func CheckPubSub(pubs []Op, subs []SubStream) []Violation {
	byPayload := map[string]Op{}
	for _, p := range pubs {
		if p.Kind == KindPublish {
			byPayload[p.Key+"\x00"+p.Value] = p
		}
	}
	var out []Violation
	pos := make([]map[string]int, len(subs))
	for si, s := range subs {
		pos[si] = map[string]int{}
		for i, m := range s.Messages {
			if _, dup := pos[si][m]; dup {
				out = append(out, Violation{Checker: "pubsub", Key: s.Channel,
					Message: fmt.Sprintf("%s received %q twice", s.Subscriber, m)})
				continue
			}
			pos[si][m] = i
			p, ok := byPayload[s.Channel+"\x00"+m]
			switch {
			case !ok:
				out = append(out, Violation{Checker: "pubsub", Key: s.Channel,
					Message: fmt.Sprintf("%s received %q, which was never published", s.Subscriber, m)})
			case p.Status == Failed:
				out = append(out, Violation{Checker: "pubsub", Key: s.Channel, At: p.Call, History: []Op{p},
					Message: fmt.Sprintf("%s received %q, whose PUBLISH was refused", s.Subscriber, m)})
			}
		}
	}
	// Real-time order of acknowledged publishes: nothing received before a
	// message may have been sent after that message was acknowledged.
	for _, s := range subs {
		var latest *Op // the received message invoked last so far
		for _, m := range s.Messages {
			p, ok := byPayload[s.Channel+"\x00"+m]
			if !ok {
				continue
			}
			if p.Status == OK && latest != nil && latest.Call > p.Return {
				out = append(out, Violation{Checker: "pubsub", Key: s.Channel, At: latest.Call, History: []Op{p, *latest},
					Message: fmt.Sprintf("%s received %q before %q, which was acknowledged before it was sent", s.Subscriber, latest.Value, m)})
			}
			if latest == nil || p.Call > latest.Call {
				o := p
				latest = &o
			}
		}
	}
	// One order for everyone: common messages of two streams in the same
	// relative order.
	for i := range subs {
		for j := i + 1; j < len(subs); j++ {
			if subs[i].Channel != subs[j].Channel {
				continue
			}
			last, lastMsg := -1, ""
			for _, m := range subs[j].Messages {
				p, ok := pos[i][m]
				if !ok {
					continue
				}
				if p < last {
					out = append(out, Violation{Checker: "pubsub", Key: subs[i].Channel,
						Message: fmt.Sprintf("%s and %s disagree on the order of %q and %q", subs[i].Subscriber, subs[j].Subscriber, lastMsg, m)})
					break
				}
				last, lastMsg = p, m
			}
		}
	}
	// Gaps on subscribers that were never cut off.
	for si, s := range subs {
		if s.CutOff {
			continue
		}
		for _, p := range pubs {
			if p.Kind != KindPublish || p.Key != s.Channel || p.Status != OK || p.Call < s.From || p.Return > s.To {
				continue
			}
			if _, ok := pos[si][p.Value]; !ok {
				out = append(out, Violation{Checker: "pubsub", Key: s.Channel, At: p.Call, History: []Op{p},
					Message: fmt.Sprintf("%s never received %q, acknowledged while it listened", s.Subscriber, p.Value)})
			}
		}
	}
	return out
}
