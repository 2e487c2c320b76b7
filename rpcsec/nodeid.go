package rpcsec

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

const uuidPrefix = "uuid:"

// NodeUUID returns the node UUID named by a client certificate's
// urn:uuid URI SAN. It returns ErrNoNodeID unless there is exactly one
// such SAN and it holds a lowercase RFC 4122 UUID.
func NodeUUID(cert *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "urn") &&
			strings.HasPrefix(strings.ToLower(u.Opaque), uuidPrefix) {
			ids = append(ids, u.Opaque[len(uuidPrefix):])
		}
	}
	if len(ids) != 1 || !validUUID(ids[0]) {
		return "", fmt.Errorf("%w: %d urn:uuid SANs %q",
			ErrNoNodeID, len(ids), ids)
	}
	return ids[0], nil
}

func uuidURI(id string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: uuidPrefix + id}
}

// validUUID reports whether s is a lowercase 8-4-4-4-12 hex UUID.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !('0' <= c && c <= '9' || 'a' <= c && c <= 'f'):
			return false
		}
	}
	return true
}
