package config

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string        `yaml:"name"`
	Timeout time.Duration `yaml:"timeout"`
	Nested  struct {
		Port int `yaml:"port"`
	} `yaml:"nested"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "valid", in: "name: a\ntimeout: 30s\nnested:\n  port: 3\n"},
		{name: "unknown key", in: "name: a\nnmae: b\n", wantErr: "nmae"},
		{name: "unknown nested key", in: "nested:\n  prot: 3\n", wantErr: "prot"},
		{name: "wrong type", in: "nested:\n  port: many\n", wantErr: "port"},
		{name: "bad duration", in: "timeout: soon\n", wantErr: "soon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sample
			err := Decode("test.yaml", []byte(tt.in), &s)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode() = %v, want nil", err)
				}
				if s.Timeout != 30*time.Second || s.Nested.Port != 3 {
					t.Errorf("Decode() gave %+v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "test.yaml") {
				t.Errorf("Decode() = %v, want an error naming test.yaml and %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	cases := []struct{ file, path, want string }{
		{"/etc/airlock/edge.yaml", "data", "/etc/airlock/data"},
		{"/etc/airlock/edge.yaml", "./certs/c.crt", "/etc/airlock/certs/c.crt"},
		{"/etc/airlock/edge.yaml", "/var/lib/airlock", "/var/lib/airlock"},
		{"/etc/airlock/edge.yaml", "", ""},
		{"edge.yaml", "data", "data"},
		{"conf/edge.yaml", "../data", "data"},
	}
	for _, c := range cases {
		if got := Resolve(c.file, c.path); got != c.want {
			t.Errorf("Resolve(%q, %q) = %q, want %q", c.file, c.path, got, c.want)
		}
	}
}
