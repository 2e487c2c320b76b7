package sshdist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// newTestPool returns a Pool of m's client, closed when the test ends.
func newTestPool(t testing.TB, m *testMaster, mod func(*ClientConfig)) *Pool {
	t.Helper()
	p := NewPool(m.client(t, mod), 0)
	t.Cleanup(p.Close)
	return p
}

// helperPIDs lists the running `--serve` helpers of host h: processes
// whose environment holds h's GANETI_ROOT and whose arguments end in
// --serve.
func helperPIDs(t testing.TB, h *sshdHost) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("GANETI_ROOT=" + h.Root + "\x00")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		env, err1 := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		cmd, err2 := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err1 != nil || err2 != nil {
			continue // gone, or not ours to read
		}
		if bytes.Contains(env, want) && bytes.HasSuffix(cmd, []byte("--serve\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitHelpers polls until h runs n helpers.
func waitHelpers(t testing.TB, h *sshdHost, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := helperPIDs(t, h)
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s runs %d helpers %v, want %d", h.Name, len(got), got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// warmPool starts one host and a pool that has updated it once, and
// returns them with the request it sent.
func warmPool(t *testing.T) (*testMaster, *sshdHost, *Pool, *Session, *Request) {
	t.Helper()
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	p := newTestPool(t, m, nil)
	s := p.NewSession()
	t.Cleanup(s.Close)
	req := &Request{Cluster: testCluster, Report: true}
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatal(err)
	}
	return m, h, p, s, req
}

func mustFanOut(t testing.TB, s *Session, targets []Target, req *Request) {
	t.Helper()
	for _, r := range s.FanOut(context.Background(), "test", targets,
		func(Target) *Request { return req }) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Target.Name, r.Err)
		}
	}
}

func TestPool_OneConnectionAndHelperPerHostAcrossSessions(t *testing.T) {
	m := newTestMaster(t)
	hosts := newHosts(t, m, 2)
	p := newTestPool(t, m, nil)
	targets := []Target{target(hosts[0]), target(hosts[1])}
	for i := range 3 {
		s := p.NewSession()
		mustFanOut(t, s, targets, &Request{Cluster: testCluster,
			Files: []File{{Name: "ca.pem", Data: fmt.Sprint("CA", i)}}})
		s.Close()
	}
	for _, h := range hosts {
		if got, _ := os.ReadFile(h.path(StateDir + "/ca.pem")); string(got) != "CA2" {
			t.Errorf("%s: ca.pem %q, want CA2", h.Name, got)
		}
		waitHelpers(t, h, 1)
	}
	if p.Dials() != 2 || p.Helpers() != 2 {
		t.Errorf("got %d dials and %d helpers for 3 sessions on 2 hosts, "+
			"want 2 and 2", p.Dials(), p.Helpers())
	}
}

