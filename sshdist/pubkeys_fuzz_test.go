package sshdist

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzParsePubKeys(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte(wantPubLine(f, 2) + wantPubLine(f, 1)))
	f.Fuzz(func(t *testing.T, content []byte) {
		first, err := ParsePubKeys(content)
		if err != nil {
			var le *PubKeysLineError
			if !errors.As(err, &le) || le.Line < 1 || first != nil {
				t.Fatalf("got %v, %v, want nil and a *PubKeysLineError",
					first, err)
			}
			return
		}
		formatted := FormatPubKeys(first)
		second, err := ParsePubKeys(formatted)
		if err != nil {
			t.Fatalf("parsing formatted %q: %v", formatted, err)
		}
		if again := FormatPubKeys(second); !bytes.Equal(again, formatted) {
			t.Errorf("format not stable: got %q, want %q", again, formatted)
		}
		if !sameEntrySet(first, second) {
			t.Errorf("round trip changed the entries: got %v, want %v",
				second, first)
		}
		if n := bytes.Count(formatted, []byte("\n")); n != len(second) {
			t.Errorf("got %d lines for %d entries", n, len(second))
		}
	})
}

// sameEntrySet reports whether a and b hold the same UUID and key
// pairs, ignoring order and repeats.
func sameEntrySet(a, b []PubKeyEntry) bool {
	set := func(es []PubKeyEntry) map[string]bool {
		m := make(map[string]bool)
		for _, e := range es {
			m[e.UUID+" "+string(e.Key.Marshal())] = true
		}
		return m
	}
	sa, sb := set(a), set(b)
	if len(sa) != len(sb) {
		return false
	}
	for k := range sa {
		if !sb[k] {
			return false
		}
	}
	return true
}
