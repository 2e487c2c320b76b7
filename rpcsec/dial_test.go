package rpcsec

import (
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/hashicorp/raft"
)

func TestDial_ChecksServerName(t *testing.T) {
	c := newTestCluster(t, net.IPv4(127, 0, 0, 2))
	id := c.mc.identity(t, c.ca.CertPEM)
	before := DialCount()
	_, err := Dial(t.Context(), c.addr(), id, ALPNRPC)
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Errorf("got %v, want x509.HostnameError", err)
	}
	if got := DialCount() - before; got != 1 {
		t.Errorf("DialCount: got +%d, want +1", got)
	}
}

func TestDial_ChecksServerCA(t *testing.T) {
	c := newTestCluster(t, localhost)
	other := newTestCA(t, c.now, day)
	n := newTestNode(t, other, "mc", uuidA, localhost, c.now)
	_, err := Dial(t.Context(), c.addr(), n.identity(t, other.CertPEM),
		ALPNRPC)
	var ue x509.UnknownAuthorityError
	if !errors.As(err, &ue) {
		t.Errorf("got %v, want x509.UnknownAuthorityError", err)
	}
}

func TestDial_RejectsBadArguments(t *testing.T) {
	c := newTestCluster(t, localhost)
	id := c.mc.identity(t, c.ca.CertPEM)
	if _, err := Dial(t.Context(), c.addr(), id, "h2"); !errors.Is(err,
		ErrALPN) {
		t.Errorf("alpn h2: got %v, want ErrALPN", err)
	}
	_, err := Dial(t.Context(), c.addr(), nil, ALPNRPC)
	if !errors.Is(err, ErrBadParameter) {
		t.Errorf("nil identity: got %v, want ErrBadParameter", err)
	}
}

func TestHTTPClient_RPC(t *testing.T) {
	c := newTestCluster(t, localhost)
	srv := &http.Server{Handler: http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				http.Error(w, "no TLS state", http.StatusInternalServerError)
				return
			}
			id, _ := NodeUUID(r.TLS.PeerCertificates[0])
			io.WriteString(w, id)
		})}
	go srv.Serve(c.mux.RPCListener())
	t.Cleanup(func() { srv.Close() })
	url := "https://" + c.addr() + "/ping"

	hc := HTTPClient(c.mc.identity(t, c.ca.CertPEM), wait)
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET as candidate: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != uuidA {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, uuidA)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("got %s, want HTTP/1.1", resp.Proto)
	}

	hc = HTTPClient(c.normal.identity(t, c.ca.CertPEM), wait)
	if resp, err := hc.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("GET as normal node: got %s, want an error", resp.Status)
	}
}

func TestStreamLayer_RaftRPC(t *testing.T) {
	c := newTestCluster(t, localhost)
	target := newTransport(t, c.mux, c.srv.identity(t, c.ca.CertPEM))
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case rpc := <-target.Consumer():
				rpc.Respond(&raft.AppendEntriesResponse{Term: 7}, nil)
			case <-done:
				return
			}
		}
	}()

	for _, tt := range []struct {
		from   *testNode
		wantOK bool
	}{
		{c.mc, true},
		{c.normal, false},
	} {
		t.Run(tt.from.name, func(t *testing.T) {
			id := tt.from.identity(t, c.ca.CertPEM)
			mux, err := Listen("127.0.0.1:0", id, c.adm, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { mux.Close() })
			tr := newTransport(t, mux, id)
			var resp raft.AppendEntriesResponse
			err = tr.AppendEntries("srv", target.LocalAddr(),
				&raft.AppendEntriesRequest{Term: 7}, &resp)
			if ok := err == nil && resp.Term == 7; ok != tt.wantOK {
				t.Errorf("AppendEntries: got term %d, %v; want ok=%v",
					resp.Term, err, tt.wantOK)
			}
			if !tt.wantOK {
				c.log.mustContain(t, "node="+tt.from.uuid,
					string(ReasonUnknownNode))
			}
		})
	}
}

func newTransport(t testing.TB, mux *Mux,
	id *Identity) *raft.NetworkTransport {
	t.Helper()
	tr := raft.NewNetworkTransport(NewStreamLayer(mux, id, nil), 2,
		wait, io.Discard)
	t.Cleanup(func() { tr.Close() })
	return tr
}
