package fsm

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Observer is called after every applied command and every restore,
// with a private copy of the new state. It runs on Raft's apply
// goroutine, so it must not block for long and must not call Apply.
type Observer func(s *State)

// FSM is the raft.FSM of the cluster configuration. It is safe for
// concurrent use; State returns a copy.
type FSM struct {
	mu       sync.RWMutex
	state    *State
	observer Observer
}

// New returns an FSM holding an uninitialised state. observer may be
// nil.
func New(observer Observer) *FSM {
	return &FSM{state: &State{Nodes: map[string]*Node{},
		CandidateMap: map[string]string{}}, observer: observer}
}

// State returns a copy of the current state.
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.Clone()
}

// Apply applies one log entry. It returns nil on success and the error
// that refused the command otherwise; a refused command changes
// nothing but still advances Index, so that waits by index work.
func (f *FSM) Apply(l *raft.Log) interface{} {
	cmd, err := DecodeCommand(l.Data)
	f.mu.Lock()
	var next *State
	if err == nil {
		next, err = cmd.ApplyTo(f.state)
	}
	if err != nil {
		next = f.state.Clone()
	}
	next.Index = l.Index
	f.state = next
	f.mu.Unlock()
	f.notify(next)
	return err
}

func (f *FSM) notify(s *State) {
	if f.observer != nil {
		f.observer(s.Clone())
	}
}

// Snapshot captures the state for Raft's snapshotting.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	data, err := f.State().Encode()
	if err != nil {
		return nil, err
	}
	return snapshot(data), nil
}

// Restore replaces the state with a snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	s, err := Decode(data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	f.notify(s)
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
