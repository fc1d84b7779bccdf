package edge

import "time"

// TunnelInfo describes one acknowledged tunnel from a connector.
type TunnelInfo struct {
	Connector string    `json:"connector"`
	Instance  string    `json:"instance"`
	Resources []string  `json:"resources"`
	Remote    string    `json:"remote_addr"`
	Software  string    `json:"software"`
	Since     time.Time `json:"since"`
	// CertNotAfter is when the connector's certificate expires.
	CertNotAfter time.Time `json:"cert_not_after"`
	InFlight     int64     `json:"in_flight"`
	Draining     bool      `json:"draining"`
}

// Tunnels returns the live tunnels, oldest first. The slice is the
// caller's.
func (e *Edge) Tunnels() []TunnelInfo {
	links := e.registry.snapshot()
	out := make([]TunnelInfo, 0, len(links))
	for _, l := range links {
		out = append(out, TunnelInfo{
			Connector:    l.connector,
			Instance:     l.instance,
			Resources:    append([]string(nil), l.resources...),
			Remote:       l.remote,
			Software:     l.software,
			Since:        l.since,
			CertNotAfter: l.notAfter,
			InFlight:     l.inFlight.Load(),
			Draining:     l.draining.Load(),
		})
	}
	return out
}
