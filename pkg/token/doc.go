// Package token issues and verifies Airlock's JWTs (RFC 7519, with the
// practices of RFC 8725) with golang-jwt: access tokens that agents get
// from the edge's OAuth 2.1 token endpoint, bound to their certificate
// (RFC 8705) and scoped to MCP resources, methods and tools (see
// [Scope]); and identity assertions that the edge signs for every request
// it forwards, so that connectors and upstream servers learn who asked
// and what exactly was authorized, without ever seeing the agent's token.
//
// Keys are ES256 or EdDSA, each with a kid and pinned to its algorithm;
// a [KeySet] keeps them in the edge's store and publishes them as a JWKS
// until everything they signed has expired. A [Verifier] refuses tokens
// that choose their own keys (jku, x5u, jwk, x5c headers), tokens of the
// wrong typ, and anything past its limits ([MaxTokenBytes],
// [MaxLeeway]). [Transport] is the agent side: it fetches, caches and
// refreshes tokens per MCP endpoint.
package token
