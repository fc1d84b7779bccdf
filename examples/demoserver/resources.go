package demoserver

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// ReadmeURI is the URI of the static readme resource.
const ReadmeURI = "demo://readme"

// noteScheme prefixes the URI of every note resource.
const noteScheme = "note://"

// NoteURI returns the URI of the resource holding the note called title. The
// title is percent-encoded as RFC 6570 simple expansion does, so the URI
// matches the note://{title} template.
func NoteURI(title string) string {
	var b strings.Builder
	b.WriteString(noteScheme)
	for i := range len(title) {
		c := title[i]
		if isUnreserved(c) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~", c) >= 0
}

// addResources registers demo://readme and the note://{title} template.
func (d *demo) addResources(srv *mcp.Server) {
	srv.AddResource(&mcp.Resource{
		URI:         ReadmeURI,
		Name:        "readme",
		Title:       "About the Airlock demo server",
		Description: "What this server offers and how to try it through Airlock.",
		MIMEType:    "text/markdown",
		Size:        int64(len(readme)),
	}, readReadme)
	srv.AddResourceTemplate(&mcp.ResourceTemplate{
		URITemplate: noteScheme + "{title}",
		Name:        "note",
		Title:       "Saved notes",
		Description: "One resource per note saved with add_note; list_notes gives the titles. " +
			"Titles are percent-encoded in the URI.",
		MIMEType: "text/plain",
	}, d.readNoteResource)
}

func readReadme(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	return &mcp.ReadResourceResult{
		Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/markdown", Text: readme}},
	}, nil
}

func (d *demo) readNoteResource(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	uri := req.Params.URI
	title, err := titleFromURI(uri)
	if err != nil {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	body, ok := d.notes.get(title)
	if !ok {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	return &mcp.ReadResourceResult{
		Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "text/plain", Text: body}},
	}, nil
}

// titleFromURI extracts the note title from a note:// URI.
func titleFromURI(uri string) (string, error) {
	escaped, ok := strings.CutPrefix(uri, noteScheme)
	if !ok {
		return "", fmt.Errorf("parse note uri: %q lacks the %s prefix", uri, noteScheme)
	}
	title, err := url.PathUnescape(escaped)
	if err != nil {
		return "", fmt.Errorf("parse note uri: %w", err)
	}
	return title, nil
}

// addPrompts registers summarize_notes.
func (d *demo) addPrompts(srv *mcp.Server) {
	srv.AddPrompt(&mcp.Prompt{
		Name:        "summarize_notes",
		Title:       "Summarize notes",
		Description: "Ask the model to summarize every saved note.",
		Arguments: []*mcp.PromptArgument{{
			Name:        "focus",
			Description: "Optional topic the summary should concentrate on.",
		}},
	}, d.summarizeNotes)
}

func (d *demo) summarizeNotes(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	text := summaryPrompt(d.notes.all(), req.Params.Arguments["focus"])
	return &mcp.GetPromptResult{
		Description: "Summarize the saved notes",
		Messages: []*mcp.PromptMessage{{
			Role:    "user",
			Content: &mcp.TextContent{Text: text},
		}},
	}, nil
}

// summaryPrompt builds the user message of summarize_notes.
func summaryPrompt(notes []note, focus string) string {
	if len(notes) == 0 {
		return "There are no saved notes yet. Say so, and suggest saving one with add_note."
	}
	var b strings.Builder
	b.WriteString("Summarize the following notes")
	if focus != "" {
		fmt.Fprintf(&b, ", focusing on %s", focus)
	}
	b.WriteString(".\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "\n## %s\n%s\n", n.title, n.body)
	}
	return b.String()
}

// readme is the text of demo://readme.
const readme = `# Airlock demo server

This MCP server stands in for an internal service that Airlock exposes to AI
agents through its zero-trust tunnel. Everything it stores lives in memory.

Try:

- add_note / list_notes / read_note, and the note://{title} resources
- read_file, confined to the sandbox folder the operator configured
- echo and blob for latency and large-body checks
- count for progress notifications, wait for cancellation
- ask for a server-to-client question (elicitation, or sampling)
- announce for a log notification delivered on the standalone stream
- the summarize_notes prompt
`
