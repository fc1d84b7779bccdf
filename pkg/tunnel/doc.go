// Package tunnel is the wire protocol between an Airlock edge and its
// connectors.
//
// A connector dials the edge over QUIC (RFC 9000) with mutual TLS 1.3
// (RFC 8446) and ALPN [ALPN]. It opens one bidirectional control stream and
// sends a [Hello]; the edge answers with an [Ack] or a [Refusal]. Only after
// the ack does the connector count as connected. Later control messages
// ([Drain]) travel on the same stream.
//
// Every forwarded request is one bidirectional stream opened by the edge. It
// starts with a [StreamHeader] frame naming the resource, followed by one
// HTTP/1.1 request in wire format (RFC 9112). The connector answers with
// one HTTP/1.1 response whose body ends with the stream: a clean end of
// stream ends the body, a stream reset means the response was cut short.
//
// Frames are a 4-byte big-endian length followed by that many bytes of
// JSON; a frame longer than [MaxFrameSize] is a protocol error.
package tunnel
