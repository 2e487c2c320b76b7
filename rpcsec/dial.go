package rpcsec

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// dials counts Dial calls in this process.
var dials atomic.Uint64

// Dial opens a mutual-TLS 1.3 connection to addr ("ip:port"), presenting
// id's client certificate and asking for alpn, which must be ALPNRPC or
// ALPNRaft. The server must present a certificate signed by one of id's
// CAs for the host part of addr. It fails with ErrALPN if the server
// negotiates another protocol.
//
// In TLS 1.3 the server checks the client after the client considers
// the handshake done, so a refusal shows up as an error on the first
// read.
func Dial(ctx context.Context, addr string, id *Identity,
	alpn string) (*tls.Conn, error) {
	dials.Add(1)
	if id == nil {
		return nil, fmt.Errorf("%w: dialing %q without an identity",
			ErrBadParameter, addr)
	}
	if alpn != ALPNRPC && alpn != ALPNRaft {
		return nil, fmt.Errorf("%w: %q", ErrALPN, alpn)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("rpcsec: dialing %q: %w", addr, err)
	}
	st := id.cur.Load()
	d := &tls.Dialer{Config: &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      st.roots,
		ServerName:   host,
		NextProtos:   []string{alpn},
		Certificates: []tls.Certificate{st.client},
	}}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpcsec: dialing %q: %w", addr, err)
	}
	c := nc.(*tls.Conn)
	if got := c.ConnectionState().NegotiatedProtocol; got != alpn {
		c.Close()
		return nil, fmt.Errorf("%w: %q negotiated %q, want %q",
			ErrALPN, addr, got, alpn)
	}
	return c, nil
}

// DialCount returns how many times Dial has been called in this
// process. Tests use it to show that a normal node never dials.
func DialCount() uint64 { return dials.Load() }

// HTTPClient returns a client for the node RPC whose every connection
// is made by Dial with ALPNRPC; timeout bounds each request, and zero
// means none. Use https URLs.
func HTTPClient(id *Identity, timeout time.Duration) *http.Client {
	t := &http.Transport{
		DialTLSContext: func(ctx context.Context,
			_, addr string) (net.Conn, error) {
			return Dial(ctx, addr, id, ALPNRPC)
		},
		ForceAttemptHTTP2: false,
		IdleConnTimeout:   90 * time.Second,
	}
	return &http.Client{Transport: t, Timeout: timeout}
}
