package sshdist

import (
	"bytes"
	"slices"
	"testing"
)

// fuzzKeys returns the keys FuzzSetManagedKeys requests for mask: bit
// 0 asks for node 1's key, bit 1 for node 2's, bit 2 for node 1's key
// again under node 3's UUID, and bit 3 reverses the order.
func fuzzKeys(tb testing.TB, mask uint8) []ManagedKey {
	tb.Helper()
	all := []ManagedKey{seededManaged(tb, 1), seededManaged(tb, 2),
		{UUID: seededUUID(3), Key: seededKey(tb, 1)}}
	var keys []ManagedKey
	for i, k := range all {
		if mask&(1<<i) != 0 {
			keys = append(keys, k)
		}
	}
	if mask&8 != 0 {
		slices.Reverse(keys)
	}
	return keys
}

// wantManagedSet is keys without repeated keys, first UUID winning.
func wantManagedSet(keys []ManagedKey) []ManagedKey {
	var out []ManagedKey
	seen := make(map[string]bool)
	for _, k := range keys {
		if w := string(k.Key.Marshal()); !seen[w] {
			seen[w] = true
			out = append(out, k)
		}
	}
	return out
}

// foreignLines returns content's lines that are not managed.
func foreignLines(content []byte) [][]byte {
	var out [][]byte
	for _, l := range splitLines(content) {
		if _, ok := parseManaged(l); !ok {
			out = append(out, l)
		}
	}
	return out
}

func FuzzSetManagedKeys(f *testing.F) {
	f.Add([]byte(""), uint8(1))
	f.Add([]byte("restrict "+wantManaged(f, 2)+"# x\r\nno newline"), uint8(13))
	f.Fuzz(func(t *testing.T, content []byte, mask uint8) {
		keys := fuzzKeys(t, mask)
		out, changed, err := SetManagedKeys(content, keys)
		if err != nil {
			t.Fatalf("SetManagedKeys: %v", err)
		}
		if changed != !bytes.Equal(out, content) {
			t.Errorf("got changed=%v for %q -> %q", changed, content, out)
		}
		checkForeignKept(t, content, out)
		checkManagedSet(t, ManagedKeys(out), wantManagedSet(keys))

		again, changed, err := SetManagedKeys(out, keys)
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Errorf("second apply: got %q changed=%v err=%v, want %q "+
				"unchanged", again, changed, err, out)
		}
	})
}

// checkForeignKept checks that out holds in's foreign lines, in order
// and byte for byte; only an unterminated last line of in may have
// gained its "\n".
func checkForeignKept(tb testing.TB, in, out []byte) {
	tb.Helper()
	before, after := foreignLines(in), foreignLines(out)
	if len(before) != len(after) {
		tb.Fatalf("got %d foreign lines, want %d\nin:  %q\nout: %q",
			len(after), len(before), in, out)
	}
	for i := range before {
		if bytes.Equal(before[i], after[i]) {
			continue
		}
		last := i == len(before)-1 && !bytes.HasSuffix(in, []byte("\n"))
		grew := bytes.Equal(append(bytes.Clone(before[i]), '\n'), after[i])
		if !last || !grew || !bytes.HasSuffix(in, before[i]) {
			tb.Errorf("foreign line %d: got %q, want %q", i, after[i], before[i])
		}
	}
}

func checkManagedSet(tb testing.TB, got, want []ManagedKey) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("got %d managed keys, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].UUID != want[i].UUID ||
			!bytes.Equal(got[i].Key.Marshal(), want[i].Key.Marshal()) {
			tb.Errorf("managed key %d: got %s %s, want %s %s", i,
				got[i].UUID, keyText(got[i].Key), want[i].UUID,
				keyText(want[i].Key))
		}
	}
}
