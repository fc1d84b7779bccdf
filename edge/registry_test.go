package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/quic-go/quic-go"
)

// quicConns returns two client connections to a QUIC listener on
// loopback: one open, one already closed. A link's usable check reads the
// connection's context, which only a real connection has.
func quicConns(t *testing.T) (open, closed *quic.Conn) {
	t.Helper()
	ln, err := quic.ListenAddr("127.0.0.1:0", selfSignedTLS(t), nil)
	if err != nil {
		t.Fatalf("listening for QUIC: %v", err)
	}
	t.Cleanup(func() { ln.Close() })

	dial := func() *quic.Conn {
		tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"test"}}
		c, err := quic.DialAddr(t.Context(), ln.Addr().String(), tc, nil)
		if err != nil {
			t.Fatalf("dialing QUIC: %v", err)
		}
		t.Cleanup(func() { c.CloseWithError(0, "") })
		return c
	}
	open, closed = dial(), dial()
	closed.CloseWithError(0, "closed for the test")
	return open, closed
}

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"test"}}
}

// newLink returns a link of connector/instance serving resources over
// conn, with inFlight requests in flight.
func newLink(
	conn *quic.Conn,
	connector, instance string,
	inFlight int64,
	resources ...string,
) *link {
	l := &link{conn: conn, connector: connector, instance: instance, resources: resources}
	l.inFlight.Store(inFlight)
	return l
}

// linkNames names links by connector/instance, for diffs.
func linkNames(ls []*link) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.connector+"/"+l.instance)
	}
	return out
}

func TestRegistryPickLeastInFlight(t *testing.T) {
	open, closed := quicConns(t)
	draining := newLink(open, "d", "i1", 0, "files")
	draining.draining.Store(true)
	tests := []struct {
		name  string
		links []*link
		want  string // connector/instance; empty means nil
	}{
		{name: "no links", want: ""},
		{
			name: "fewest in flight wins",
			links: []*link{
				newLink(open, "a", "i1", 3, "files"),
				newLink(open, "b", "i1", 1, "files"),
				newLink(open, "c", "i1", 2, "files"),
			},
			want: "b/i1",
		},
		{
			name: "draining and closed links are skipped",
			links: []*link{
				draining,
				newLink(closed, "c", "i1", 0, "files"),
				newLink(open, "b", "i1", 9, "files"),
			},
			want: "b/i1",
		},
		{
			name:  "only unusable links",
			links: []*link{newLink(closed, "c", "i1", 0, "files")},
			want:  "",
		},
		{
			name:  "other resources do not count",
			links: []*link{newLink(open, "a", "i1", 0, "wiki")},
			want:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegistry()
			for _, l := range tt.links {
				r.add(l)
			}
			got := r.pick("files", "", "")
			switch {
			case got == nil && tt.want != "":
				t.Errorf("pick(files) = nil, want %s", tt.want)
			case got != nil && got.connector+"/"+got.instance != tt.want:
				t.Errorf("pick(files) = %s/%s, want %q", got.connector, got.instance, tt.want)
			}
		})
	}
}

func TestRegistryPickRoundRobinsTies(t *testing.T) {
	open, _ := quicConns(t)
	r := newRegistry()
	for _, name := range []string{"a", "b", "c"} {
		r.add(newLink(open, name, "i1", 0, "files"))
	}

	// Every idle link gets its turn before any gets a second one.
	counts := map[string]int{}
	for range 9 {
		counts[r.pick("files", "", "").connector]++
	}
	if want := map[string]int{"a": 3, "b": 3, "c": 3}; !cmp.Equal(counts, want) {
		t.Errorf("9 picks among 3 idle links went %v, want %v", counts, want)
	}
}

func TestRegistryPickPinned(t *testing.T) {
	open, _ := quicConns(t)
	r := newRegistry()
	r.add(newLink(open, "a", "i1", 0, "files"))
	r.add(newLink(open, "b", "i2", 5, "files"))
	r.add(newLink(open, "b", "i2", 7, "files"))
	r.add(newLink(open, "c", "i2", 0, "files"))

	tests := []struct {
		name, connector, instance string
		want                      string
		wantInFlight              int64
	}{
		{"pinned to busier instance", "b", "i2", "b/i2", 5},
		{"same instance ID of another connector", "c", "i2", "c/i2", 0},
		{"instance gone", "a", "old", "", 0},
		{"connector without link", "z", "i1", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.pick("files", tt.connector, tt.instance)
			if got == nil {
				if tt.want != "" {
					t.Fatalf("pick(files, %s, %s) = nil, want %s",
						tt.connector, tt.instance, tt.want)
				}
				return
			}
			name := got.connector + "/" + got.instance
			if name != tt.want || got.inFlight.Load() != tt.wantInFlight {
				t.Errorf("pick(files, %s, %s) = %s with %d in flight, want %q with %d",
					tt.connector, tt.instance, name, got.inFlight.Load(), tt.want, tt.wantInFlight)
			}
		})
	}
}

