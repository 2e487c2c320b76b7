// Package rpcsec is the gate on every TLS port of the node daemon.
//
// The cluster has one certificate authority. Each node holds a server
// certificate (its name and primary IP) and a client certificate that
// names its UUID in a urn:uuid URI SAN; both keys are made on the node
// and only their CSRs travel. The replicated config holds the candidate
// map, node UUID -> digest of that node's client certificate, for the
// master and the master candidates only.
//
// A daemon port admits a client only if its certificate chains to the
// cluster CA, is valid now, and its digest equals the candidate-map
// entry of the UUID it names. The check runs inside the TLS handshake
// (on resumed sessions too), so a refused client never gets a request
// read. When the map changes, admitted connections whose peer lost its
// entry are closed at once: a demoted or removed candidate keeps no
// open channel. Only TLS 1.3 is spoken.
//
// One port carries both the node RPC (HTTP/1.1) and the Raft transport;
// ALPN picks the protocol after admission.
package rpcsec
