package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const casesDoc = "# Cases\n\n" +
	"Some text, and a table that is not one of cases:\n\n" +
	"| parameter | meaning |\n|---|---|\n| `resource` | the endpoint |\n\n" +
	"| Area | Case | Expected answer | Test |\n" +
	"|------|------|:----------------|------|\n" +
	"| tokens | alg none | 401 `invalid_token` | `edge:TestTokens/alg_none` |\n" +
	"| tokens | a \\| in a cell | 401 | edge:TestTokens/pipe |\n" +
	"| http | slowloris | closed | ./edge/:TestSlow |\n" +
	"| mcp | batch | 400 | pkg/mcp:TestParse/batch |\n" +
	"| mcp | skipped | 400 | pkg/mcp:TestSkipped |\n" +
	"| mcp | parent failed | 400 | pkg/mcp:TestParent/child |\n" +
	"| mcp | slash in a name | 400 | pkg/mcp:TestSlash/a/b |\n" +
	"| mcp | missing | 400, JSON-RPC -32600 naming the duplicate key; upstream sees nothing | pkg/mcp:TestMissing |\n" +
	"\nText after the table.\n"

func TestParseCases(t *testing.T) {
	cases, err := parseCases(strings.NewReader(casesDoc))
	if err != nil {
		t.Fatalf("parseCases() = %v", err)
	}
	want := []testCase{
		{Area: "tokens", Case: "alg none", Expected: "401 `invalid_token`", Dir: "edge", Test: "TestTokens/alg_none"},
		{Area: "tokens", Case: "a | in a cell", Expected: "401", Dir: "edge", Test: "TestTokens/pipe"},
		{Area: "http", Case: "slowloris", Expected: "closed", Dir: "edge", Test: "TestSlow"},
		{Area: "mcp", Case: "batch", Expected: "400", Dir: "pkg/mcp", Test: "TestParse/batch"},
		{Area: "mcp", Case: "skipped", Expected: "400", Dir: "pkg/mcp", Test: "TestSkipped"},
		{Area: "mcp", Case: "parent failed", Expected: "400", Dir: "pkg/mcp", Test: "TestParent/child"},
		{Area: "mcp", Case: "slash in a name", Expected: "400", Dir: "pkg/mcp", Test: "TestSlash/a/b"},
		{Area: "mcp", Case: "missing", Expected: "400, JSON-RPC -32600 naming the duplicate key; upstream sees nothing",
			Dir: "pkg/mcp", Test: "TestMissing"},
	}
	if diff := cmp.Diff(want, cases); diff != "" {
		t.Errorf("parseCases() (-want +got):\n%s", diff)
	}
}

func TestParseCasesOtherColumnOrder(t *testing.T) {
	doc := "| Test | Notes | Expected answer | Case | Area |\n|--|--|--|--|--|\n| edge:TestX | n | 403 | c | a |\n"
	cases, err := parseCases(strings.NewReader(doc))
	want := []testCase{{Area: "a", Case: "c", Expected: "403", Dir: "edge", Test: "TestX"}}
	if err != nil || !cmp.Equal(cases, want) {
		t.Errorf("parseCases() = %+v, %v; want %+v", cases, err, want)
	}
}

