// Package enroll is the holder's side of Airlock's certificate lifecycle:
// an agent or a connector makes its key on its own host, enrolls with a
// one-time join token, keeps its credential in a folder, and renews it
// over mutual TLS before it expires. It also defines the wire format of
// the edge's enrollment, renewal and trust-bundle endpoints, which the
// edge serves.
//
// A holder's folder (an agent profile, a connector's data folder, mode
// 0700) holds three files, each replaced atomically:
//
//   - identity.pem (0600): the private key, then the certificate chain,
//     leaf first; one file, so that key and certificate change together.
//     curl takes it as --cert.
//   - ca.pem (0644): the trust bundle, every root the deployment trusts.
//   - enrollment.json (0644): the edge's URL and the SPIFFE ID held.
//
// [Enroll] creates the folder and returns a [Holder]; [Load] opens it
// again. A [Renewer] keeps the Holder's certificate fresh: it renews at
// about two thirds of the lifetime ([RenewAt]) and refreshes the trust
// bundle in between. Clients built from [Holder.TLSConfig] or
// [Holder.HTTPClient] pick up each new certificate and bundle on their
// next connection; [Holder.OnChange] tells the rest.
package enroll
