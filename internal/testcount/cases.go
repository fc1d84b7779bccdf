package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode"
)

// testCase is one row of a table of cases: what is tried, the answer
// expected, and the one test that proves it.
type testCase struct {
	Area, Case, Expected string
	// Dir is the test's package folder relative to the module root
	// ("edge", "pkg/mcp"; "." for the root).
	Dir string
	// Test is the test's name as go test reports it: "TestX" or
	// "TestX/sub_name", spaces in subtest names turned to underscores.
	Test string
}

// Column headings of a table of cases, compared without case.
var caseColumns = []string{"area", "case", "expected answer", "test"}

// loadCases reads the table of cases in the Markdown file path.
func loadCases(path string) ([]testCase, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading cases: %w", err)
	}
	defer f.Close()
	cases, err := parseCases(f)
	if err != nil {
		return nil, fmt.Errorf("reading cases from %s: %w", path, err)
	}
	return cases, nil
}

// parseCases reads the rows of every Markdown table in r whose columns
// are Area, Case, Expected answer and Test, in any order, with any
// others. A Test cell names exactly one test as dir:TestName or
// dir:TestName/subtest_name, optionally in backticks; no two rows may
// name the same test. It reports every malformed row at once.
func parseCases(r io.Reader) ([]testCase, error) {
	var (
		cases   []testCase
		errs    []error
		columns map[string]int // of the table being read, or nil
		width   int
		seen    = map[string]int{}
	)
	in := bufio.NewScanner(r)
	for n := 1; in.Scan(); n++ {
		line := strings.TrimSpace(in.Text())
		if !strings.HasPrefix(line, "|") {
			columns = nil
			continue
		}
		cells := splitRow(line)
		if columns == nil {
			columns, width = caseHeader(cells)
			continue
		}
		if isDelimiterRow(cells) {
			continue
		}
		tc, err := newCase(cells, columns, width, n)
		key := tc.Dir + ":" + tc.Test
		if err == nil && seen[key] != 0 {
			err = fmt.Errorf("line %d: %s is already the test of line %d", n, key, seen[key])
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seen[key] = n
		cases = append(cases, tc)
	}
	if err := in.Err(); err != nil {
		return nil, err
	}
	if len(cases) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New(
			"no table with the columns Area, Case, Expected answer and Test"))
	}
	return cases, errors.Join(errs...)
}

// caseHeader returns the index of each column of a table of cases, and
// the number of cells, if cells is the heading row of one; else nil.
func caseHeader(cells []string) (map[string]int, int) {
	columns := map[string]int{}
	for i, c := range cells {
		columns[strings.ToLower(c)] = i
	}
	for _, want := range caseColumns {
		if _, ok := columns[want]; !ok {
			return nil, 0
		}
	}
	return columns, len(cells)
}

// splitRow splits a Markdown table row into its trimmed cells; `\|`
// stands for a | inside a cell.
func splitRow(line string) []string {
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, `\|`) {
		line = strings.TrimSuffix(line, "|")
	}
	var cells []string
	var cell strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
		default:
			cell.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// isDelimiterRow reports whether cells are those of the row under a
// table's heading: dashes, with colons for alignment.
func isDelimiterRow(cells []string) bool {
	for _, c := range cells {
		if c == "" || strings.Trim(c, ":-") != "" {
			return false
		}
	}
	return true
}

// testCellPattern is a Test cell: a package folder, a colon, and a test
// name as go test reports it (no spaces).
var testCellPattern = regexp.MustCompile(`^([^\s:]+):(Test[^\s]*)$`)

// newCase makes the case of the table row on line, whose table has width
// columns.
func newCase(cells []string, columns map[string]int, width, line int) (testCase, error) {
	if len(cells) != width {
		return testCase{}, fmt.Errorf("line %d: %d cells, want %d", line, len(cells), width)
	}
	cell := strings.Trim(cells[columns["test"]], "`")
	m := testCellPattern.FindStringSubmatch(cell)
	if m == nil {
		const want = "dir:TestName or dir:TestName/subtest_name " +
			"(go test turns spaces in subtest names to underscores)"
		return testCase{}, fmt.Errorf("line %d: test %q is not %s", line, cell, want)
	}
	tc := testCase{
		Area:     cells[columns["area"]],
		Case:     cells[columns["case"]],
		Expected: cells[columns["expected answer"]],
		Dir:      strings.TrimSuffix(strings.TrimPrefix(m[1], "./"), "/"),
		Test:     m[2],
	}
	if tc.Dir == "" {
		tc.Dir = "."
	}
	if tc.Case == "" || tc.Expected == "" {
		return testCase{}, fmt.Errorf("line %d: a case and its expected answer are required", line)
	}
	return tc, nil
}

