package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// testID names a test or subtest as go test reports it: the package's
// import path and the name with spaces turned to underscores.
type testID struct {
	pkg, test string
}

// stream is what a `go test -json` stream said: how each test ended, and
// which packages failed. read prints the output of every test and
// package that failed as it goes.
type stream struct {
	// started holds every test that began to run.
	started map[testID]bool
	// outcomes holds how each test ended: "pass", "fail" or "skip".
	outcomes map[testID]string
	// passed and failed count the tests and subtests that ended so.
	passed, failed int
	// brokenPackages lists the packages that failed, in the order of
	// their failure: one whose test failed, or that did not build or run.
	brokenPackages []string
}

// readStream reads a `go test -json` stream from r and writes to w the
// output of each test and package that failed, and every line that is
// not JSON (such as a build error).
func readStream(r io.Reader, w io.Writer) (*stream, error) {
	s := &stream{started: map[testID]bool{}, outcomes: map[testID]string{}}
	output := map[testID]*strings.Builder{}
	in := bufio.NewScanner(r)
	in.Buffer(nil, 16<<20)
	for in.Scan() {
		var e event
		if json.Unmarshal(in.Bytes(), &e) != nil {
			fmt.Fprintln(w, in.Text())
			continue
		}
		id := testID{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "run":
			s.started[id] = true
		case "output":
			if output[id] == nil {
				output[id] = &strings.Builder{}
			}
			output[id].WriteString(e.Output)
		case "pass", "skip":
			s.end(id, e.Action)
			delete(output, id)
		case "fail":
			s.end(id, e.Action)
			if e.Test == "" {
				fmt.Fprintf(w, "--- FAIL: package %s\n", e.Package)
			}
			if b := output[id]; b != nil {
				fmt.Fprint(w, b.String())
			}
		}
	}
	if err := in.Err(); err != nil {
		return nil, fmt.Errorf("reading go test -json: %w", err)
	}
	return s, nil
}

// end records how a test, or a whole package when id.test is "", ended.
func (s *stream) end(id testID, action string) {
	if id.test == "" {
		if action == "fail" {
			s.brokenPackages = append(s.brokenPackages, id.pkg)
		}
		return
	}
	s.outcomes[id] = action
	switch action {
	case "pass":
		s.passed++
	case "fail":
		s.failed++
	}
}
