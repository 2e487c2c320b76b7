package rpcsec

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestNodeUUID(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://cluster/node")
	tests := []struct {
		name    string
		uris    []*url.URL
		want    string
		wantErr error
	}{
		{"one", []*url.URL{uuidURI(uuidA)}, uuidA, nil},
		{"other schemes ignored",
			[]*url.URL{spiffe, uuidURI(uuidA)}, uuidA, nil},
		{"none", nil, "", ErrNoNodeID},
		{"only other scheme", []*url.URL{spiffe}, "", ErrNoNodeID},
		{"two", []*url.URL{uuidURI(uuidA), uuidURI(uuidB)}, "",
			ErrNoNodeID},
		{"uppercase", []*url.URL{uuidURI(strings.ToUpper(uuidA))}, "",
			ErrNoNodeID},
		{"not a uuid", []*url.URL{uuidURI("node-1")}, "", ErrNoNodeID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NodeUUID(&x509.Certificate{URIs: tt.uris})
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("got %q, %v, want %q, %v",
					got, err, tt.want, tt.wantErr)
			}
		})
	}
}
