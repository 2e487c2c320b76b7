package rpcsec

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// StreamLayer carries the Raft transport over a Mux: it accepts the
// admitted ALPNRaft connections and dials peers with Dial. It
// implements raft.StreamLayer.
type StreamLayer struct {
	net.Listener
	id        *Identity
	advertise net.Addr
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// NewStreamLayer returns a StreamLayer on mux.RaftListener() that dials
// as id. advertise is the address other nodes reach this one at; nil
// means the Mux's own address.
func NewStreamLayer(mux *Mux, id *Identity,
	advertise net.Addr) *StreamLayer {
	if advertise == nil {
		advertise = mux.Addr()
	}
	return &StreamLayer{
		Listener:  mux.RaftListener(),
		id:        id,
		advertise: advertise,
	}
}

// Dial connects to the Raft transport of the node at address, giving up
// after timeout (zero or less means no limit).
func (s *StreamLayer) Dial(address raft.ServerAddress,
	timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return Dial(ctx, string(address), s.id, ALPNRaft)
}

// Addr returns the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }
