package store

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolterrors "go.etcd.io/bbolt/errors"
)

// t0 is a fixed instant that the tests measure time from.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// openStore opens a store at path and closes it when the test ends.
func openStore(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// newStore opens a store in a fresh temporary folder.
func newStore(t *testing.T) *Store {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "edge.db"))
}

// hash returns the SHA-256 of secret, as a token stores it.
func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// newToken returns an unused agent token whose secret is "secret-"+id,
// created at t0 and valid for an hour.
func newToken(id string) JoinToken {
	return JoinToken{
		ID:         id,
		Kind:       "agent",
		Name:       "agent-" + id,
		SecretHash: hash("secret-" + id),
		CreatedAt:  t0,
		ExpiresAt:  t0.Add(time.Hour),
	}
}

// putTokens stores tokens, failing the test on an error.
func putTokens(t *testing.T, s *Store, tokens ...JoinToken) {
	t.Helper()
	for _, tok := range tokens {
		if err := s.PutJoinToken(tok); err != nil {
			t.Fatalf("PutJoinToken(%q) = %v", tok.ID, err)
		}
	}
}

// serial returns a use function that hands out s and counts its calls.
func serial(s string, calls *atomic.Int32) func(JoinToken) (string, error) {
	return func(JoinToken) (string, error) {
		calls.Add(1)
		return s, nil
	}
}

// tokenIDs returns the IDs of the stored tokens, in the order listed.
func tokenIDs(t *testing.T, s *Store) []string {
	t.Helper()
	tokens, err := s.JoinTokens()
	if err != nil {
		t.Fatalf("JoinTokens() = %v", err)
	}
	var ids []string
	for _, tok := range tokens {
		ids = append(ids, tok.ID)
	}
	return ids
}

func TestJoinTokenPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "edge.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	tok := newToken("t1")
	putTokens(t, s, tok)

	var calls atomic.Int32
	now := t0.Add(time.Minute)
	got, err := s.RedeemJoinToken("t1", hash("secret-t1"), now, serial("42", &calls))
	if err != nil {
		t.Fatalf("RedeemJoinToken() = %v", err)
	}
	want := tok
	want.UsedAt, want.UsedSerial = now, "42"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RedeemJoinToken() mismatch (-want +got):\n%s", diff)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	s = openStore(t, path)
	tokens, err := s.JoinTokens()
	if err != nil {
		t.Fatalf("JoinTokens() after reopen = %v", err)
	}
	if diff := cmp.Diff([]JoinToken{want}, tokens); diff != "" {
		t.Errorf("JoinTokens() after reopen mismatch (-want +got):\n%s", diff)
	}
	_, err = s.RedeemJoinToken("t1", hash("secret-t1"), now, serial("43", &calls))
	if !errors.Is(err, ErrTokenUsed) {
		t.Errorf("RedeemJoinToken() after reopen = %v, want %v", err, ErrTokenUsed)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("use called %d times, want 1", n)
	}
}

func TestRedeemJoinToken(t *testing.T) {
	tok := newToken("t1")
	used := newToken("used")
	used.UsedAt, used.UsedSerial = t0, "7"

	tests := []struct {
		name    string
		id      string
		secret  []byte
		now     time.Time
		wantErr error
	}{
		{"valid", "t1", hash("secret-t1"), t0.Add(time.Minute), nil},
		{"exactly at expiry", "t1", hash("secret-t1"), tok.ExpiresAt, nil},
		{"wrong secret", "t1", hash("guess"), t0, ErrTokenUnknown},
		{"empty secret", "t1", nil, t0, ErrTokenUnknown},
		{"unknown id", "nope", hash("secret-nope"), t0, ErrTokenUnknown},
		{"expired", "t1", hash("secret-t1"), tok.ExpiresAt.Add(time.Nanosecond), ErrTokenExpired},
		{"used", "used", hash("secret-used"), t0, ErrTokenUsed},
		{"used and wrong secret", "used", hash("guess"), t0, ErrTokenUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			putTokens(t, s, tok, used)

			var calls atomic.Int32
			got, err := s.RedeemJoinToken(tt.id, tt.secret, tt.now, serial("42", &calls))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RedeemJoinToken(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
			wantCalls := int32(0)
			if tt.wantErr == nil {
				wantCalls = 1
				if got.UsedSerial != "42" || !got.UsedAt.Equal(tt.now) {
					t.Errorf("RedeemJoinToken(%q) = %+v, want used at %v for serial 42",
						tt.id, got, tt.now)
				}
			}
			if n := calls.Load(); n != wantCalls {
				t.Errorf("use called %d times, want %d", n, wantCalls)
			}
		})
	}
}

func TestRedeemJoinTokenUseFails(t *testing.T) {
	s := newStore(t)
	putTokens(t, s, newToken("t1"))

	errSign := errors.New("signing failed")
	fail := func(JoinToken) (string, error) { return "99", errSign }
	_, err := s.RedeemJoinToken("t1", hash("secret-t1"), t0, fail)
	if !errors.Is(err, errSign) {
		t.Fatalf("RedeemJoinToken() with failing use = %v, want %v", err, errSign)
	}
	tokens, err := s.JoinTokens()
	if err != nil {
		t.Fatalf("JoinTokens() = %v", err)
	}
	if diff := cmp.Diff([]JoinToken{newToken("t1")}, tokens); diff != "" {
		t.Errorf("token after failed use mismatch (-want +got):\n%s", diff)
	}

	var calls atomic.Int32
	got, err := s.RedeemJoinToken("t1", hash("secret-t1"), t0, serial("42", &calls))
	if err != nil {
		t.Fatalf("RedeemJoinToken() after failed use = %v", err)
	}
	if got.UsedSerial != "42" {
		t.Errorf("UsedSerial = %q, want %q", got.UsedSerial, "42")
	}
}

func TestRedeemJoinTokenConcurrent(t *testing.T) {
	const n = 20
	s := newStore(t)
	putTokens(t, s, newToken("t1"))

	var calls, wins, used atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			_, err := s.RedeemJoinToken("t1", hash("secret-t1"), t0, serial("42", &calls))
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrTokenUsed):
				used.Add(1)
			default:
				t.Errorf("RedeemJoinToken() = %v, want nil or %v", err, ErrTokenUsed)
			}
		})
	}
	close(start)
	wg.Wait()

	if wins.Load() != 1 || used.Load() != n-1 || calls.Load() != 1 {
		t.Errorf("%d redemptions: %d won, %d used, use called %d times; want 1, %d, 1",
			n, wins.Load(), used.Load(), calls.Load(), n-1)
	}
}

func TestPutJoinTokenExists(t *testing.T) {
	s := newStore(t)
	first := newToken("t1")
	putTokens(t, s, first)

	second := newToken("t1")
	second.Name = "impostor"
	if err := s.PutJoinToken(second); !errors.Is(err, ErrExists) {
		t.Fatalf("PutJoinToken(duplicate) = %v, want %v", err, ErrExists)
	}
	tokens, err := s.JoinTokens()
	if err != nil {
		t.Fatalf("JoinTokens() = %v", err)
	}
	if diff := cmp.Diff([]JoinToken{first}, tokens); diff != "" {
		t.Errorf("JoinTokens() after duplicate mismatch (-want +got):\n%s", diff)
	}
}

func TestPutJoinTokenInvalid(t *testing.T) {
	tests := []struct {
		name   string
		change func(*JoinToken)
	}{
		{"no id", func(tok *JoinToken) { tok.ID = "" }},
		{"no hash", func(tok *JoinToken) { tok.SecretHash = nil }},
		{"short hash", func(tok *JoinToken) { tok.SecretHash = tok.SecretHash[:16] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			tok := newToken("t1")
			tt.change(&tok)
			if err := s.PutJoinToken(tok); err == nil {
				t.Errorf("PutJoinToken(%+v) = nil, want an error", tok)
			}
			if ids := tokenIDs(t, s); len(ids) != 0 {
				t.Errorf("stored tokens = %q, want none", ids)
			}
		})
	}
}

func TestJoinTokensOrder(t *testing.T) {
	s := newStore(t)
	a, b, c, d := newToken("a"), newToken("b"), newToken("c"), newToken("d")
	a.CreatedAt = t0.Add(2 * time.Hour)
	b.CreatedAt = t0
	c.CreatedAt = t0.Add(time.Hour)
	d.CreatedAt = t0
	putTokens(t, s, a, b, c, d)

	want := []string{"b", "d", "c", "a"}
	if diff := cmp.Diff(want, tokenIDs(t, s)); diff != "" {
		t.Errorf("JoinTokens() order mismatch (-want +got):\n%s", diff)
	}
}

func TestPruneJoinTokens(t *testing.T) {
	s := newStore(t)
	old, oldUsed := newToken("old"), newToken("old-used")
	atCut, live := newToken("at-cut"), newToken("live")
	old.ExpiresAt = t0.Add(-2 * time.Hour)
	oldUsed.ExpiresAt = t0.Add(-time.Hour)
	oldUsed.UsedAt, oldUsed.UsedSerial = t0.Add(-3*time.Hour), "5"
	atCut.ExpiresAt = t0
	live.ExpiresAt = t0.Add(time.Hour)
	putTokens(t, s, old, oldUsed, atCut, live)

	n, err := s.PruneJoinTokens(t0)
	if err != nil {
		t.Fatalf("PruneJoinTokens() = %v", err)
	}
	if n != 2 {
		t.Errorf("PruneJoinTokens() = %d, want 2", n)
	}
	want := []string{"at-cut", "live"}
	if diff := cmp.Diff(want, tokenIDs(t, s)); diff != "" {
		t.Errorf("tokens after prune mismatch (-want +got):\n%s", diff)
	}
}

func TestAddRevocationValidates(t *testing.T) {
	tests := []struct {
		name    string
		rev     Revocation
		wantErr bool
	}{
		{"identity", Revocation{Identity: "spiffe://airlock/agent/a"}, false},
		{"serial", Revocation{Serial: "12345"}, false},
		{"both", Revocation{Identity: "spiffe://airlock/agent/a", Serial: "1"}, true},
		{"neither", Revocation{Reason: "lost laptop"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			err := s.AddRevocation(tt.rev)
			if (err != nil) != tt.wantErr {
				t.Fatalf("AddRevocation(%+v) = %v, want error %t", tt.rev, err, tt.wantErr)
			}
			revs, err := s.Revocations()
			if err != nil {
				t.Fatalf("Revocations() = %v", err)
			}
			wantLen := 1
			if tt.wantErr {
				wantLen = 0
			}
			if len(revs) != wantLen {
				t.Errorf("Revocations() = %+v, want %d records", revs, wantLen)
			}
		})
	}
}

// addRevocations stores revs, failing the test on an error.
func addRevocations(t *testing.T, s *Store, revs ...Revocation) {
	t.Helper()
	for _, r := range revs {
		if err := s.AddRevocation(r); err != nil {
			t.Fatalf("AddRevocation(%+v) = %v", r, err)
		}
	}
}

// revocations returns the stored revocations, failing the test on an error.
func revocations(t *testing.T, s *Store) []Revocation {
	t.Helper()
	revs, err := s.Revocations()
	if err != nil {
		t.Fatalf("Revocations() = %v", err)
	}
	return revs
}

