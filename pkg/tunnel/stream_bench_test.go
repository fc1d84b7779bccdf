package tunnel_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/airlockhq/airlock/pkg/tunnel"
)

// Sizes of the exchanges in BenchmarkStreamExchange: about a small MCP
// tools/call and its answer with their HTTP heads.
const (
	benchRequestSize = 300
	benchReplySize   = 300
	// benchStreamParallelism is RunParallel's goroutines per GOMAXPROCS.
	benchStreamParallelism = 25
)

// BenchmarkStreamExchange compares two ways to carry request-response
// exchanges over one QUIC connection with the tunnel's settings:
//
//   - stream-per-request, the tunnel's design: the edge opens a stream,
//     writes the request and its FIN; the connector answers and ends the
//     stream.
//   - pooled-streams: long-lived streams carry one length-prefixed
//     exchange after another, and a caller takes a stream from a pool.
//
// The connector side runs the same code for both: it answers frames until
// the stream ends.
func BenchmarkStreamExchange(b *testing.B) {
	conn := startStreamBench(b)
	modes := []struct {
		name string
		new  func() exchanger
	}{
		{"stream-per-request", func() exchanger { return perRequest{conn} }},
		{"pooled-streams", func() exchanger { return newStreamPool(conn) }},
	}
	for _, m := range modes {
		b.Run(m.name+"/sequential", func(b *testing.B) {
			ex := m.new()
			b.ReportAllocs()
			for b.Loop() {
				exchangeOnce(b, ex)
			}
		})
		b.Run(m.name+"/parallel", func(b *testing.B) {
			ex := m.new()
			b.ReportAllocs()
			b.SetParallelism(benchStreamParallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					exchangeOnce(b, ex)
				}
			})
		})
	}
}

// exchanger makes one request-response exchange.
type exchanger interface {
	exchange(req, reply []byte) error
}

var benchRequest = bytes.Repeat([]byte("q"), benchRequestSize)

func exchangeOnce(b *testing.B, ex exchanger) {
	var reply [benchReplySize]byte
	if err := ex.exchange(benchRequest, reply[:]); err != nil {
		b.Fatal(err)
	}
}

// perRequest opens a stream for every exchange, as the tunnel does.
type perRequest struct{ conn *quic.Conn }

func (p perRequest) exchange(req, reply []byte) error {
	str, err := p.conn.OpenStreamSync(context.Background())
	if err != nil {
		return fmt.Errorf("opening stream: %w", err)
	}
	if err := writeBenchFrame(str, req); err != nil {
		return err
	}
	if err := str.Close(); err != nil {
		return err
	}
	if err := readBenchFrame(str, reply); err != nil {
		return err
	}
	// The answer ends with the stream, as a tunneled response does.
	if n, err := str.Read(reply[:1]); n != 0 || err != io.EOF {
		return fmt.Errorf("reading end of stream: %d bytes, %w", n, err)
	}
	return nil
}

// streamPool keeps streams for many exchanges. A stream whose exchange
// failed is dropped; a pool that is full closes what comes back.
type streamPool struct {
	conn *quic.Conn
	idle chan *quic.Stream
}

func newStreamPool(conn *quic.Conn) *streamPool {
	return &streamPool{conn: conn, idle: make(chan *quic.Stream, 1024)}
}

func (p *streamPool) exchange(req, reply []byte) error {
	var str *quic.Stream
	select {
	case str = <-p.idle:
	default:
		s, err := p.conn.OpenStreamSync(context.Background())
		if err != nil {
			return fmt.Errorf("opening stream: %w", err)
		}
		str = s
	}
	err := writeBenchFrame(str, req)
	if err == nil {
		err = readBenchFrame(str, reply)
	}
	if err != nil {
		str.CancelWrite(tunnel.CodeCancelled)
		str.CancelRead(tunnel.CodeCancelled)
		return err
	}
	select {
	case p.idle <- str:
	default:
		str.Close()
	}
	return nil
}

// writeBenchFrame writes a 4-byte big-endian length and p in one write.
func writeBenchFrame(w io.Writer, p []byte) error {
	buf := make([]byte, 4+len(p))
	binary.BigEndian.PutUint32(buf, uint32(len(p)))
	copy(buf[4:], p)
	_, err := w.Write(buf)
	return err
}

// readBenchFrame reads a frame that must fill p exactly.
func readBenchFrame(r io.Reader, p []byte) error {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return err
	}
	if n := binary.BigEndian.Uint32(head[:]); int(n) != len(p) {
		return fmt.Errorf("frame of %d bytes, want %d", n, len(p))
	}
	_, err := io.ReadFull(r, p)
	return err
}

// serveBenchStream is the connector side: it answers every frame with a
// benchReplySize frame and ends the stream when the request side ends.
func serveBenchStream(str *quic.Stream) {
	defer str.Close()
	req := make([]byte, benchRequestSize)
	reply := bytes.Repeat([]byte("r"), benchReplySize)
	for {
		if err := readBenchFrame(str, req); err != nil {
			return
		}
		if err := writeBenchFrame(str, reply); err != nil {
			return
		}
	}
}

// startStreamBench connects a connector to an edge over QUIC on loopback
// with the tunnel's settings and mutual TLS, starts the connector's
// stream server, and returns the edge's side of the connection, which
// opens the streams as the tunnel's edge does.
func startStreamBench(b *testing.B) *quic.Conn {
	b.Helper()
	cert, pool := selfSignedBenchCert(b)
	edgeTLS := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{tunnel.ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", edgeTLS, tunnel.QUICSettings{}.WithDefaults(tunnel.DefaultEdgeStreams).Config())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	connTLS := &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
		NextProtos:   []string{tunnel.ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	cc, err := quic.DialAddr(ctx, ln.Addr().String(), connTLS, tunnel.QUICSettings{}.WithDefaults(tunnel.DefaultConnectorStreams).Config())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.CloseWithError(tunnel.CodeOK, "") })
	go func() {
		for {
			str, err := cc.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go serveBenchStream(str)
		}
	}()
	ec, err := ln.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return ec
}

// selfSignedBenchCert returns a certificate for 127.0.0.1 that serves
// both as server and client certificate, and a pool that trusts it.
func selfSignedBenchCert(b *testing.B) (tls.Certificate, *x509.CertPool) {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