func TestParseCasesRefuses(t *testing.T) {
	head := "| Area | Case | Expected answer | Test |\n|---|---|---|---|\n"
	tests := []struct {
		name, doc, want string
	}{
		{"no table", "# Nothing\n", "no table"},
		{"space in a subtest name", head + "| a | c | 400 | edge:TestX/two words |\n", `"edge:TestX/two words"`},
		{"no package", head + "| a | c | 400 | TestX |\n", "not dir:TestName"},
		{"not a test", head + "| a | c | 400 | edge:BenchmarkX |\n", "not dir:TestName"},
		{"two tests", head + "| a | c | 400 | edge:TestX, edge:TestY |\n", "not dir:TestName"},
		{"missing cell", head + "| a | c | edge:TestX |\n", "line 3: 3 cells, want 4"},
		{"no expected answer", head + "| a | c |  | edge:TestX |\n", "expected answer are required"},
		{"same test twice", head + "| a | c | 400 | edge:TestX |\n| a | d | 401 | ./edge:TestX |\n",
			"line 4: edge:TestX is already the test of line 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseCases(strings.NewReader(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseCases() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestGoTestArgs(t *testing.T) {
	cases, err := parseCases(strings.NewReader(casesDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := "-run=^(TestMissing|TestParent|TestParse|TestSkipped|TestSlash|TestSlow|TestTokens)$ ./edge/ ./pkg/mcp/"
	if got := goTestArgs(cases); got != want {
		t.Errorf("goTestArgs() = %q, want %q", got, want)
	}
}

// stream of casesDoc's tests: TestTokens/alg_none and TestTokens/pipe
// pass; TestSlow passes; TestParse/batch fails; TestSkipped is skipped;
// TestParent/child passes but TestParent itself fails; TestSlash/a/b
// (a subtest named "a/b") passes; TestMissing never runs. A test outside
// the table fails, and its output is printed.
const goTestJSON = `{"Action":"start","Package":"example.com/m/edge"}
{"Action":"run","Package":"example.com/m/edge","Test":"TestTokens"}
{"Action":"run","Package":"example.com/m/edge","Test":"TestTokens/alg_none"}
{"Action":"pass","Package":"example.com/m/edge","Test":"TestTokens/alg_none"}
{"Action":"run","Package":"example.com/m/edge","Test":"TestTokens/pipe"}
{"Action":"pass","Package":"example.com/m/edge","Test":"TestTokens/pipe"}
{"Action":"pass","Package":"example.com/m/edge","Test":"TestTokens"}
{"Action":"run","Package":"example.com/m/edge","Test":"TestSlow"}
{"Action":"pass","Package":"example.com/m/edge","Test":"TestSlow"}
{"Action":"pass","Package":"example.com/m/edge"}
{"Action":"start","Package":"example.com/m/pkg/mcp"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestParse"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestParse/batch"}
{"Action":"output","Package":"example.com/m/pkg/mcp","Test":"TestParse/batch","Output":"    parse_test.go:9: Parse() = nil, want an error\n"}
{"Action":"fail","Package":"example.com/m/pkg/mcp","Test":"TestParse/batch"}
{"Action":"fail","Package":"example.com/m/pkg/mcp","Test":"TestParse"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestSkipped"}
{"Action":"skip","Package":"example.com/m/pkg/mcp","Test":"TestSkipped"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestParent"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestParent/child"}
{"Action":"pass","Package":"example.com/m/pkg/mcp","Test":"TestParent/child"}
{"Action":"output","Package":"example.com/m/pkg/mcp","Test":"TestParent","Output":"    parse_test.go:30: 1 refused request reached the upstream\n"}
{"Action":"fail","Package":"example.com/m/pkg/mcp","Test":"TestParent"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestSlash"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestSlash/a/b"}
{"Action":"pass","Package":"example.com/m/pkg/mcp","Test":"TestSlash/a/b"}
{"Action":"pass","Package":"example.com/m/pkg/mcp","Test":"TestSlash"}
{"Action":"run","Package":"example.com/m/pkg/mcp","Test":"TestOther"}
{"Action":"fail","Package":"example.com/m/pkg/mcp","Test":"TestOther"}
{"Action":"fail","Package":"example.com/m/pkg/mcp"}
`

func TestReport(t *testing.T) {
	cases, err := parseCases(strings.NewReader(casesDoc))
	if err != nil {
		t.Fatal(err)
	}
	var printed strings.Builder
	s, err := readStream(strings.NewReader(goTestJSON), &printed)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"parse_test.go:9: Parse() = nil", "parse_test.go:30: 1 refused request",
		"--- FAIL: package example.com/m/pkg/mcp"} {
		if !strings.Contains(printed.String(), want) {
			t.Errorf("printed %q, want it to contain %q", printed.String(), want)
		}
	}

	wantResults := map[string]string{
		"TestTokens/alg_none": "pass",
		"TestTokens/pipe":     "pass",
		"TestSlow":            "pass",
		"TestParse/batch":     "FAIL",
		"TestSkipped":         "skipped",
		"TestParent/child":    "FAIL",
		"TestSlash/a/b":       "pass",
		"TestMissing":         "not run",
	}
	for _, tc := range cases {
		if got := s.result("example.com/m", tc); got != wantResults[tc.Test] {
			t.Errorf("result(%s) = %q, want %q", tc.Test, got, wantResults[tc.Test])
		}
	}

	var out strings.Builder
	if report(&out, "security", "example.com/m", cases, s) {
		t.Error("report() = true with failed cases")
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(out.String(), "\nsecurity: 4 passed, 4 failed\n") {
		t.Errorf("report() wrote\n%s\nwant the line security: 4 passed, 4 failed", out.String())
	}
	// Every row starts with its result, in one column; a wrapped cell
	// continues on the next line.
	for _, want := range []string{
		"RESULT   AREA    CASE             EXPECTED ANSWER                                 TEST",
		"pass     tokens  alg none         401 invalid_token                               edge:TestTokens/alg_none",
		"FAIL     mcp     parent failed    400                                             pkg/mcp:TestParent/child",
		"not run  mcp     missing          400, JSON-RPC -32600 naming the duplicate key;  pkg/mcp:TestMissing",
		"                                  upstream sees nothing",
	} {
		if !containsLine(lines, want) {
			t.Errorf("report() wrote\n%s\nwant the line %q", out.String(), want)
		}
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestReportBrokenPackage(t *testing.T) {
	cases := []testCase{{Area: "a", Case: "c", Expected: "e", Dir: "edge", Test: "TestX"}}
	stream := `{"Action":"run","Package":"example.com/m/edge","Test":"TestX"}
{"Action":"pass","Package":"example.com/m/edge","Test":"TestX"}
{"Action":"pass","Package":"example.com/m/edge"}
`
	s, err := readStream(strings.NewReader(stream), &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if !report(&out, "security", "example.com/m", cases, s) || !strings.Contains(out.String(), "security: 1 passed, 0 failed") {
		t.Errorf("report() of a passing case = false or\n%s", out.String())
	}

	// A package that did not build fails the suite even with every
	// case passing elsewhere.
	broken := stream + `{"ImportPath":"example.com/m/pkg/x","Action":"build-output","Output":"x.go:1: syntax error\n"}
{"ImportPath":"example.com/m/pkg/x","Action":"build-fail"}
{"Action":"fail","Package":"example.com/m/pkg/x","FailedBuild":"example.com/m/pkg/x"}
`
	var printed strings.Builder
	s, err = readStream(strings.NewReader(broken), &printed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(printed.String(), "x.go:1: syntax error") {
		t.Errorf("printed %q, want the build error", printed.String())
	}
	if report(&strings.Builder{}, "security", "example.com/m", cases, s) {
		t.Error("report() = true with a package that did not build")
	}
}

func TestReadStreamCounts(t *testing.T) {
	s, err := readStream(strings.NewReader(goTestJSON+"not JSON\n"), &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	// Passed: alg_none, pipe, TestTokens, TestSlow, child, a/b, TestSlash.
	// Failed: batch, TestParse, TestParent, TestOther.
	if s.passed != 7 || s.failed != 4 || !cmp.Equal(s.brokenPackages, []string{"example.com/m/pkg/mcp"}) {
		t.Errorf("readStream() = %d passed, %d failed, broken %v; want 7, 4, [example.com/m/pkg/mcp]",
			s.passed, s.failed, s.brokenPackages)
	}
}

func TestWrap(t *testing.T) {
	tests := []struct {
		text  string
		width int
		want  []string
	}{
		{"one two three", 0, []string{"one two three"}},
		{"one two three", 7, []string{"one two", "three"}},
		{"a verylongword b", 4, []string{"a", "verylongword", "b"}},
		{"", 5, []string{""}},
	}
	for _, tt := range tests {
		if got := wrap(tt.text, tt.width); !cmp.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tt.text, tt.width, got, tt.want)
		}
	}
}
