// Package faultnet is a UDP proxy that injects network faults between a
// connector and an edge, for the project's fault-injection tests: it
// drops and delays datagrams in each direction, with a seeded random
// source so that a run can be repeated, and can black out all traffic for
// a window or until told otherwise. It listens on loopback only.
package faultnet

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Direction is one way through the proxy.
type Direction int

const (
	// Up is from the clients (connectors) to the target (the edge).
	Up Direction = iota
	// Down is from the target back to the clients.
	Down
)

// Faults are what happens to datagrams going one way.
type Faults struct {
	// Drop is the probability, 0 to 1, that a datagram is lost.
	Drop float64
	// Delay holds every datagram this long before it is sent on.
	Delay time.Duration
}

// UDPProxy forwards datagrams between its clients and one target, each
// client through a socket of its own, as a NAT would. It is safe for
// concurrent use.
type UDPProxy struct {
	ln     *net.UDPConn
	target *net.UDPAddr

	// mu guards the fields below.
	mu        sync.Mutex
	rng       *rand.Rand
	faults    [2]Faults
	blackout  time.Time // until when everything is dropped
	clients   map[string]*net.UDPConn
	closed    bool
	forwarded [2]int
	dropped   [2]int
}

// NewUDPProxy listens on a loopback port and forwards to target. seed
// makes the random drops repeatable.
func NewUDPProxy(target string, seed uint64) (*UDPProxy, error) {
	t, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	p := &UDPProxy{ln: ln, target: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)),
		clients: map[string]*net.UDPConn{}}
	go p.serveUp()
	return p, nil
}

// Addr is the address clients send to.
func (p *UDPProxy) Addr() string { return p.ln.LocalAddr().String() }

// Set sets the faults of one direction.
func (p *UDPProxy) Set(d Direction, f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[d] = f
}

// Blackout drops every datagram both ways for d from now; a negative d
// ends a blackout, and a very long one is a partition.
func (p *UDPProxy) Blackout(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackout = time.Now().Add(d)
}

// Counts returns how many datagrams went through and were dropped in
// direction d.
func (p *UDPProxy) Counts(d Direction) (forwarded, dropped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forwarded[d], p.dropped[d]
}

// Close stops the proxy and closes every socket.
func (p *UDPProxy) Close() {
	p.mu.Lock()
	p.closed = true
	for _, c := range p.clients {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
}

// decide says whether a datagram going d is sent, and after how long.
func (p *UDPProxy) decide(d Direction) (bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults[d]
	if time.Now().Before(p.blackout) || (f.Drop > 0 && p.rng.Float64() < f.Drop) {
		p.dropped[d]++
		return false, 0
	}
	p.forwarded[d]++
	return true, f.Delay
}

func (p *UDPProxy) send(d Direction, data []byte, write func([]byte)) {
	ok, delay := p.decide(d)
	if !ok {
		return
	}
	if delay == 0 {
		write(data)
		return
	}
	held := append([]byte(nil), data...)
	time.AfterFunc(delay, func() { write(held) })
}

func (p *UDPProxy) serveUp() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		up, err := p.upstream(from)
		if err != nil {
			continue
		}
		p.send(Up, buf[:n], func(b []byte) { up.Write(b) })
	}
}

// upstream returns the socket that carries a client's datagrams to the
// target, and starts relaying the answers.
func (p *UDPProxy) upstream(client *net.UDPAddr) (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("faultnet: proxy closed")
	}
	if c, ok := p.clients[client.String()]; ok {
		return c, nil
	}
	c, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil, err
	}
	p.clients[client.String()] = c
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					continue // an ICMP error from a target that restarts
				}
				return
			}
			p.send(Down, buf[:n], func(b []byte) { p.ln.WriteToUDP(b, client) })
		}
	}()
	return c, nil
}