// goTestArgs returns the arguments for go test that run the test of
// every case: a -run pattern of their top-level tests (which runs all
// their subtests), and their packages.
func goTestArgs(cases []testCase) string {
	var tests, dirs []string
	for _, tc := range cases {
		top, _, _ := strings.Cut(tc.Test, "/")
		tests = append(tests, regexp.QuoteMeta(top))
		dirs = append(dirs, "./"+strings.TrimPrefix(tc.Dir+"/", "./"))
	}
	slices.Sort(tests)
	slices.Sort(dirs)
	return fmt.Sprintf("-run=^(%s)$ %s",
		strings.Join(slices.Compact(tests), "|"), strings.Join(slices.Compact(dirs), " "))
}

// modulePath reads the module path from the go.mod file at path.
func modulePath(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the module path: %w", err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", fmt.Errorf("reading the module path: no module line in %s", path)
}

// Results of a case.
const (
	resultPass    = "pass"
	resultFail    = "FAIL"
	resultSkipped = "skipped"
	resultNotRun  = "not run"
)

// result returns how the test of tc ended in s. It passed only if every
// test that ran it as a subtest passed too; one that began and never
// ended (a crash, a timeout) did not.
func (s *stream) result(module string, tc testCase) string {
	pkg := module
	if tc.Dir != "." {
		pkg += "/" + tc.Dir
	}
	switch s.outcomes[testID{pkg, tc.Test}] {
	case "":
		return resultNotRun
	case "skip":
		return resultSkipped
	case "fail":
		return resultFail
	}
	// A slash may also be part of a subtest's own name: only a prefix
	// that ran is a test.
	for name := tc.Test; strings.Contains(name, "/"); {
		name = name[:strings.LastIndex(name, "/")]
		id := testID{pkg, name}
		if s.started[id] && s.outcomes[id] != "pass" {
			return resultFail
		}
	}
	return resultPass
}

// report writes the table of cases with each one's result, then the line
// "SUITE: N passed, N failed" counting cases. It reports whether every
// case passed and no package failed.
func report(w io.Writer, suite, module string, cases []testCase, s *stream) bool {
	rows := [][]string{{"RESULT", "AREA", "CASE", "EXPECTED ANSWER", "TEST"}}
	passed := 0
	for _, tc := range cases {
		res := s.result(module, tc)
		if res == resultPass {
			passed++
		}
		rows = append(rows, []string{res, tc.Area, tc.Case, tc.Expected, tc.Dir + ":" + tc.Test})
	}
	fmt.Fprintln(w)
	printTable(w, rows, []int{0, 0, 32, 48, 0})
	failed := len(cases) - passed
	fmt.Fprintf(w, "%s: %d passed, %d failed\n", suite, passed, failed)
	if n := len(s.brokenPackages); n > 0 && failed == 0 {
		fmt.Fprintf(w, "%s: %d packages failed outside the cases: %s\n",
			suite, n, strings.Join(s.brokenPackages, ", "))
	}
	return failed == 0 && len(s.brokenPackages) == 0
}

// printTable writes rows as plain text in aligned columns, two spaces
// apart. A column with a non-zero wrap is wrapped at that width; Markdown
// backticks are left out.
func printTable(w io.Writer, rows [][]string, wrapAt []int) {
	var aligned strings.Builder
	tw := tabwriter.NewWriter(&aligned, 0, 4, 2, ' ', 0)
	for _, row := range rows {
		cells := make([][]string, len(row)) // column, line
		height := 0
		for j, text := range row {
			cells[j] = wrap(strings.ReplaceAll(text, "`", ""), wrapAt[j])
			height = max(height, len(cells[j]))
		}
		for k := range height {
			line := make([]string, len(cells))
			for j, c := range cells {
				if k < len(c) {
					line[j] = c[k]
				}
			}
			fmt.Fprintln(tw, strings.Join(line, "\t"))
		}
	}
	tw.Flush()
	for line := range strings.Lines(aligned.String()) {
		fmt.Fprintln(w, strings.TrimRightFunc(line, unicode.IsSpace))
	}
}

// wrap breaks text into lines of at most width runes at spaces; a word
// longer than width gets a line of its own. Width 0 means one line.
func wrap(text string, width int) []string {
	words := strings.Fields(text)
	if width <= 0 || len(words) == 0 {
		return []string{strings.Join(words, " ")}
	}
	lines := []string{words[0]}
	for _, word := range words[1:] {
		last := &lines[len(lines)-1]
		if len([]rune(*last))+1+len([]rune(word)) > width {
			lines = append(lines, word)
			continue
		}
		*last += " " + word
	}
	return lines
}
