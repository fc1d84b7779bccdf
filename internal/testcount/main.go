// Command testcount reads `go test -json` on stdin and prints one line,
// "SUITE: N passed, N failed", with the output of each test that failed
// before it. It exits 1 if anything failed, including a package that
// failed to build or run.
//
// By default it counts every test and subtest. With -cases FILE it counts
// the rows of the table of cases in the Markdown file FILE instead (see
// [parseCases]; docs/security.md is one): it prints the table with each
// row's result, pass, FAIL, skipped or "not run", and then the line. A
// row passes only when its test, and every test that runs it as a
// subtest, passed: a table test may check what reached the upstream once,
// after all its cases. With -runargs it prints instead the arguments for
// go test that run every row's test, and reads nothing.
//
// Usage:
//
//	go test -json ./... | testcount [SUITE]
//	go test -json $(testcount -cases FILE -runargs) | testcount -cases FILE [SUITE]
//
// It runs in the module's root folder: a row's package folder is
// relative to the module that go.mod there names.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	casesFile := flag.String(
		"cases",
		"",
		"count the rows of the table of cases in this Markdown `file`",
	)
	runArgs := flag.Bool(
		"runargs",
		false,
		"print the go test arguments that run every row of -cases, and exit",
	)
	flag.Usage = func() {
		out := flag.CommandLine.Output()
		fmt.Fprintln(out, "usage: go test -json ... | testcount [-cases file] [suite]")
		fmt.Fprintln(out, "       testcount -cases file -runargs")
		flag.PrintDefaults()
	}
	flag.Parse()
	suite := "tests"
	if flag.NArg() > 0 {
		suite = flag.Arg(0)
	}

	ok, err := run(suite, *casesFile, *runArgs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testcount: %v\n", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// run does what the flags ask and reports whether everything passed.
func run(suite, casesFile string, runArgs bool) (bool, error) {
	if casesFile == "" {
		if runArgs {
			return false, fmt.Errorf("-runargs needs -cases")
		}
		return countTests(suite)
	}
	cases, err := loadCases(casesFile)
	if err != nil {
		return false, err
	}
	if runArgs {
		fmt.Println(goTestArgs(cases))
		return true, nil
	}
	module, err := modulePath("go.mod")
	if err != nil {
		return false, err
	}
	s, err := readStream(os.Stdin, os.Stdout)
	if err != nil {
		return false, err
	}
	return report(os.Stdout, suite, module, cases, s), nil
}

// countTests counts every test and subtest of the stream on stdin.
func countTests(suite string) (bool, error) {
	s, err := readStream(os.Stdin, os.Stdout)
	if err != nil {
		return false, err
	}
	failed := s.failed + len(s.brokenPackages)
	fmt.Printf("%s: %d passed, %d failed\n", suite, s.passed, failed)
	return failed == 0, nil
}
