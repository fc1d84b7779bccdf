package connector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"sync"
	"time"

	"github.com/airlockhq/airlock/pkg/logkey"
)

const (
	// stopGrace is how long a process gets to exit after its stdin is
	// closed, and again after SIGTERM, before it is killed.
	stopGrace = time.Second
	// waitDelay bounds how long the connector waits for a process's
	// output pipes to close after it exited (a child it started may hold
	// them open).
	waitDelay = time.Second
	// maxMessage bounds one message a process writes on stdout.
	maxMessage = 64 << 20
	// maxStderrLine bounds one logged line of a process's stderr.
	maxStderrLine = 4 << 10
)

// process is one running stdio MCP server. Messages go to it one a line
// on stdin and come back one a line on stdout (MCP 2025-11-25, stdio
// transport); stderr goes to the log.
type process struct {
	cmd    *exec.Cmd
	pid    int
	stdin  io.WriteCloser
	stdout *io.PipeReader

	// writeMu keeps messages on stdin whole.
	writeMu sync.Mutex

	// exited is closed once the process has been reaped; status says how
	// it ended.
	exited chan struct{}
	status string
}

// startProcess starts the command of r and reaps it in the background;
// onExit runs once it has been reaped.
func startProcess(r Resource, logger *slog.Logger, onExit func()) (*process, error) {
	cmd := exec.Command(r.Command, r.Args...)
	cmd.Env = childEnv(r.Env)
	cmd.Dir = r.Dir
	cmd.WaitDelay = waitDelay
	ownGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", r.Command, err)
	}
	// Output goes through pipes of our own, so that Wait (with WaitDelay)
	// owns the copying and always returns, whoever holds the pipes.
	outR, outW := io.Pipe()
	cmd.Stdout = outW
	stderr := &lineLogger{logger: logger}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", r.Command, err)
	}
	stderr.setLogger(logger.With(logkey.PID, cmd.Process.Pid))
	p := &process{
		cmd:    cmd,
		pid:    cmd.Process.Pid,
		stdin:  stdin,
		stdout: outR,
		exited: make(chan struct{}),
	}
	go func() {
		err := cmd.Wait()
		outW.Close()
		stderr.flush()
		p.status = exitStatus(cmd, err)
		// The slot is free before anyone learns of the exit, so that a
		// new session may start as soon as DELETE has been answered.
		onExit()
		close(p.exited)
	}()
	return p, nil
}

func exitStatus(cmd *exec.Cmd, err error) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return err.Error()
}

// childEnv is the environment of a stdio process: the variables of
// [ChildEnv] that the connector has, then extra, whose values win.
func childEnv(extra map[string]string) []string {
	var env []string
	for _, k := range ChildEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// write sends one message; msg must not contain a newline.
func (p *process) write(msg []byte) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	line := make([]byte, 0, len(msg)+1)
	line = append(append(line, msg...), '\n')
	if _, err := p.stdin.Write(line); err != nil {
		return fmt.Errorf("writing to process %d: %w", p.pid, err)
	}
	return nil
}

// readMessages calls handle with every line the process writes on stdout
// until it closes stdout; it returns nil then, or why it stopped reading
// earlier. Empty lines are skipped.
func (p *process) readMessages(handle func([]byte)) error {
	br := bufio.NewReaderSize(p.stdout, 64<<10)
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			handle(line)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readLine returns the next line without its end, in a new slice.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxMessage {
			return nil, fmt.Errorf("process wrote a message over %d bytes", maxMessage)
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

// stop ends the process the way MCP asks of stdio clients: close its
// stdin, then SIGTERM, then SIGKILL, each after stopGrace. It returns
// once the process has been reaped.
func (p *process) stop() {
	p.stdin.Close()
	if p.waitExit(stopGrace) {
		return
	}
	terminate(p.cmd)
	if p.waitExit(stopGrace) {
		return
	}
	kill(p.cmd)
	<-p.exited
}

func (p *process) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

// lineLogger logs what a process writes on stderr, one record a line.
type lineLogger struct {
	logger *slog.Logger
	// mu guards buf.
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.logLocked(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) >= maxStderrLine {
		l.logLocked(l.buf)
		l.buf = nil
	}
	return len(b), nil
}

// setLogger replaces the logger, for the lines still to come.
func (l *lineLogger) setLogger(logger *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logger = logger
}

// flush logs a last line that ended without a newline.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logLocked(l.buf)
	l.buf = nil
}

func (l *lineLogger) logLocked(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) > maxStderrLine {
		line = line[:maxStderrLine]
	}
	if len(line) > 0 {
		l.logger.Info("stdio server stderr", logkey.Stderr, string(line))
	}
}
