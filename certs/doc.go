// Package certs is Airlock's certificate authority and the identities it
// vouches for.
//
// The authority is smallstep's embedded authority
// (github.com/smallstep/certificates/authority) with a root and an
// intermediate kept in the edge's data folder. Every leaf certificate names
// exactly one SPIFFE ID in its URI SAN (RFC 5280 section 4.2.1.6), with the
// kind of identity in the path: spiffe://<domain>/<kind>/<name>. The package
// also loads and writes credentials (a chain and its private key) and checks
// the identity a TLS peer presented.
package certs
