package raftnode

import (
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// echoTransport is a real TCP transport on loopback that answers every
// AppendEntries with success and counts the heartbeats it got.
func echoTransport(t *testing.T) (*raft.NetworkTransport, func() int) {
	t.Helper()
	tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	var mu sync.Mutex
	beats := 0
	go func() {
		for rpc := range tr.Consumer() {
			if a, ok := rpc.Command.(*raft.AppendEntriesRequest); ok && isHeartbeat(a) {
				mu.Lock()
				beats++
				mu.Unlock()
			}
			rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
		}
	}()
	return tr, func() int { mu.Lock(); defer mu.Unlock(); return beats }
}

func TestPacedTransport_SpacesNonVoterHeartbeatsOnly(t *testing.T) {
	peer, beats := echoTransport(t)
	local, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	voters := map[raft.ServerID]bool{"voter": true}
	p := newPacedTransport(local, func(id raft.ServerID) bool { return voters[id] })
	clock := time.Unix(1000, 0)
	var slept []time.Duration
	p.now = func() time.Time { return clock }
	p.sleep = func(d time.Duration) { slept = append(slept, d); clock = clock.Add(d) }

	beat := &raft.AppendEntriesRequest{Term: 3, RPCHeader: raft.RPCHeader{Addr: []byte("x")}}
	entries := &raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 7, PrevLogTerm: 3,
		LeaderCommitIndex: 7}
	send := func(id raft.ServerID, req *raft.AppendEntriesRequest) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := p.AppendEntries(id, peer.LocalAddr(), req, &resp); err != nil || !resp.Success {
			t.Fatalf("AppendEntries to %s: %v (success %v)", id, err, resp.Success)
		}
	}
	for range 3 {
		send("voter", beat)
		send("voter", entries)
		send("normal", entries)
	}
	if len(slept) != 0 {
		t.Fatalf("voter heartbeats and appends were held back: %v", slept)
	}
	send("normal", beat)
	clock = clock.Add(300 * time.Millisecond) // the next one comes early
	send("normal", beat)
	send("normal", beat)
	want := []time.Duration{700 * time.Millisecond, time.Second}
	if !slices.Equal(slept, want) {
		t.Errorf("non-voter heartbeats waited %v, want %v", slept, want)
	}
	if got := beats(); got != 6 {
		t.Errorf("peer got %d heartbeats, want 6 (every one is sent)", got)
	}
}

func TestIsHeartbeat(t *testing.T) {
	tests := []struct {
		req  raft.AppendEntriesRequest
		want bool
	}{
		{raft.AppendEntriesRequest{Term: 1}, true},
		{raft.AppendEntriesRequest{}, false},
		{raft.AppendEntriesRequest{Term: 1, LeaderCommitIndex: 4}, false},
		{raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 4, PrevLogTerm: 1}, false},
		{raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 5}}}, false},
	}
	for i, tt := range tests {
		if got := isHeartbeat(&tt.req); got != tt.want {
			t.Errorf("case %d: isHeartbeat = %v, want %v", i, got, tt.want)
		}
	}
}
