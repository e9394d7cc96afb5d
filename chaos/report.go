package chaos

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// OpStats counts operations by outcome.
type OpStats struct {
	Attempted     int `json:"attempted"`
	OK            int `json:"ok"`
	Failed        int `json:"failed"`
	Indeterminate int `json:"indeterminate"`
}

// Window is a stretch of the run, with the faults that overlapped it.
type Window struct {
	Start  time.Duration `json:"start"`
	End    time.Duration `json:"end"`
	Length time.Duration `json:"length"`
	During []string      `json:"during,omitempty"`
}

// Report is the outcome of a run. Times are offsets from the moment the
// cluster was up (JSON: nanoseconds).
type Report struct {
	Seed     uint64        `json:"seed"`
	Nodes    int           `json:"nodes"`
	Duration time.Duration `json:"duration"`
	Schedule []string      `json:"schedule"`
	Faults   []FaultRecord `json:"faults"`
	// Ops by kind, and "all"; final read-back included.
	Ops    map[string]*OpStats `json:"ops"`
	Errors map[string]int      `json:"errors"` // by error class
	// LongestUnavailable is the longest time in which no write was
	// acknowledged anywhere.
	LongestUnavailable Window                `json:"longest_unavailable"`
	Linearizability    map[string]*LinReport `json:"linearizability"`
	Locks              *LockReport           `json:"locks,omitempty"`
	PubSub             *PubSubReport         `json:"pubsub,omitempty"`
	Notes              []string              `json:"notes,omitempty"`
	// ByWorkload counts violations per workload (and "availability").
	ByWorkload  map[string]int       `json:"violations_by_workload"`
	Violations  []Violation          `json:"violations"`
	visual      map[string]linVisual // file name → porcupine data
	workloadEnd time.Duration
}

type linVisual struct {
	model porcupine.Model
	info  porcupine.LinearizationInfo
}

func newReport(cfg Config, kinds []string, records []FaultRecord, ops []Op, end time.Duration) *Report {
	r := &Report{Seed: cfg.Seed, Nodes: cfg.Nodes, Duration: cfg.Duration, Schedule: kinds,
		Ops: map[string]*OpStats{"all": {}}, Errors: map[string]int{},
		Linearizability: map[string]*LinReport{}, visual: map[string]linVisual{}, workloadEnd: end,
		ByWorkload: map[string]int{"availability": 0}}
	var writes []Op
	for _, op := range ops {
		if op.Kind == KindLockCrash {
			continue
		}
		for _, k := range []string{"all", op.Kind} {
			s := r.Ops[k]
			if s == nil {
				s = &OpStats{}
				r.Ops[k] = s
			}
			s.Attempted++
			switch op.Status {
			case OK:
				s.OK++
			case Failed:
				s.Failed++
			default:
				s.Indeterminate++
			}
		}
		if c := ErrorClass(op.Err); c != "" {
			r.Errors[c]++
		}
		if op.IsWrite() && op.Status == OK && op.Call < end {
			writes = append(writes, op)
		}
	}
	sort.Slice(writes, func(i, j int) bool { return writes[i].Return < writes[j].Return })
	for i := range records {
		rec := &records[i]
		for _, w := range writes {
			if w.Call >= rec.Start {
				rec.FirstWrite = w.Return - rec.Start
				break
			}
		}
	}
	r.Faults = records
	prev := time.Duration(0)
	for _, w := range append(writes, Op{Return: end}) {
		if gap := w.Return - prev; gap > r.LongestUnavailable.Length {
			r.LongestUnavailable = Window{Start: prev, End: w.Return, Length: gap}
		}
		prev = max(prev, w.Return)
	}
	lu := &r.LongestUnavailable
	for _, rec := range records {
		recEnd := max(rec.Recovered, rec.Healed)
		if rec.Start < lu.End && recEnd > lu.Start {
			lu.During = append(lu.During, rec.Kind)
		}
	}
	return r
}

// add merges one workload's findings.
func (r *Report) add(name string, f Findings) {
	r.Notes = append(r.Notes, f.Notes...)
	if f.Lin != nil {
		r.Linearizability[name] = f.Lin
		for k, info := range f.Lin.Info {
			file := fmt.Sprintf("lin-%s-%s.html", f.Lin.Model, sanitize(k))
			r.visual[file] = linVisual{modelOf(f.Lin.Model), info}
			for i := range f.Violations {
				if f.Violations[i].Key == k && strings.HasPrefix(f.Violations[i].Checker, "linearizability") {
					f.Violations[i].File = file
				}
			}
		}
	}
	if f.Lock != nil {
		r.Locks = f.Lock
	}
	if f.PubSub != nil {
		r.PubSub = f.PubSub
	}
	r.ByWorkload[name] += len(f.Violations)
	r.Violations = append(r.Violations, f.Violations...)
}