func TestAddRevocationReplaces(t *testing.T) {
	const id = "spiffe://airlock/agent/a"
	s := newStore(t)
	addRevocations(t, s,
		Revocation{Identity: id, Reason: "first", RevokedAt: t0},
		Revocation{Serial: "77", Reason: "first", RevokedAt: t0},
		Revocation{Identity: id, Reason: "again", RevokedAt: t0.Add(time.Hour)},
		Revocation{Serial: "77", Reason: "again", RevokedAt: t0.Add(time.Hour)},
	)

	want := []Revocation{
		{Identity: id, Reason: "again", RevokedAt: t0.Add(time.Hour)},
		{Serial: "77", Reason: "again", RevokedAt: t0.Add(time.Hour)},
	}
	if diff := cmp.Diff(want, revocations(t, s)); diff != "" {
		t.Errorf("Revocations() after re-revocation mismatch (-want +got):\n%s", diff)
	}
}

func TestAddRevocationKeepsLaterRevokedAt(t *testing.T) {
	const id = "spiffe://airlock/agent/a"
	s := newStore(t)
	addRevocations(t, s,
		Revocation{Identity: id, Reason: "first", RevokedAt: t0.Add(time.Hour)},
		Revocation{Identity: id, Reason: "late report", RevokedAt: t0},
	)

	want := []Revocation{{Identity: id, Reason: "late report", RevokedAt: t0.Add(time.Hour)}}
	if diff := cmp.Diff(want, revocations(t, s)); diff != "" {
		t.Errorf("Revocations() mismatch (-want +got):\n%s", diff)
	}
}

func TestRevocationsPersistInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	want := []Revocation{
		{Identity: "spiffe://airlock/agent/z", RevokedAt: t0},
		{Serial: "1", Reason: "key leaked", RevokedAt: t0},
		{Serial: "2", RevokedAt: t0.Add(time.Minute)},
		{Identity: "spiffe://airlock/agent/a", RevokedAt: t0.Add(time.Hour)},
	}
	addRevocations(t, s, want[3], want[2], want[1], want[0])
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	s = openStore(t, path)
	if diff := cmp.Diff(want, revocations(t, s)); diff != "" {
		t.Errorf("Revocations() after reopen mismatch (-want +got):\n%s", diff)
	}
}

// newIssued returns a record of a certificate with serial issued to the
// agent name at t0.
func newIssued(name, serial string) Issued {
	return Issued{
		Identity:    "spiffe://airlock/agent/" + name,
		Kind:        "agent",
		Name:        name,
		Serial:      serial,
		Fingerprint: strings.Repeat("ab", sha256.Size),
		NotBefore:   t0,
		NotAfter:    t0.Add(24 * time.Hour),
		IssuedAt:    t0,
		Via:         "enroll",
	}
}

// recordIssued stores certs, failing the test on an error.
func recordIssued(t *testing.T, s *Store, certs ...Issued) {
	t.Helper()
	for _, c := range certs {
		if err := s.RecordIssued(c); err != nil {
			t.Fatalf("RecordIssued(%q) = %v", c.Identity, err)
		}
	}
}

// identities returns the stored identities, failing the test on an error.
func identities(t *testing.T, s *Store) []Issued {
	t.Helper()
	ids, err := s.Identities()
	if err != nil {
		t.Fatalf("Identities() = %v", err)
	}
	return ids
}

func TestRecordIssuedKeepsLastSeen(t *testing.T) {
	s := newStore(t)
	first := newIssued("a", "1")
	recordIssued(t, s, first)
	seen := t0.Add(time.Hour)
	if err := s.Touch(first.Identity, seen); err != nil {
		t.Fatalf("Touch(%q) = %v", first.Identity, err)
	}

	renewed := newIssued("a", "2")
	renewed.Via = "renew"
	renewed.LastSeen = t0.Add(-time.Hour) // must not override the stored one
	recordIssued(t, s, renewed)

	want := renewed
	want.LastSeen = seen
	if diff := cmp.Diff([]Issued{want}, identities(t, s)); diff != "" {
		t.Errorf("Identities() after renewal mismatch (-want +got):\n%s", diff)
	}
}

