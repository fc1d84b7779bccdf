// Command testcount reads `go test -json` on stdin and prints one line,
// "SUITE: N passed, N failed", counting every test and subtest, with the
// output of each that failed before it. It exits 1 if anything failed,
// including a package that failed to build or run.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	suite := "tests"
	if len(os.Args) > 1 {
		suite = os.Args[1]
	}
	output := map[string]*strings.Builder{}
	passed, failed, broken := 0, 0, 0
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 16<<20)
	for in.Scan() {
		var e event
		if json.Unmarshal(in.Bytes(), &e) != nil {
			fmt.Println(in.Text()) // a build error, say
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if output[key] == nil {
				output[key] = &strings.Builder{}
			}
			output[key].WriteString(e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			}
		case "fail":
			if e.Test == "" {
				broken++
				fmt.Printf("--- FAIL: package %s\n", e.Package)
			} else {
				failed++
			}
			if b := output[key]; b != nil {
				fmt.Print(b.String())
			}
		}
		if e.Action == "pass" || e.Action == "skip" {
			delete(output, key)
		}
	}
	fmt.Printf("%s: %d passed, %d failed\n", suite, passed, failed+broken)
	if failed+broken > 0 {
		os.Exit(1)
	}
}