func TestPool_RemoteErrorKeepsTheHelper(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	p := newTestPool(t, m, nil)
	s := p.NewSession()
	defer s.Close()
	if err := os.MkdirAll(h.path(StateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.path(StateDir+"/node.json"),
		[]byte(`{"cluster":"other"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Update(context.Background(), target(h),
		&Request{Cluster: testCluster, Reset: true})
	var remErr *RemoteError
	if !errors.As(err, &remErr) || !bytes.Contains([]byte(remErr.Msg),
		[]byte(ErrWrongCluster.Error())) {
		t.Fatalf("got %v, want the helper's wrong-cluster error", err)
	}
	if _, err := s.Update(context.Background(), target(h),
		&Request{Cluster: "other", Report: true}); err != nil {
		t.Fatalf("next request: %v", err)
	}
	if p.Helpers() != 1 {
		t.Errorf("got %d helpers, want the first one reused", p.Helpers())
	}
}

func TestPool_KilledHelperIsReplacedOnTheSameConnection(t *testing.T) {
	_, h, p, s, req := warmPool(t)
	pids := helperPIDs(t, h)
	if len(pids) != 1 {
		t.Fatalf("got helpers %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitHelpers(t, h, 0)
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatalf("Update after the helper was killed: %v", err)
	}
	if p.Dials() != 1 || p.Helpers() != 2 {
		t.Errorf("got %d dials, %d helpers; want 1 and 2", p.Dials(), p.Helpers())
	}
}

func TestPool_DroppedConnectionIsRedialled(t *testing.T) {
	_, h, p, s, req := warmPool(t)
	p.mu.Lock()
	p.conns[h.Addr].client.Conn.Close() // as if the host had gone away
	p.mu.Unlock()
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatalf("Update after the connection dropped: %v", err)
	}
	if p.Dials() != 2 {
		t.Errorf("got %d dials, want 2", p.Dials())
	}
}

func TestPool_UnpinnedHostKeyIsNotReused(t *testing.T) {
	m, h, p, s, req := warmPool(t)
	// The host is removed from the cluster: its key leaves known_hosts.
	if err := RemoveKnownHost(m.knownHosts, h.Addr); err != nil {
		t.Fatal(err)
	}
	_, err := s.Update(context.Background(), target(h), req)
	var hkErr *HostKeyError
	if !errors.As(err, &hkErr) || !hkErr.Unknown() {
		t.Fatalf("got %v, want an unknown-host-key refusal", err)
	}
	waitHelpers(t, h, 0)

	// Re-keyed and pinned again: a new connection under the new key.
	h.RegenerateHostKey()
	m.trust(t, h)
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatalf("Update after re-pinning: %v", err)
	}
	if p.Dials() != 3 {
		t.Errorf("got %d dials, want 3 (first, refused, re-pinned)", p.Dials())
	}
}

func TestPool_CloseEndsHelpersAndRefusesUpdates(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	p := newTestPool(t, m, nil)
	s := p.NewSession()
	req := &Request{Cluster: testCluster, Report: true}
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatal(err)
	}
	waitHelpers(t, h, 1)
	p.Close()
	waitHelpers(t, h, 0)
	if _, err := s.Update(context.Background(), target(h), req); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("after Close: got %v, want ErrPoolClosed", err)
	}
	s.Close()
	if _, err := s.Update(context.Background(), target(h), req); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("after the session's Close: got %v, want ErrSessionClosed", err)
	}
}

func TestPool_IdleConnectionsAreClosed(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	p := NewPool(m.client(t, nil), 200*time.Millisecond)
	defer p.Close()
	s := p.NewSession()
	defer s.Close()
	req := &Request{Cluster: testCluster, Report: true}
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatal(err)
	}
	waitHelpers(t, h, 0) // the pool closed the idle connection
	if _, err := s.Update(context.Background(), target(h), req); err != nil {
		t.Fatal(err)
	}
	if p.Dials() != 2 {
		t.Errorf("got %d dials, want 2", p.Dials())
	}
}

func TestPool_HelperThatCannotStartIsARemoteError(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	p := newTestPool(t, m, func(c *ClientConfig) {
		c.RemoteCommand = "echo broken >&2; exit 3;"
	})
	s := p.NewSession()
	defer s.Close()
	_, err := s.Update(context.Background(), target(h),
		&Request{Cluster: testCluster})
	var remErr *RemoteError
	if !errors.As(err, &remErr) || !bytes.Contains([]byte(remErr.Msg), []byte("broken")) {
		t.Errorf("got %v, want *RemoteError with the helper's stderr", err)
	}
}

func TestPool_OpTimeoutDropsAHungHost(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	p := newTestPool(t, m, func(c *ClientConfig) {
		c.RemoteCommand, c.OpTimeout = "sleep 30;", 500*time.Millisecond
	})
	s := p.NewSession()
	defer s.Close()
	_, err := s.Update(context.Background(), target(h), &Request{Cluster: testCluster})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	p.mu.Lock()
	n := len(p.conns)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("the hung host's connection is still pooled")
	}
}

func TestPool_HelperWithoutServeFallsBackToOneShot(t *testing.T) {
	m := newTestMaster(t)
	h := newHosts(t, m, 1)[0]
	// An older ganeti-node: the flag is unknown, the one-shot works.
	old := `old() { if [ "$1" = --serve ]; then ` +
		`echo "flag provided but not defined: -serve" >&2; exit 2; fi; ` +
		helperCommand(t) + `; }; old`
	p := newTestPool(t, m, func(c *ClientConfig) { c.RemoteCommand = old })
	s := p.NewSession()
	defer s.Close()
	for i := range 3 {
		req := &Request{Cluster: testCluster,
			Files: []File{{Name: "ca.pem", Data: fmt.Sprint("CA", i)}}}
		if _, err := s.Update(context.Background(), target(h), req); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	if got, _ := os.ReadFile(h.path(StateDir + "/ca.pem")); string(got) != "CA2" {
		t.Errorf("ca.pem %q, want CA2", got)
	}
	if p.Dials() != 1 || p.Helpers() != 1 {
		t.Errorf("got %d dials, %d serve attempts; want 1 and 1", p.Dials(), p.Helpers())
	}
}