// addViolation records one violation found outside the workloads' checks.
func (r *Report) addViolation(name string, v Violation) {
	r.ByWorkload[name]++
	r.Violations = append(r.Violations, v)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

// Text renders the report for people.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redraft chaos run: %d nodes, %v, seed %d\n", r.Nodes, r.Duration, r.Seed)
	fmt.Fprintf(&b, "schedule: %s\n\n", strings.Join(r.Schedule, ", "))
	kinds := slices.Sorted(maps.Keys(r.Ops))
	fmt.Fprintf(&b, "%-14s %9s %9s %9s %9s\n", "operations", "attempted", "ok", "failed", "indeterm.")
	for _, k := range kinds {
		s := r.Ops[k]
		fmt.Fprintf(&b, "%-14s %9d %9d %9d %9d\n", k, s.Attempted, s.OK, s.Failed, s.Indeterminate)
	}
	if len(r.Errors) > 0 {
		var es []string
		for k, v := range r.Errors {
			es = append(es, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(es)
		fmt.Fprintf(&b, "errors: %s\n", strings.Join(es, " "))
	}
	fmt.Fprintf(&b, "\nfaults (start → healed → recovered; first write = start → first acknowledged write sent after start):\n")
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  %-20s %-10s leader %-4s %8s → %8s → %8s  first write %s\n", f.Kind, strings.Join(f.Nodes, ","), f.Leader,
			secs(f.Start), secs(f.Healed), secs(f.Recovered), secs(f.FirstWrite))
		if f.Note != "" {
			fmt.Fprintf(&b, "      %s\n", strings.TrimSpace(f.Note))
		}
		if f.Err != "" {
			fmt.Fprintf(&b, "      ERROR: %s\n", f.Err)
		}
	}
	var fo []string
	for _, f := range r.Faults {
		if f.Kind == FaultKillLeader || f.Kind == FaultStopLeader {
			fo = append(fo, secs(f.FirstWrite))
		}
	}
	if len(fo) > 0 {
		fmt.Fprintf(&b, "failover after leader kill/stop (kill → first acknowledged write): %s\n", strings.Join(fo, ", "))
	}
	lu := r.LongestUnavailable
	fmt.Fprintf(&b, "longest time without an acknowledged write: %s (%s..%s) during %v\n\n", secs(lu.Length), secs(lu.Start), secs(lu.End), lu.During)
	names := slices.Sorted(maps.Keys(r.Linearizability))
	for _, k := range names {
		l := r.Linearizability[k]
		fmt.Fprintf(&b, "linearizability %-11s %d keys, %d ops checked, %d violations, %d inconclusive\n", l.Model, l.Keys, l.Ops, len(l.Violations), len(l.Inconclusive))
	}
	if l := r.Locks; l != nil {
		causes := map[string]time.Duration{}
		counts := map[string]int{}
		for _, d := range l.DoubleHolds {
			causes[d.Cause] += d.End - d.Start
			counts[d.Cause]++
		}
		fmt.Fprintf(&b, "locks: %d acquisitions, %d refreshes (max GET→EXPIRE gap %v), GET→EXPIRE races: %d possible, %d certain\n",
			l.Acquisitions, l.Refreshes, l.MaxGetExpire, l.RacesPossible, l.RacesCertain)
		for c, d := range causes {
			fmt.Fprintf(&b, "  two clients believed they held the lock: %d times, %s in all, cause: %s\n", counts[c], secs(d), c)
		}
		for _, t := range l.Takeovers {
			taken := "never"
			if t.TakenAt > 0 {
				taken = fmt.Sprintf("by %s at %s", t.By, secs(t.TakenAt))
			}
			fmt.Fprintf(&b, "  holder %s died at %s; lease ran out by %s; taken %s: unowned %s past the lease (ttl %v)\n",
				t.Holder, secs(t.Crash), secs(t.ExpiresBy), taken, secs(t.Unowned), t.TTL)
		}
	}
	if p := r.PubSub; p != nil {
		fmt.Fprintf(&b, "pubsub: %d channels, %d published (%d acknowledged), %d subscriber connections (%d broke), %d streams (%d cut off), %d messages received, %d acknowledged messages gap-checked, %d violations\n",
			p.Channels, p.Published, p.Acked, p.Connections, p.Broken, p.Streams, p.CutOff, p.Received, p.GapChecked, p.Violations)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if len(r.ByWorkload) > 0 {
		names := slices.Sorted(maps.Keys(r.ByWorkload))
		var parts []string
		for _, k := range names {
			parts = append(parts, fmt.Sprintf("%s=%d", k, r.ByWorkload[k]))
		}
		fmt.Fprintf(&b, "\nviolations by workload: %s", strings.Join(parts, " "))
	}
	fmt.Fprintf(&b, "\nVIOLATIONS: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "%s\n", v)
	}
	return b.String()
}

// WriteFiles writes report.txt, report.json, history.jsonl and a porcupine
// visualization for each linearizability violation into dir.
func (r *Report) WriteFiles(dir string, ops []Op) error {
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(r.Text()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), js, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return err
	}
	if err := WriteJSONL(f, ops); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for name, v := range r.visual {
		if err := porcupine.VisualizePath(v.model, v.info, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}
