package faultnet

import (
	"net"
	"testing"
	"time"
)

// echoServer answers every datagram with itself.
func echoServer(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			c.WriteToUDP(buf[:n], from)
		}
	}()
	return c.LocalAddr().String()
}

// roundTrips sends n datagrams one after another and counts the echoes.
func roundTrips(t *testing.T, p *UDPProxy, n int, wait time.Duration) int {
	t.Helper()
	c, err := net.Dial("udp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := 0
	buf := make([]byte, 64)
	for range n {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.Read(buf); err == nil {
			got++
		}
	}
	return got
}

func TestUDPProxy(t *testing.T) {
	p, err := NewUDPProxy(echoServer(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := roundTrips(t, p, 20, time.Second); got != 20 {
		t.Errorf("without faults %d of 20 came back", got)
	}
	p.Set(Up, Faults{Drop: 0.5})
	// A lost datagram costs the read deadline; an echo on loopback comes
	// back far sooner, and a late one only lowers the count.
	got := roundTrips(t, p, 100, 20*time.Millisecond)
	if fwd, drop := p.Counts(Up); got > 80 || drop < 20 || fwd+drop < 120 {
		t.Errorf("with half dropped: %d of 100 came back (up: %d forwarded, %d dropped)", got, fwd, drop)
	}
	p.Set(Up, Faults{})
	p.Blackout(time.Hour)
	if got := roundTrips(t, p, 5, 20*time.Millisecond); got != 0 {
		t.Errorf("during a blackout %d of 5 came back", got)
	}
	p.Blackout(-1)
	p.Set(Down, Faults{Delay: 50 * time.Millisecond})
	if got := roundTrips(t, p, 5, time.Second); got != 5 {
		t.Errorf("with a delay below the read deadline %d of 5 came back", got)
	}
}

// TestUDPProxyRepeatable checks that a seed gives the same drops.
func TestUDPProxyRepeatable(t *testing.T) {
	drops := func() []bool {
		p, err := NewUDPProxy(echoServer(t), 42)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		p.Set(Up, Faults{Drop: 0.3})
		var out []bool
		for range 100 {
			ok, _ := p.decide(Up)
			out = append(out, ok)
		}
		return out
	}
	a, b := drops(), drops()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("datagram %d: dropped differently with the same seed", i)
		}
	}
}
