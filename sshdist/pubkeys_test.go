package sshdist

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// wantPubLine is the ganeti_pub_keys line FormatPubKeys writes for n.
func wantPubLine(tb testing.TB, n byte) string {
	tb.Helper()
	return seededUUID(n) + " " + keyText(seededKey(tb, n)) + "\n"
}

func seededEntry(tb testing.TB, n byte) PubKeyEntry {
	tb.Helper()
	return PubKeyEntry{UUID: seededUUID(n), Key: seededKey(tb, n)}
}

func sameEntries(a, b []PubKeyEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UUID != b[i].UUID ||
			!bytes.Equal(a[i].Key.Marshal(), b[i].Key.Marshal()) {
			return false
		}
	}
	return true
}

func TestParsePubKeys_Accepts(t *testing.T) {
	k1 := keyText(seededKey(t, 1))
	u1 := seededUUID(1)
	tests := []struct {
		name, in string
		want     []PubKeyEntry
	}{
		{"empty", "", nil},
		{"blank lines", "\n  \n\t\r\n", nil},
		{"one", u1 + " " + k1 + "\n", []PubKeyEntry{seededEntry(t, 1)}},
		{"no final newline", u1 + " " + k1, []PubKeyEntry{seededEntry(t, 1)}},
		{"crlf and tabs", u1 + "\t " + k1 + "\r\n",
			[]PubKeyEntry{seededEntry(t, 1)}},
		{"comment ignored", u1 + " " + k1 + " root@node1\n",
			[]PubKeyEntry{seededEntry(t, 1)}},
		{"file order kept", wantPubLine(t, 2) + "\n" + wantPubLine(t, 1),
			[]PubKeyEntry{seededEntry(t, 2), seededEntry(t, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePubKeys([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParsePubKeys: %v", err)
			}
			if !sameEntries(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParsePubKeys_RejectsWithLineNumber(t *testing.T) {
	k1 := keyText(seededKey(t, 1))
	good := wantPubLine(t, 2)
	tests := []struct {
		name, bad string
	}{
		{"uppercase uuid", strings.ToUpper(seededUUID(10)) + " " + k1},
		{"short uuid", "1234 " + k1},
		{"leading space", " " + seededUUID(1) + " " + k1},
		{"no key", seededUUID(1)},
		{"no key after space", seededUUID(1) + "  "},
		{"bad base64", seededUUID(1) + " ssh-ed25519 !!!"},
		{"type mismatch", seededUUID(1) + " ssh-rsa " +
			strings.Fields(k1)[1]},
		{"options", seededUUID(1) + " restrict " + k1},
		{"comment line", "# " + seededUUID(1) + " " + k1},
		{"key first", k1 + " " + seededUUID(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := good + "\n" + tt.bad + "\n" + good
			got, err := ParsePubKeys([]byte(in))
			var le *PubKeysLineError
			if !errors.As(err, &le) {
				t.Fatalf("got %v, %v, want a *PubKeysLineError", got, err)
			}
			if le.Line != 3 {
				t.Errorf("got line %d, want 3", le.Line)
			}
			if got != nil {
				t.Errorf("got %d entries, want none", len(got))
			}
		})
	}
}

func TestFormatPubKeys_SortsAndDeduplicates(t *testing.T) {
	k1, k2 := seededKey(t, 1), seededKey(t, 2)
	u1, u2 := seededUUID(1), seededUUID(2)
	// Two keys for one node come out in wire-encoding order.
	lo, hi := k1, k2
	if bytes.Compare(k1.Marshal(), k2.Marshal()) > 0 {
		lo, hi = k2, k1
	}
	entries := []PubKeyEntry{
		{u2, k2}, {u1, hi}, {u1, lo}, {u2, k2}, {u1, hi},
		{"BAD", k1}, {u1, nil},
	}
	want := u1 + " " + keyText(lo) + "\n" + u1 + " " + keyText(hi) + "\n" +
		u2 + " " + keyText(k2) + "\n"
	if got := FormatPubKeys(entries); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := FormatPubKeys(nil); len(got) != 0 {
		t.Errorf("nil entries: got %q, want empty", got)
	}
}

func TestReadPubKeys_MissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ganeti_pub_keys")
	got, err := ReadPubKeys(path)
	if !errors.Is(err, ErrNoPubKeysFile) || got != nil {
		t.Errorf("got %v, %v, want nil, ErrNoPubKeysFile", got, err)
	}
}

func TestReadPubKeys_BadLineNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ganeti_pub_keys")
	writeTestFile(t, path, wantPubLine(t, 1)+"junk\n", 0o600)
	_, err := ReadPubKeys(path)
	var le *PubKeysLineError
	if !errors.As(err, &le) || le.Path != path || le.Line != 2 {
		t.Fatalf("got %v, want a *PubKeysLineError for %q line 2", err, path)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("got message %q, want it to name %q", err, path)
	}
}

func TestReadPubKeys_RefusesDirectory(t *testing.T) {
	_, err := ReadPubKeys(t.TempDir())
	if !errors.Is(err, ErrNotRegularFile) {
		t.Errorf("got %v, want ErrNotRegularFile", err)
	}
}

func TestWritePubKeys_RoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lib", "ganeti_pub_keys")
	entries := []PubKeyEntry{seededEntry(t, 3), seededEntry(t, 1),
		seededEntry(t, 3)}
	if err := WritePubKeys(path, entries); err != nil {
		t.Fatalf("WritePubKeys: %v", err)
	}
	assertFile(t, path, wantPubLine(t, 1)+wantPubLine(t, 3), 0o600)
	got, err := ReadPubKeys(path)
	if err != nil {
		t.Fatalf("ReadPubKeys: %v", err)
	}
	want := []PubKeyEntry{seededEntry(t, 1), seededEntry(t, 3)}
	if !sameEntries(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestWritePubKeys_RejectsInvalidEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ganeti_pub_keys")
	writeTestFile(t, path, wantPubLine(t, 1), 0o600)
	bad := []PubKeyEntry{
		{UUID: seededUUID(2)},
		{UUID: seededUUID(2) + "\n" + wantPubLine(t, 9), Key: seededKey(t, 2)},
	}
	for _, e := range bad {
		err := WritePubKeys(path, []PubKeyEntry{seededEntry(t, 1), e})
		if !errors.Is(err, ErrInvalidPubKeyEntry) {
			t.Errorf("entry %q: got %v, want ErrInvalidPubKeyEntry", e.UUID, err)
		}
	}
	assertFile(t, path, wantPubLine(t, 1), 0o600)
}

func TestKeysFor_SelectsNode(t *testing.T) {
	entries := []PubKeyEntry{seededEntry(t, 1), seededEntry(t, 2),
		{UUID: seededUUID(1), Key: seededKey(t, 5)}, seededEntry(t, 1),
		{UUID: seededUUID(1)}}
	tests := []struct {
		uuid string
		want []ssh.PublicKey
	}{
		{seededUUID(1), []ssh.PublicKey{seededKey(t, 1), seededKey(t, 5)}},
		{seededUUID(2), []ssh.PublicKey{seededKey(t, 2)}},
		{seededUUID(3), nil},
	}
	for _, tt := range tests {
		t.Run(tt.uuid, func(t *testing.T) {
			got := KeysFor(entries, tt.uuid)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i].Marshal(), tt.want[i].Marshal()) {
					t.Errorf("key %d: got %s, want %s", i,
						keyText(got[i]), keyText(tt.want[i]))
				}
			}
		})
	}
}

func TestWritePubKeys_ReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ganeti_pub_keys")
	writeTestFile(t, path, "old\n", 0o644)
	if err := WritePubKeys(path, []PubKeyEntry{seededEntry(t, 1)}); err != nil {
		t.Fatalf("WritePubKeys: %v", err)
	}
	assertFile(t, path, wantPubLine(t, 1), 0o600)
	names, err := os.ReadDir(dir)
	if err != nil || len(names) != 1 {
		t.Errorf("got %d files (err %v), want only the keys file", len(names), err)
	}
}
