package rapi

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestFailureLimiter_BurstThenRefill(t *testing.T) {
	clk := newClock()
	l := NewFailureLimiter(3, 10*time.Second, 100, clk.now)
	for i := range 3 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("failure %d: refused within the burst", i)
		}
		l.Fail("a")
	}
	ok, wait := l.Allow("a")
	if ok || wait != 10*time.Second {
		t.Fatalf("after burst: got ok=%v wait=%v, want refused for 10s", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another client is refused")
	}
	clk.advance(10 * time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("after one refill: still refused")
	}
	l.Fail("a")
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("after spending the refill: allowed")
	}
}

func TestFailureLimiter_FullTableShares(t *testing.T) {
	clk := newClock()
	l := NewFailureLimiter(1, time.Hour, 2, clk.now)
	l.Fail("a")
	l.Fail("b")
	// The table is full of limited clients: newcomers share one bucket.
	l.Fail("c")
	if ok, _ := l.Allow("d"); ok {
		t.Fatal("newcomer on a full table: allowed after the shared bucket ran out")
	}
	clk.advance(2 * time.Hour)
	if ok, _ := l.Allow("d"); !ok {
		t.Fatal("after refill: newcomer refused")
	}
	if n := len(l.clients); n > 3 {
		t.Fatalf("table has %d entries, want at most max+1", n)
	}
}

func TestFailureLimiter_Concurrent(t *testing.T) {
	l := NewFailureLimiter(5, time.Second, 10, nil)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint(i % 15)
			l.Allow(key)
			l.Fail(key)
		}()
	}
	wg.Wait()
}

func TestClientKey(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:5555":        "127.0.0.1",
		"[::ffff:10.0.0.1]:1":   "10.0.0.1",
		"[2001:db8:1:2:3::4]:1": "2001:db8:1:2::/64",
		"[2001:db8:1:2:9::]:2":  "2001:db8:1:2::/64",
		"garbage":               "garbage",
	}
	for in, want := range cases {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q): got %q, want %q", in, got, want)
		}
	}
}
