package edge

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to. It is safe for
// concurrent use.
type fakeClock struct {
	// mu guards t.
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestSessionBindLookup(t *testing.T) {
	clock := newFakeClock()
	st := newSessionTable(time.Minute, clock.now)
	// bind stamps the binding with the clock, whatever lastUsed it had.
	b := binding{agent: "ci", connector: "db", instance: "i1", lastUsed: time.Unix(1, 0)}
	st.bind("files", "s1", b)

	got, ok := st.lookup("files", "s1")
	want := b
	want.lastUsed = clock.now()

	if !ok || got != want {
		t.Errorf("lookup(files, s1) = %+v, %v, want %+v, true", got, ok, want)
	}

	// Session IDs are scoped to their resource.
	if got, ok := st.lookup("wiki", "s1"); ok {
		t.Errorf("lookup(wiki, s1) = %+v, true, want no session on another resource", got)
	}
	if got, ok := st.lookup("files", "s2"); ok {
		t.Errorf("lookup(files, s2) = %+v, true, want an unknown session", got)
	}
}

func TestSessionRebindReplaces(t *testing.T) {
	clock := newFakeClock()
	st := newSessionTable(time.Minute, clock.now)
	st.bind("files", "s1", binding{agent: "ci", connector: "db", instance: "i1"})
	st.bind("files", "s1", binding{agent: "ci", connector: "db", instance: "i2"})
	if got, _ := st.lookup("files", "s1"); got.instance != "i2" {
		t.Errorf("lookup() after a second bind = instance %q, want i2", got.instance)
	}
}

func TestSessionExpiry(t *testing.T) {
	const idle = time.Minute
	tests := []struct {
		name  string
		after time.Duration
		want  bool
	}{
		{name: "fresh", after: 0, want: true},
		{name: "exactly the idle timeout", after: idle, want: true},
		{name: "just past the idle timeout", after: idle + time.Nanosecond, want: false},
		{name: "long gone", after: 24 * time.Hour, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			st := newSessionTable(idle, clock.now)
			st.bind("files", "s1", binding{agent: "ci"})
			clock.advance(tt.after)
			if _, ok := st.lookup("files", "s1"); ok != tt.want {
				t.Errorf("lookup() %v after bind: ok = %v, want %v", tt.after, ok, tt.want)
			}
			// An expired session is gone for good, also for sweep.
			wantLeft := 0
			if tt.want {
				wantLeft = 1
			}
			if left := st.sweep(); left != wantLeft {
				t.Errorf("sweep() after lookup = %d sessions left, want %d", left, wantLeft)
			}
		})
	}
}

func TestSessionLookupKeepsAlive(t *testing.T) {
	clock := newFakeClock()
	st := newSessionTable(time.Minute, clock.now)
	st.bind("files", "s1", binding{agent: "ci"})
	for i := range 5 {
		clock.advance(50 * time.Second)
		if _, ok := st.lookup("files", "s1"); !ok {
			t.Fatalf("lookup() %d, 50s after the last = false, want the session kept alive by use",

				i)
		}
	}
	clock.advance(61 * time.Second)
	if _, ok := st.lookup("files", "s1"); ok {
		t.Error("lookup() 61s after the last use = true, want the session expired")
	}
}

func TestSessionForget(t *testing.T) {
	st := newSessionTable(time.Minute, newFakeClock().now)
	st.bind("files", "s1", binding{agent: "ci"})
	st.bind("wiki", "s1", binding{agent: "ci"})
	st.forget("files", "s1")
	st.forget("files", "unknown")
	if _, ok := st.lookup("files", "s1"); ok {
		t.Error("lookup(files, s1) after forget = true, want false")
	}
	if _, ok := st.lookup("wiki", "s1"); !ok {
		t.Error("lookup(wiki, s1) = false, want forget to leave other resources alone")
	}
}

func TestSessionSweep(t *testing.T) {
	clock := newFakeClock()
	st := newSessionTable(time.Minute, clock.now)
	st.bind("files", "old", binding{})
	clock.advance(40 * time.Second)
	st.bind("files", "young", binding{})
	st.bind("files", "used", binding{})
	clock.advance(30 * time.Second)
	st.lookup("files", "used")

	if left := st.sweep(); left != 2 {
		t.Errorf("sweep() at 70s = %d left, want 2 (young and used)", left)
	}
	clock.advance(31 * time.Second)
	if left := st.sweep(); left != 1 {
		t.Errorf("sweep() at 101s = %d left, want 1 (used)", left)
	}
	if _, ok := st.lookup("files", "used"); !ok {
		t.Error("lookup(files, used) = false, want the session used at 70s alive at 101s")
	}
}

func TestSessionTableConcurrent(t *testing.T) {
	clock := newFakeClock()
	st := newSessionTable(time.Minute, clock.now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("s%d-%d", g, i)
				st.bind("files", id, binding{agent: "ci"})
				if _, ok := st.lookup("files", id); !ok {
					t.Errorf("lookup(files, %s) right after bind = false", id)
				}
				if i%2 == 0 {
					st.forget("files", id)
				}
				clock.advance(time.Millisecond)
				st.sweep()
			}
		})
	}
	wg.Wait()
	if left := st.sweep(); left != 8*50 {
		t.Errorf("sweep() = %d left, want %d", left, 8*50)
	}
}