func TestRegistryAddReplacesOlderInstance(t *testing.T) {
	open, _ := quicConns(t)
	r := newRegistry()
	old1 := newLink(open, "db", "old", 0, "files", "wiki")
	old2 := newLink(open, "db", "old", 0, "files", "wiki")
	other := newLink(open, "web", "w1", 0, "files")
	for _, l := range []*link{old1, old2, other} {
		if stale := r.add(l); len(stale) != 0 {
			t.Fatalf("add(%s/%s) = %d stale links, want none", l.connector, l.instance, len(stale))
		}
	}

	// A second link of the same instance is not stale.
	same := newLink(open, "web", "w1", 0, "files")
	if stale := r.add(same); len(stale) != 0 {
		t.Errorf("add() of a second link of web/w1 = %q stale, want none", linkNames(stale))
	}

	fresh := newLink(open, "db", "new", 0, "files")
	stale := r.add(fresh)
	if diff := cmp.Diff([]string{"db/old", "db/old"}, linkNames(stale)); diff != "" {
		t.Errorf("add(db/new) stale links mismatch (-want +got):\n%s", diff)
	}
	want := []string{"web/w1", "web/w1", "db/new"}
	if got := linkNames(r.snapshot()); !cmp.Equal(got, want) {

		t.Errorf("snapshot() after replacement = %q, want %q", got, want)
	}
	if l := r.pick("wiki", "", ""); l != nil {
		t.Errorf("pick(wiki) = %s/%s, want nil: only the replaced instance served it",
			l.connector, l.instance)
	}
	if l := r.pick("files", "db", "old"); l != nil {
		t.Errorf("pick(files, db, old) = %s/%s, want nil after replacement",
			l.connector, l.instance)
	}

	// The replaced links' own cleanup must not disturb the new ones.
	r.remove(old1)
	r.remove(old2)
	if links, connectors := r.counts(); links != 3 || connectors != 2 {
		t.Errorf("counts() = %d links, %d connectors, want 3, 2", links, connectors)
	}
}

func TestRegistryRemove(t *testing.T) {
	open, _ := quicConns(t)
	r := newRegistry()
	a := newLink(open, "a", "i1", 0, "files")
	b := newLink(open, "b", "i1", 0, "files", "wiki")
	r.add(a)
	r.add(b)

	r.remove(b)
	r.remove(b) // a second remove is a no-op
	r.remove(newLink(open, "never", "added", 0, "files"))
	if got := linkNames(r.snapshot()); !cmp.Equal(got, []string{"a/i1"}) {
		t.Errorf("snapshot() = %q, want [a/i1]", got)
	}
	if got := r.pick("files", "", ""); got != a {
		t.Errorf("pick(files) = %v, want the remaining link", got)
	}
	if _, ok := r.byResource["wiki"]; ok {
		t.Error("byResource still lists wiki after its only link left")
	}
	if links, connectors := r.counts(); links != 1 || connectors != 1 {
		t.Errorf("counts() = %d links, %d connectors, want 1, 1", links, connectors)
	}
}

func TestRegistrySnapshotOldestFirst(t *testing.T) {
	open, _ := quicConns(t)
	r := newRegistry()
	var want []string
	for _, name := range []string{"m", "c", "x", "a", "q"} {
		r.add(newLink(open, name, "i", 0, "files"))
		want = append(want, name+"/i")
	}
	if got := linkNames(r.snapshot()); !cmp.Equal(got, want) {
		t.Errorf("snapshot() = %q, want the order of add %q", got, want)
	}
}

// TestRegistryPickAvoidsQuietLinks: a link whose connector missed two
// heartbeats gets new requests only when no other link will do, however
// busy the others are.
func TestRegistryPickAvoidsQuietLinks(t *testing.T) {
	open, _ := quicConns(t)
	heard := func(l *link, ago time.Duration) *link {
		l.heartbeat = 500 * time.Millisecond
		l.lastHeard.Store(time.Now().Add(-ago).UnixNano())
		return l
	}
	r := newRegistry()
	quiet := heard(newLink(open, "q", "i1", 0, "files"), 2*time.Second)
	busy := heard(newLink(open, "b", "i1", 50, "files"), 100*time.Millisecond)
	r.add(quiet)
	r.add(busy)
	for range 4 {
		if got := r.pick("files", "", ""); got != busy {
			t.Fatalf("pick = %s, want the busy link over the quiet one", got.connector)
		}
	}
	r.remove(busy)
	if got := r.pick("files", "", ""); got != quiet {
		t.Errorf("pick with only a quiet link = %v, want it (better than nothing)", got)
	}
	old := newLink(open, "o", "i1", 0, "files") // an older connector: no heartbeat announced
	r.add(old)
	if got := r.pick("files", "", ""); got != old {
		t.Errorf("pick = %s, want the link of a connector that announced no heartbeat", got.connector)
	}
}
