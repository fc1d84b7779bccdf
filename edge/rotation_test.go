package edge_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/certs/enroll"
	"github.com/airlockhq/airlock/edge"
)

// bundleHas reports whether the PEM bundle in dir holds root.
func bundleHas(t *testing.T, dir string, root *x509.Certificate) bool {
	t.Helper()
	list, err := certs.ReadCertificates(enroll.BundleFile(dir))
	if err != nil {
		return false
	}
	for _, c := range list {
		if c.Equal(root) {
			return true
		}
	}
	return false
}

// issuedBy reports whether leaf chains to root through the holder's own
// chain, i.e. was signed by the intermediate under root.
func issuedBy(cred *certs.Credential, root *x509.Certificate) bool {
	chain := cred.Chain
	return len(chain) > 1 && bytes.Equal(chain[len(chain)-1].RawIssuer, root.RawSubject) &&
		chain[len(chain)-1].CheckSignatureFrom(root) == nil
}

func TestCARotationUnderTraffic(t *testing.T) {
	v := newEnv(t)
	e, res := demoEdge(v, func(c *edge.Config) {
		c.AgentCertLifetime = 3 * time.Second
		c.ConnectorCertLifetime = 3 * time.Second
	})
	rc := v.startEnrolledConnector(e, "c1", res)
	connDir := filepath.Join(v.dir, "connectors", "c1")
	agent := v.enrollHolder(e, certs.KindAgent, "alice")
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	go (&enroll.Renewer{Holder: agent, Logger: testLogger(t)}).Run(ctx)

	// A credential from the old root that is never renewed: it must work
	// through the overlap and be refused once the old root is retired.
	oldCert, oldKey := v.issue(certs.KindAgent, "legacy")
	oldRoot := e.CA().Root()

	client := holderClient(agent)
	url := mcpURL(e, "demo")
	tr := startTraffic(t, func() *http.Client { return client }, url, 4)

	// Step 1: a next root; every holder learns it with its next renewal.
	if err := e.RotateCA(ctx, "prepare"); err != nil {
		t.Fatalf("RotateCA(prepare) = %v", err)
	}
	next := e.CA().Bundle()
	newRoot := next[len(next)-1]
	if newRoot.Equal(oldRoot) {
		t.Fatal("prepare added no new root to the bundle")
	}
	waitFor(t, "the agent to trust the next root", func() bool { return bundleHas(t, agent.Dir(), newRoot) })
	waitFor(t, "the connector to trust the next root", func() bool { return bundleHas(t, connDir, newRoot) })
	legacyTLS := v.clientTLS(oldCert, oldKey)
	legacyTLS.RootCAs = e.CA().Pool()
	legacy := httpClient(t, legacyTLS)

	// Step 2: sign with the new root. The edge's own certificate changes
	// at once; holders move over at their next renewal.
	if err := e.RotateCA(ctx, "activate"); err != nil {
		t.Fatalf("RotateCA(activate) = %v", err)
	}
	if !e.CA().Root().Equal(newRoot) {
		t.Fatal("activate did not make the next root active")
	}
	waitFor(t, "the agent's certificate from the new root", func() bool { return issuedBy(agent.Credential(), newRoot) })
	waitFor(t, "the connector to renew from the new root", func() bool {
		h, err := enroll.Load(connDir)
		return err == nil && issuedBy(h.Credential(), newRoot)
	})
	if resp, _, err := rpc(t, ctx, legacy, url, echoCall(1, "overlap"), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("old-root certificate during the overlap = %v %v, want 200", resp, err)
	}

	// Step 3: stop trusting the old root.
	if err := e.RotateCA(ctx, "retire"); err != nil {
		t.Fatalf("RotateCA(retire) = %v", err)
	}
	waitFor(t, "the agent's bundle to drop the old root", func() bool { return !bundleHas(t, agent.Dir(), oldRoot) })
	tr.finish(t)
	if tr.calls.Load() == 0 {
		t.Fatal("no call was made during the rotation")
	}
	legacyTLS.RootCAs = e.CA().Pool()
	fresh := httpClient(t, legacyTLS)
	if _, _, err := rpc(t, ctx, fresh, url, echoCall(2, "retired"), nil); err == nil {
		t.Error("a certificate from the retired root was accepted")
	}
	// Two, or four while a renewal replaces them.
	if got := rc.c.Connected(); got < 2 {
		t.Errorf("connector has %d tunnels after the rotation, want at least 2", got)
	}
}

func TestStreamEndsWhenCertificateExpires(t *testing.T) {
	v := newEnv(t)
	e, res, up := demoEdgeUpstream(v, nil)
	v.startEnrolledConnector(e, "c1", res)
	agent := v.enrollHolder(e, certs.KindAgent, "alice") // never renewed
	notAfter := agent.Credential().Leaf().NotAfter
	// The edge's clock jumps to three seconds before the certificate's end.
	shift := time.Until(notAfter) - 3*time.Second
	clock := func() time.Time { return time.Now().Add(shift) }
	edge.SetClock(e, clock)

	long := startLongCall(t, holderClient(agent), mcpURL(e, "demo"))
	select {
	case err := <-long:
		if clock().Before(notAfter) {
			t.Fatalf("the long call ended before the certificate expired: %v", err)
		}
		if !strings.Contains(fmt.Sprint(err), "status 401") || !strings.Contains(fmt.Sprint(err), "certificate expired") {
			t.Errorf("the long call ended with %v, want a 401 saying the certificate expired", err)
		}
		if err := up.stats.AwaitCancelled(testContext(t), 1); err != nil {
			t.Errorf("the expired agent's call was never cancelled upstream: %v", err)
		}
	case <-time.After(notAfter.Sub(clock()) + 5*time.Second):
		t.Fatal("the long call outlived its certificate by 5 seconds")
	}
}
