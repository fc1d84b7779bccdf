package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlockhq/airlock/certs"
	"github.com/airlockhq/airlock/edge"
)

// adminTarget says how `airlock admin` reaches an edge: through the local
// socket of its data folder, or over the network with an admin
// certificate.
type adminTarget struct {
	data    string
	edgeURL string
	cert    string
	key     string
	caFile  string
	json    bool
}

func (t *adminTarget) flags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&t.data, "data", "", "the edge's data folder: reach it through its local admin socket")
	f.StringVar(&t.edgeURL, "edge", "", "the edge's URL (https://host:port), reached with an admin certificate")
	f.StringVar(&t.cert, "cert", "", "with --edge: admin certificate (PEM; may also hold the key)")
	f.StringVar(&t.key, "key", "", "with --edge: admin key (default: the --cert file)")
	f.StringVar(&t.caFile, "ca", "", "with --edge: trusted roots (PEM)")
	f.BoolVar(&t.json, "json", false, "print JSON for scripts")
}

// adminClient talks to the admin API of one edge.
type adminClient struct {
	base   string
	client *http.Client
}

func (t *adminTarget) client() (*adminClient, error) {
	switch {
	case t.data != "" && t.edgeURL != "":
		return nil, errors.New("use either --data or --edge, not both")
	case t.data != "":
		sock := edge.AdminSocket(t.data)
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		return &adminClient{base: "http://edge", client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
	case t.edgeURL != "":
		return t.remoteClient()
	}
	return nil, errors.New("say which edge: --data DIR (on the edge's host) or --edge URL with --cert and --ca")
}

func (t *adminTarget) remoteClient() (*adminClient, error) {
	if t.cert == "" || t.caFile == "" {
		return nil, errors.New("--edge needs --cert (an admin certificate) and --ca")
	}
	key := t.key
	if key == "" {
		key = t.cert
	}
	cred, err := certs.LoadCredential(t.cert, key)
	if err != nil {
		return nil, err
	}
	roots, err := certs.ReadPool(t.caFile)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: []tls.Certificate{cred.TLSCertificate()},
	}}
	base := strings.TrimSuffix(t.edgeURL, "/")
	return &adminClient{base: base, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// call sends one admin request and decodes the answer into out; an error
// answer becomes an error carrying the edge's message.
func (c *adminClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/v1/admin/"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the edge's admin API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading admin answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("edge refused: %s", e.Error)
		}
		return fmt.Errorf("edge answered %s", resp.Status)
	}
	return json.Unmarshal(data, out)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