func TestTouchUnknownIdentity(t *testing.T) {
	s := newStore(t)
	recordIssued(t, s, newIssued("a", "1"))

	if err := s.Touch("spiffe://airlock/agent/ghost", t0); err != nil {
		t.Fatalf("Touch(unknown) = %v, want nil", err)
	}
	want := []Issued{newIssued("a", "1")}
	if diff := cmp.Diff(want, identities(t, s)); diff != "" {
		t.Errorf("Identities() after Touch(unknown) mismatch (-want +got):\n%s", diff)
	}
}

func TestIdentitiesSorted(t *testing.T) {
	s := newStore(t)
	recordIssued(t, s, newIssued("c", "3"), newIssued("a", "1"), newIssued("b", "2"))

	var got []string
	for _, c := range identities(t, s) {
		got = append(got, c.Identity)
	}
	want := []string{
		"spiffe://airlock/agent/a",
		"spiffe://airlock/agent/b",
		"spiffe://airlock/agent/c",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Identities() order mismatch (-want +got):\n%s", diff)
	}
}

func TestPutGetList(t *testing.T) {
	s := newStore(t)
	for _, kv := range []KV{{"k2", []byte("two")}, {"k1", []byte("one")}, {"k2", []byte("TWO")}} {
		if err := s.Put("keys", kv.Key, kv.Value); err != nil {
			t.Fatalf("Put(keys, %q) = %v", kv.Key, err)
		}
	}

	got, err := s.Get("keys", "k2")
	if err != nil || string(got) != "TWO" {
		t.Errorf("Get(keys, k2) = %q, %v, want %q, nil", got, err, "TWO")
	}
	list, err := s.List("keys")
	if err != nil {
		t.Fatalf("List(keys) = %v", err)
	}
	want := []KV{{"k1", []byte("one")}, {"k2", []byte("TWO")}}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("List(keys) mismatch (-want +got):\n%s", diff)
	}
	if list, err := s.List("missing"); err != nil || len(list) != 0 {
		t.Errorf("List(missing) = %v, %v, want empty, nil", list, err)
	}
}

func TestGetMissing(t *testing.T) {
	s := newStore(t)
	if err := s.Put("keys", "k1", []byte("one")); err != nil {
		t.Fatalf("Put(keys, k1) = %v", err)
	}
	putTokens(t, s, newToken("t1"))

	tests := []struct {
		name   string
		bucket string
		key    string
	}{
		{"missing key", "keys", "k2"},
		{"missing bucket", "other", "k1"},
		{"typed bucket is not generic", bucketJoinTokens, "t1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(tt.bucket, tt.key)
			if got != nil || err != nil {
				t.Errorf("Get(%q, %q) = %q, %v, want nil, nil", tt.bucket, tt.key, got, err)
			}
		})
	}
}

func TestGenericBucketsDoNotCollide(t *testing.T) {
	s := newStore(t)
	if err := s.Put(bucketJoinTokens, "t1", []byte("not a token")); err != nil {
		t.Fatalf("Put(%q, t1) = %v", bucketJoinTokens, err)
	}

	if ids := tokenIDs(t, s); len(ids) != 0 {
		t.Errorf("JoinTokens() = %q, want none", ids)
	}
	putTokens(t, s, newToken("t1"))
}

func TestOpenModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "edge.db")
	openStore(t, path)

	for _, tt := range []struct {
		path string
		want os.FileMode
	}{
		{path, 0o600},
		{dir, 0o700 | os.ModeDir},
	} {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatalf("Stat(%q) = %v", tt.path, err)
		}
		if got := fi.Mode(); got != tt.want {
			t.Errorf("mode of %s = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	openStore(t, path)

	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatalf("second Open(%q) = nil error, want in use", path)
	}
	const busy = " is in use by another process (is another edge running on this data folder?)"
	wantMsg := "store " + path + busy
	if !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("second Open(%q) = %q, want it to contain %q", path, err, wantMsg)
	}
	if !errors.Is(err, bolterrors.ErrTimeout) {
		t.Errorf("second Open(%q) = %v, want it to wrap %v", path, err, bolterrors.ErrTimeout)
	}
}
