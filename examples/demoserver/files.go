package demoserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxFileBytes is the largest file read_file returns.
const maxFileBytes = 1 << 20

type readFileInput struct {
	Path string `json:"path" jsonschema:"path of the file, relative to the sandbox folder"`
}

// addFileTools registers read_file.
func (d *demo) addFileTools(srv *mcp.Server) {
	mcp.AddTool(srv, &mcp.Tool{
		Name: "read_file",
		Description: "Return the contents of a file inside the server's sandbox folder, up to 1 MiB. " +
			"Paths that leave the sandbox (\"..\", absolute paths, symlinks pointing outside) are refused.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)},
	}, d.readFile)
}

func (d *demo) readFile(_ context.Context, _ *mcp.CallToolRequest, in readFileInput) (*mcp.CallToolResult, any, error) {
	data, err := readSandboxed(d.sandbox, in.Path)
	if err != nil {
		return nil, nil, err
	}
	return textResult(string(data)), nil, nil
}

// readSandboxed reads the file at the relative path name inside dir. It
// refuses names that are not local and, through os.Root, symlinks that
// resolve outside dir.
func readSandboxed(dir, name string) ([]byte, error) {
	if dir == "" {
		return nil, errors.New("read file: no sandbox folder is configured")
	}
	if name == "" {
		return nil, errors.New("read file: path is empty")
	}
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("read file: path %q escapes the sandbox", name)
	}
	f, err := os.OpenInRoot(dir, name)
	if err != nil {
		return nil, fmt.Errorf("read file: %w", err)
	}
	defer f.Close()
	return readLimited(f, name)
}

// readLimited reads f, a file opened as name, refusing directories and
// anything over maxFileBytes.
func readLimited(f *os.File, name string) ([]byte, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read file: %w", err)
	}
	if info.IsDir() {
		return nil, fmt.Errorf("read file: %q is a directory", name)
	}
	if info.Size() > maxFileBytes {
		return nil, tooBigError(name, info.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read file: %w", err)
	}
	if len(data) > maxFileBytes {
		return nil, tooBigError(name, int64(len(data)))
	}
	return data, nil
}

// tooBigError reports that name holds more than maxFileBytes.
func tooBigError(name string, size int64) error {
	return fmt.Errorf("read file: %q is at least %d bytes, over the 1 MiB limit", name, size)
}
