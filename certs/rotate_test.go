package certs

import (
	"errors"
	"os"
	"slices"
	"testing"
)

func rolesOf(a *Authority) []string {
	var roles []string
	for _, r := range a.Roots() {
		roles = append(roles, r.Role)
	}
	return roles
}

func TestRotationWithOverlap(t *testing.T) {
	a, dir := newTestCA(t)
	old := issue(t, a, KindAgent, "alice")
	oldRoot := a.Root()

	if err := a.Activate(); !errors.Is(err, ErrNothingPrepared) {
		t.Fatalf("Activate before Prepare = %v, want ErrNothingPrepared", err)
	}
	if err := a.Prepare(); err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	if err := a.Prepare(); !errors.Is(err, ErrRotationPending) {
		t.Fatalf("second Prepare() = %v, want ErrRotationPending", err)
	}
	if got := len(a.Bundle()); got != 2 {
		t.Fatalf("bundle after Prepare has %d roots, want 2", got)
	}
	if !a.Root().Equal(oldRoot) {
		t.Fatal("Prepare changed the active root")
	}
	if err := verifyChain(issue(t, a, KindAgent, "bob").Chain, a.Pool(), 0); err != nil {
		t.Fatalf("leaf issued while prepared does not verify: %v", err)
	}

	if err := a.Activate(); err != nil {
		t.Fatalf("Activate() = %v", err)
	}
	if a.Root().Equal(oldRoot) {
		t.Fatal("Activate kept the old root active")
	}
	fresh := issue(t, a, KindAgent, "alice")
	if !fresh.Chain[1].Equal(a.Intermediate()) || fresh.Chain[1].CheckSignatureFrom(a.Root()) != nil {
		t.Fatal("leaf issued after Activate is not signed by the new pair")
	}
	for name, chain := range map[string]*Credential{"old": old, "new": fresh} {
		if err := verifyChain(chain.Chain, a.Pool(), 0); err != nil {
			t.Errorf("%s leaf does not verify during the overlap: %v", name, err)
		}
	}

	// A restarted edge sees the same state.
	loaded, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s) = %v", dir, err)
	}
	if got, want := rolesOf(loaded), []string{"active", "previous"}; !slices.Equal(got, want) {
		t.Fatalf("roles after reload = %v, want %v", got, want)
	}

	if err := a.Prepare(); err != nil {
		t.Fatalf("Prepare() during overlap = %v", err)
	}
	if err := a.Activate(); !errors.Is(err, ErrPreviousTrusted) {
		t.Fatalf("Activate with a previous root = %v, want ErrPreviousTrusted", err)
	}
	if err := a.Retire(); err != nil {
		t.Fatalf("Retire() = %v", err)
	}
	if err := a.Retire(); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("second Retire() = %v, want ErrNoPrevious", err)
	}
	if err := verifyChain(old.Chain, a.Pool(), 0); err == nil {
		t.Error("a leaf of the retired root still verifies")
	}
	if err := verifyChain(fresh.Chain, a.Pool(), 0); err != nil {
		t.Errorf("a leaf of the active root no longer verifies: %v", err)
	}
}

func TestLoadFinishesInterruptedActivation(t *testing.T) {
	a, dir := newTestCA(t)
	if err := a.Prepare(); err != nil {
		t.Fatal(err)
	}
	next := a.Bundle()[1]
	// The first half of Activate, then a crash.
	f := caFiles{dir}
	if err := movePair(f, f.previous()); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatalf("Load after interrupted activation = %v", err)
	}
	if !loaded.Root().Equal(next) {
		t.Error("Load did not make the prepared root active")
	}
	if _, err := os.Stat(f.next().dir); !os.IsNotExist(err) {
		t.Errorf("next folder left behind: %v", err)
	}
	if got, want := rolesOf(loaded), []string{"active", "previous"}; !slices.Equal(got, want) {
		t.Errorf("roles = %v, want %v", got, want)
	}
}
