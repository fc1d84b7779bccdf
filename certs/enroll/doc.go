// Package enroll is the holder's side of Airlock's certificate lifecycle:
// an agent or a connector makes its key on its own host, enrolls with a
// one-time join token, keeps its credential in a folder, and renews it
// over mutual TLS before it expires. It also defines the wire format of
// the edge's enrollment, renewal and trust-bundle endpoints, which the
// edge serves.
package enroll
