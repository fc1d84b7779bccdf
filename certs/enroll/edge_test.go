package enroll

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlockhq/airlock/certs"
)

// fakeEdge serves the edge's certificate endpoints minimally, for one
// valid join token (usable any number of times), with a real CA. Its
// fields after mu make it misbehave.
type fakeEdge struct {
	ca    *certs.Authority
	srv   *httptest.Server
	url   string
	token JoinToken
	kind  certs.Kind // what the token is for
	name  string

	// mu guards the fields below.
	mu    sync.Mutex
	posts int // requests to PathEnroll and PathRenew
	gets  int // requests to PathTrustBundle
	// refuse, if set, answers every POST with this status and raw body.
	refuse     *fakeRefusal
	signKind   certs.Kind       // issue this kind instead of the right one
	signName   string           // issue this name instead of the right one
	foreignKey bool             // issue for another key than the CSR's
	signer     *certs.Authority // sign with this CA instead
	answerID   string           // name this identity in the answer
	extraRoots []*x509.Certificate
}

type fakeRefusal struct {
	status int
	body   string
}

// newFakeEdge starts an edge with a new CA whose join token is for an
// agent named ci.
func newFakeEdge(t *testing.T) *fakeEdge {
	t.Helper()
	ca, err := certs.Init(filepath.Join(t.TempDir(), "ca"), certs.DefaultTrustDomain)
	if err != nil {
		t.Fatalf("certs.Init() = %v", err)
	}
	return startFakeEdge(t, ca)
}

func startFakeEdge(t *testing.T, ca *certs.Authority) *fakeEdge {
	t.Helper()
	serving, err := ca.Issue(t.Context(), certs.SignRequest{
		Kind: certs.KindEdge, Name: "edge", Lifetime: time.Hour,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		t.Fatalf("issuing edge certificate: %v", err)
	}
	e := &fakeEdge{
		ca:    ca,
		token: JoinToken{ID: "tok1", Secret: "s3cret", Pin: Pin(ca.Root().Raw)},
		kind:  certs.KindAgent,
		name:  "ci",
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathTrustBundle, e.serveBundle)
	mux.HandleFunc("POST "+PathEnroll, e.serveEnroll)
	mux.HandleFunc("POST "+PathRenew, e.serveRenew)
	mux.HandleFunc("GET /whoami", e.serveWhoami)

	e.srv = httptest.NewUnstartedServer(mux)
	e.srv.EnableHTTP2 = true
	e.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serving.TLSCertificate()},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{"h2", "http/1.1"},
	}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	e.url = e.srv.URL
	return e
}

func (e *fakeEdge) counts() (posts, gets int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.posts, e.gets
}

func (e *fakeEdge) bundle() []*x509.Certificate {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append(e.ca.Bundle(), e.extraRoots...)
}

func (e *fakeEdge) serveBundle(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	e.gets++
	e.mu.Unlock()
	w.Write(encodeCertificates(e.bundle()))
}

// countPost counts a POST and reports whether it was answered with the
// configured refusal.
func (e *fakeEdge) countPost(w http.ResponseWriter) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.posts++
	if e.refuse == nil {
		return false
	}
	w.WriteHeader(e.refuse.status)
	io.WriteString(w, e.refuse.body)
	return true
}

func (e *fakeEdge) serveEnroll(w http.ResponseWriter, r *http.Request) {
	if e.countPost(w) {
		return
	}
	req, csr, ok := readFakeRequest(w, r)
	if !ok {
		return
	}
	switch {
	case req.Token != e.token.String():
		refuseJSON(w, http.StatusUnauthorized, CodeInvalidToken, "join token is unknown")
	case req.Kind != string(e.kind), req.Name != "" && req.Name != e.name:
		refuseJSON(w, http.StatusForbidden, CodeInvalidToken, "join token is for another kind or name")
	default:
		e.issue(w, r, csr, e.kind, e.name)
	}
}

func (e *fakeEdge) serveRenew(w http.ResponseWriter, r *http.Request) {
	if e.countPost(w) {
		return
	}
	id, _, err := certs.PeerIdentity(*r.TLS, certs.DefaultTrustDomain,
		certs.KindAgent, certs.KindConnector)
	if err != nil {
		refuseJSON(w, http.StatusUnauthorized, CodeUnauthorized, err.Error())
		return
	}
	if _, csr, ok := readFakeRequest(w, r); ok {
		e.issue(w, r, csr, id.Kind, id.Name)
	}
}

func (e *fakeEdge) serveWhoami(w http.ResponseWriter, r *http.Request) {
	if len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "no client certificate", http.StatusUnauthorized)
		return
	}
	io.WriteString(w, r.TLS.PeerCertificates[0].SerialNumber.String())
}

// issue signs csr for kind/name, or for what the misbehaviour fields say.
func (e *fakeEdge) issue(
	w http.ResponseWriter,
	r *http.Request,
	csr *x509.CertificateRequest,
	kind certs.Kind,
	name string,
) {
	e.mu.Lock()
	kind, name = cmp.Or(e.signKind, kind), cmp.Or(e.signName, name)
	foreign, signer, answerID := e.foreignKey, cmp.Or(e.signer, e.ca), e.answerID
	e.mu.Unlock()
	if foreign {
		csr = otherCSR()
	}
	req := certs.SignRequest{Kind: kind, Name: name, Lifetime: time.Hour}
	chain, err := signer.Sign(r.Context(), csr, req)
	if err != nil {
		refuseJSON(w, http.StatusInternalServerError, CodeServerError, err.Error())
		return
	}
	id, _ := certs.IdentityOf(chain[0])
	json.NewEncoder(w).Encode(Response{
		Identity:    cmp.Or(answerID, id.String()),
		Certificate: string(encodeCertificates(chain)),
		TrustBundle: string(encodeCertificates(e.bundle())),
	})
}

func readFakeRequest(
	w http.ResponseWriter,
	r *http.Request,
) (Request, *x509.CertificateRequest, bool) {
	var req Request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		refuseJSON(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
		return req, nil, false
	}
	block, _ := pem.Decode([]byte(req.CSR))
	if block == nil {
		refuseJSON(w, http.StatusBadRequest, CodeInvalidCSR, "no PEM CSR")
		return req, nil, false
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		refuseJSON(w, http.StatusBadRequest, CodeInvalidCSR, err.Error())
		return req, nil, false
	}
	return req, csr, true
}

func refuseJSON(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorResponse{Error: code, Description: desc, RequestID: "req-1"})
}

// otherCSR returns a CSR for a key nobody keeps.
func otherCSR() *x509.CertificateRequest {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr, _ := x509.ParseCertificateRequest(der)
	return csr
}

// options returns the options that enroll an agent named ci at e, into a
// new folder.
func (e *fakeEdge) options(t *testing.T) Options {
	t.Helper()
	return Options{
		EdgeURL: e.url,
		Token:   e.token.String(),
		Kind:    certs.KindAgent,
		Name:    "ci",
		Dir:     filepath.Join(t.TempDir(), "agent"),
	}
}

// enrollAgent enrolls an agent named ci at e.
func enrollAgent(t *testing.T, e *fakeEdge) *Holder {
	t.Helper()
	h, err := Enroll(context.Background(), e.options(t))
	if err != nil {
		t.Fatalf("Enroll() = %v", err)
	}
	return h
}
