package demoserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxNotes bounds how many notes the in-memory store keeps.
const maxNotes = 10000

// maxTitleBytes bounds the length of a note title.
const maxTitleBytes = 256

// note is one saved note.
type note struct {
	title string
	body  string
}

// noteStore keeps notes in memory. It is safe for concurrent use.
type noteStore struct {
	mu    sync.RWMutex
	notes map[string]string
}

// newNoteStore returns an empty store.
func newNoteStore() *noteStore {
	return &noteStore{notes: make(map[string]string)}
}

// put saves body under title, replacing any note with that title, and
// returns how many notes are stored afterwards.
func (s *noteStore) put(title, body string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.notes[title]; !ok && len(s.notes) >= maxNotes {
		return len(s.notes), fmt.Errorf("save note: store is full (%d notes)", maxNotes)
	}
	s.notes[title] = body
	return len(s.notes), nil
}

// get returns the body of the note called title.
func (s *noteStore) get(title string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	body, ok := s.notes[title]
	return body, ok
}

// all returns every note, sorted by title.
func (s *noteStore) all() []note {
	s.mu.RLock()
	defer s.mu.RUnlock()
	notes := make([]note, 0, len(s.notes))
	for title, body := range s.notes {
		notes = append(notes, note{title: title, body: body})
	}
	slices.SortFunc(notes, func(a, b note) int { return strings.Compare(a.title, b.title) })
	return notes
}

// titles returns the note titles, sorted.
func (s *noteStore) titles() []string {
	notes := s.all()
	titles := make([]string, len(notes))
	for i, n := range notes {
		titles[i] = n.title
	}
	return titles
}

type addNoteInput struct {
	Title string `json:"title" jsonschema:"title of the note; saving under an existing title replaces that note"`
	Body  string `json:"body" jsonschema:"text of the note"`
}

type addNoteOutput struct {
	Title string `json:"title" jsonschema:"title the note was saved under"`
	Notes int    `json:"notes" jsonschema:"number of notes stored after saving"`
}

type listNotesInput struct{}

type listNotesOutput struct {
	Titles []string `json:"titles" jsonschema:"titles of all saved notes, sorted"`
}

type readNoteInput struct {
	Title string `json:"title" jsonschema:"title of the note to read"`
}

type readNoteOutput struct {
	Title string `json:"title" jsonschema:"title of the note"`
	Body  string `json:"body" jsonschema:"text of the note"`
}

// addNoteTools registers add_note, list_notes and read_note.
func (d *demo) addNoteTools(srv *mcp.Server) {
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "add_note",
		Description: "Save a note in the server's memory. Replies with the text \"saved note <title>\".",
		Annotations: &mcp.ToolAnnotations{IdempotentHint: true, DestructiveHint: new(false), OpenWorldHint: new(false)},
	}, d.addNote)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "list_notes",
		Description: "List the titles of all saved notes, one per line.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, d.listNotes)
	mcp.AddTool(srv, &mcp.Tool{
		Name:        "read_note",
		Description: "Return the body of the note with the given title. An unknown title is a tool error.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, d.readNote)
}

func (d *demo) addNote(_ context.Context, _ *mcp.CallToolRequest, in addNoteInput) (*mcp.CallToolResult, addNoteOutput, error) {
	if err := checkTitle(in.Title); err != nil {
		return nil, addNoteOutput{}, err
	}
	count, err := d.notes.put(in.Title, in.Body)
	if err != nil {
		return nil, addNoteOutput{}, err
	}
	return textResult("saved note " + in.Title), addNoteOutput{Title: in.Title, Notes: count}, nil
}

func (d *demo) listNotes(context.Context, *mcp.CallToolRequest, listNotesInput) (*mcp.CallToolResult, listNotesOutput, error) {
	titles := d.notes.titles()
	text := strings.Join(titles, "\n")
	if len(titles) == 0 {
		text = "no notes"
	}
	return textResult(text), listNotesOutput{Titles: titles}, nil
}

func (d *demo) readNote(_ context.Context, _ *mcp.CallToolRequest, in readNoteInput) (*mcp.CallToolResult, readNoteOutput, error) {
	body, ok := d.notes.get(in.Title)
	if !ok {
		return nil, readNoteOutput{}, fmt.Errorf("read note: no note titled %q", in.Title)
	}
	return textResult(body), readNoteOutput{Title: in.Title, Body: body}, nil
}

// checkTitle reports whether title can name a note.
func checkTitle(title string) error {
	if title == "" {
		return errors.New("save note: title is empty")
	}
	if len(title) > maxTitleBytes {
		return fmt.Errorf("save note: title is longer than %d bytes", maxTitleBytes)
	}
	return nil
}
