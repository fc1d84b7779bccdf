package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPeerIdentity(t *testing.T) {
	a, _ := newTestCA(t)
	agent := issue(t, a, KindAgent, "ci").Leaf()
	conn := issue(t, a, KindConnector, "db").Leaf()
	stateOf := func(leaf *x509.Certificate) tls.ConnectionState {
		chain := []*x509.Certificate{leaf, a.Intermediate(), a.Root()}
		return tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{chain}}
	}

	tests := []struct {
		name   string
		cs     tls.ConnectionState
		domain string
		kinds  []Kind
		want   Identity
		// check inspects the error; nil means none is wanted.
		check func(t *testing.T, err error)
	}{
		{
			name:   "agent",
			cs:     stateOf(agent),
			domain: DefaultTrustDomain,
			kinds:  []Kind{KindAgent},
			want:   Identity{DefaultTrustDomain, KindAgent, "ci"},
		},
		{
			name:   "one of several kinds",
			cs:     stateOf(conn),
			domain: DefaultTrustDomain,
			kinds:  []Kind{KindAgent, KindConnector},
			want:   Identity{DefaultTrustDomain, KindConnector, "db"},
		},
		{
			name:   "connector where an agent is wanted",
			cs:     stateOf(conn),
			domain: DefaultTrustDomain,
			kinds:  []Kind{KindAgent},
			want:   Identity{DefaultTrustDomain, KindConnector, "db"},
			check: func(t *testing.T, err error) {
				var wk *WrongKindError
				if !errors.As(err, &wk) {
					t.Fatalf("error = %v, want a *WrongKindError", err)
				}
				want := WrongKindError{
					Identity: Identity{DefaultTrustDomain, KindConnector, "db"},
					Want:     []Kind{KindAgent},
				}
				if diff := cmp.Diff(want, *wk); diff != "" {
					t.Errorf("WrongKindError mismatch (-want +got):\n%s", diff)
				}
				const msg = "certificate identity spiffe://airlock.local/connector/db is a connector, not a [agent]"
				if wk.Error() != msg {
					t.Errorf("WrongKindError.Error() = %q, want %q", wk.Error(), msg)
				}
			},
		},
		{
			name:   "no kinds wanted",
			cs:     stateOf(agent),
			domain: DefaultTrustDomain,
			want:   Identity{DefaultTrustDomain, KindAgent, "ci"},
			check:  wantErrAs[*WrongKindError],
		},
		{
			name:   "other trust domain",
			cs:     stateOf(agent),
			domain: "example.org",
			kinds:  []Kind{KindAgent},
			check: func(t *testing.T, err error) {
				var wk *WrongKindError
				if err == nil || errors.As(err, &wk) ||
					!strings.Contains(err.Error(), "example.org") {
					t.Errorf("error = %v, want one naming trust domain example.org", err)
				}
			},
		},
		{
			name:   "no verified chain",
			cs:     tls.ConnectionState{PeerCertificates: []*x509.Certificate{agent}},
			domain: DefaultTrustDomain,
			kinds:  []Kind{KindAgent},
			check:  wantErrIs(ErrNoPeerCertificate),
		},
		{
			name:   "empty verified chain",
			cs:     tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{}}},
			domain: DefaultTrustDomain,
			kinds:  []Kind{KindAgent},
			check:  wantErrIs(ErrNoPeerCertificate),
		},
		{
			name:   "certificate without SPIFFE ID",
			cs:     stateOf(a.Intermediate()),
			domain: DefaultTrustDomain,
			kinds:  []Kind{KindAgent},
			check:  wantErrIs(ErrNoIdentity),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, leaf, err := PeerIdentity(tt.cs, tt.domain, tt.kinds...)
			if got != tt.want {
				t.Errorf("PeerIdentity() identity = %v, want %v", got, tt.want)
			}
			if tt.check == nil {
				if err != nil {
					t.Fatalf("PeerIdentity() = %v, want nil error", err)
				}
				if leaf != tt.cs.VerifiedChains[0][0] {
					t.Error("PeerIdentity() leaf is not the verified chain's leaf")
				}
				return
			}
			tt.check(t, err)
		})
	}
}

func wantErrIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("error = %v, want %v", err, target)
		}
	}
}

func wantErrAs[E error](t *testing.T, err error) {
	t.Helper()
	var target E
	if !errors.As(err, &target) {
		t.Errorf("error = %v, want a %T", err, target)
	}
}

// handshake runs a TLS handshake between client and server over an
// in-memory pipe and returns the server's view and both errors.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	sc, cc := net.Pipe()
	// A safety net only: a broken handshake fails instead of hanging.
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)

	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		srv := tls.Server(sc, server)
		err := srv.Handshake()
		done <- result{srv.ConnectionState(), err}
		srv.Close()
	}()

	cli := tls.Client(cc, client)
	cerr := cli.Handshake()
	if cerr == nil {
		// TLS 1.3 clients finish before the server has checked their
		// certificate; a read sees the server's verdict.
		if _, cerr = cli.Read(make([]byte, 1)); errors.Is(cerr, io.EOF) {
			cerr = nil
		}
	}
	cli.Close()
	r := <-done
	return r.cs, r.err, cerr
}

func TestChainVerificationOverTLS(t *testing.T) {
	a, _ := newTestCA(t)
	other, _ := newTestCA(t)
	edgeReq := SignRequest{
		Kind:     KindEdge,
		Name:     "edge",
		Lifetime: time.Hour,
		DNSNames: []string{"edge.local"},
	}

	serving := mustIssue(t, a, edgeReq)
	foreignServing := mustIssue(t, other, edgeReq)

	serverConf := func(cred *Credential) *tls.Config {
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cred.TLSCertificate()},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    a.Pool(),
		}
	}
	clientConf := func(cred *Credential) *tls.Config {
		tc := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: "edge.local", RootCAs: a.Pool()}
		if cred != nil {
			tc.Certificates = []tls.Certificate{cred.TLSCertificate()}
		}
		return tc
	}

	tests := []struct {
		name           string
		server, client *tls.Config
		wantServerErr  bool
		wantClientErr  bool
		want           Identity
	}{
		{
			name:   "client of the CA",
			server: serverConf(serving),
			client: clientConf(issue(t, a, KindAgent, "ci")),
			want:   Identity{DefaultTrustDomain, KindAgent, "ci"},
		},
		{
			name:          "client of another CA",
			server:        serverConf(serving),
			client:        clientConf(issue(t, other, KindAgent, "ci")),
			wantServerErr: true,
			wantClientErr: true,
		},
		{
			name:          "client without certificate",
			server:        serverConf(serving),
			client:        clientConf(nil),
			wantServerErr: true,
			wantClientErr: true,
		},
		{
			// An agent certificate is for clients only.
			name:          "agent certificate serving",
			server:        serverConf(issue(t, a, KindAgent, "edge")),
			client:        clientConf(issue(t, a, KindAgent, "ci")),
			wantServerErr: true,
			wantClientErr: true,
		},
		{
			name:          "server of another CA",
			server:        serverConf(foreignServing),
			client:        clientConf(issue(t, a, KindAgent, "ci")),
			wantServerErr: true,
			wantClientErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, serr, cerr := handshake(t, tt.server, tt.client)
			if (serr != nil) != tt.wantServerErr || (cerr != nil) != tt.wantClientErr {
				t.Fatalf("handshake: server error %v, client error %v; want errors %v, %v",
					serr, cerr, tt.wantServerErr, tt.wantClientErr)
			}
			if serr != nil {
				return
			}
			id, _, err := PeerIdentity(cs, DefaultTrustDomain, KindAgent)
			if err != nil || id != tt.want {
				t.Errorf("PeerIdentity() after the handshake = %v, %v, want %v", id, err, tt.want)
			}
		})
	}
}

func mustIssue(t *testing.T, a *Authority, req SignRequest) *Credential {
	t.Helper()
	cred, err := a.Issue(t.Context(), req)
	if err != nil {
		t.Fatalf("Issue(%+v) = %v", req, err)
	}
	return cred
}
