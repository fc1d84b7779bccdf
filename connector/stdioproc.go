package connector

import (
	"bufio"
	"bytes"
	"context"
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
	// maxStderrLine bounds one log record of a process's stderr; longer
	// lines are logged in pieces.
	maxStderrLine = 4 << 10
	// maxStderrRate caps the stderr records of one process per second;
	// what is over it is counted and reported in one warning.
	maxStderrRate = 100
)

// errStdinBroken means a message could not be written whole to a
// process's stdin (it accepted nothing for the write timeout, or the
// write was abandoned halfway): the stream is unusable and the session
// must end.
var errStdinBroken = errors.New("stdin of the process is broken")

// process is one running stdio MCP server. Messages go to it one a line
// on stdin and come back one a line on stdout (MCP 2025-11-25, stdio
// transport); stderr goes to the log.
type process struct {
	cmd    *exec.Cmd
	pid    int
	stdin  io.WriteCloser
	stdout *io.PipeReader

	// writing is held (a value in it) by the one writer of stdin, so that
	// messages stay whole; a channel, so that waiting for it can give up.
	writing chan struct{}
	// broken is set, by the holder of writing, once stdin holds part of
	// a message.
	broken bool

	// exited is closed once the process has been reaped; status says how
	// it ended.
	exited chan struct{}
	status string
}

// startProcess starts the command of r and reaps it in the background;
// onExit runs once it has been reaped and what was left of its process
// group has been stopped.
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
	// stdout goes through an io.Pipe, so that exec's copying goroutine
	// (and with it Wait) ends when the process's stdout closes, even if a
	// child it started holds the pipe open (WaitDelay). That goroutine
	// blocks while nobody reads outR: Wait returns only once outR is read
	// to the end or closed, which whoever stops the process must see to.
	outR, outW := io.Pipe()
	cmd.Stdout = outW
	stderr := &lineLogger{logger: logger, now: time.Now}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", r.Command, err)
	}
	stderr.setLogger(logger.With(logkey.PID, cmd.Process.Pid))
	p := &process{
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		stdin:   stdin,
		stdout:  outR,
		writing: make(chan struct{}, 1),
		exited:  make(chan struct{}),
	}
	go func() {
		err := cmd.Wait()
		outW.Close()
		// What the process started may outlive it (also when it
		// crashed), and nobody else would ever stop it.
		endGroup(cmd)
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

// write sends one message; msg must not contain a newline. It gives up
// waiting for its turn when ctx ends, and bounds the write itself by
// timeout (and by ctx). A write that could not finish whole returns an
// error wrapping [errStdinBroken], as does every later write; a write
// abandoned before its first byte returns ctx's error.
func (p *process) write(ctx context.Context, msg []byte, timeout time.Duration) error {
	select {
	case p.writing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.writing }()
	if p.broken {
		return fmt.Errorf("writing to process %d: %w", p.pid, errStdinBroken)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	line := make([]byte, 0, len(msg)+1)
	line = append(append(line, msg...), '\n')
	stop := p.bound(ctx, timeout)
	n, err := p.stdin.Write(line)
	stop()
	switch {
	case err == nil:
		return nil
	case n == 0 && ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		p.broken = true
		if ctx.Err() != nil {
			return fmt.Errorf("writing to process %d: the client left halfway: %w",
				p.pid, errStdinBroken)
		}
		return fmt.Errorf("writing to process %d: it read nothing on stdin for %s: %w",
			p.pid, timeout, errStdinBroken)
	}
	return fmt.Errorf("writing to process %d: %w", p.pid, err)
}

// bound sets a deadline on stdin (a pipe supports them) that ends the
// write timeout from now, or when ctx ends. The returned func undoes the
// tie to ctx; it returns once nothing can move the deadline any more.
func (p *process) bound(ctx context.Context, timeout time.Duration) func() {
	dl, ok := p.stdin.(interface{ SetWriteDeadline(time.Time) error })
	if !ok {
		return func() {}
	}
	dl.SetWriteDeadline(time.Now().Add(timeout))
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		dl.SetWriteDeadline(time.Now())
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired
		}
	}
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
// once the process has been reaped. Whoever reads stdout should keep
// reading meanwhile; after the SIGKILL stop closes stdout itself, since
// unread output would keep the process from being reaped.
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
	p.stdout.Close()
	<-p.exited
}

// abandon stops a process whose stdout nobody reads.
func (p *process) abandon() {
	p.stdout.Close()
	p.stop()
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

// lineLogger logs what a process writes on stderr, one record a line,
// at most maxStderrRate records a second.
type lineLogger struct {
	now func() time.Time
	// mu guards the fields below.
	mu      sync.Mutex
	logger  *slog.Logger
	buf     []byte
	window  time.Time // start of the current second
	lines   int       // records logged in the current second
	dropped int       // lines dropped in the current second
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
	// A line that goes on and on is logged in pieces as it comes.
	for len(l.buf) >= maxStderrLine {
		l.logLocked(l.buf[:maxStderrLine])
		l.buf = l.buf[maxStderrLine:]
	}
	return len(b), nil
}

// setLogger replaces the logger, for the lines still to come.
func (l *lineLogger) setLogger(logger *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logger = logger
}

// flush logs a last line that ended without a newline, and how many
// lines were dropped.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logLocked(l.buf)
	l.buf = nil
	l.reportDroppedLocked()
}

// logLocked logs line, in pieces of maxStderrLine if it is longer.
func (l *lineLogger) logLocked(line []byte) {
	line = bytes.TrimRight(line, "\r")
	for len(line) > 0 {
		piece := line[:min(len(line), maxStderrLine)]
		line = line[len(piece):]
		if l.admitLocked() {
			l.logger.Info("stdio server stderr", logkey.Stderr, string(piece))
		}
	}
}

// admitLocked counts one record against the rate cap, and reports
// whether it may be logged.
func (l *lineLogger) admitLocked() bool {
	if now := l.now(); now.Sub(l.window) >= time.Second {
		l.reportDroppedLocked()
		l.window, l.lines = now, 0
	}
	if l.lines >= maxStderrRate {
		l.dropped++
		return false
	}
	l.lines++
	return true
}

func (l *lineLogger) reportDroppedLocked() {
	if l.dropped == 0 {
		return
	}
	l.logger.Warn("stdio server stderr lines dropped", logkey.Dropped, l.dropped)
	l.dropped = 0
}
