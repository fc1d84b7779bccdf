package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/airlockhq/airlock/internal/localrun"
)

const frpVersion = "v0.65.0"

// frpRun is frp over QUIC on loopback: frps, and frpc with a TCP forward
// and an HTTP proxy to the benchmark's upstream, and another HTTP proxy
// to the sessions server.
type frpRun struct {
	frps, frpc string // the programs
	dir        string
	ports      map[string]string
	server     *exec.Cmd
	client     *exec.Cmd
	idle       []*exec.Cmd // more frpc, one tunnel each, idle
	idleConf   []string    // their configuration files
	next       int         // the next port to try
}

// Host headers of frp's HTTP mode proxies.
const (
	frpDemoHost     = "mcp.frp"
	frpSessionsHost = "sessions.frp"
)

// startFRP builds frps and frpc and starts them; or returns nil and why.
func startFRP(ctx context.Context, cache, work, upstream, sessions string) (*frpRun, string) {
	bin := filepath.Join(cache, "frp-"+frpVersion)
	f := &frpRun{frps: filepath.Join(bin, "frps"), frpc: filepath.Join(bin, "frpc"), dir: work,
		ports: map[string]string{}, next: 20000 + os.Getpid()%5000}
	if _, err := os.Stat(f.frpc); err != nil {
		mod := filepath.Join(cache, "frp-module")
		os.MkdirAll(mod, 0o755)
		steps := [][]string{
			{"go", "mod", "init", "frpbuild"},
			{"go", "get", "github.com/fatedier/frp/cmd/frps@" + frpVersion, "github.com/fatedier/frp/cmd/frpc@" + frpVersion},
			{"go", "build", "-o", f.frps, "github.com/fatedier/frp/cmd/frps"},
			{"go", "build", "-o", f.frpc, "github.com/fatedier/frp/cmd/frpc"},
		}
		os.Remove(filepath.Join(mod, "go.mod"))
		for _, s := range steps {
			cmd := exec.CommandContext(ctx, s[0], s[1:]...)
			cmd.Dir = mod
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Sprintf("frp rows skipped: %s: %v %.300s", strings.Join(s, " "), err, out)
			}
		}
	}
	_, upPort, _ := net.SplitHostPort(upstream)
	_, sessionsPort, _ := net.SplitHostPort(sessions)
	for _, k := range []string{"bind", "quic", "vhost", "remote"} {
		f.ports[k] = f.freePort()
	}
	server := fmt.Sprintf("bindAddr = \"127.0.0.1\"\nproxyBindAddr = \"127.0.0.1\"\n"+
		"bindPort = %s\nquicBindPort = %s\nvhostHTTPPort = %s\n",
		f.ports["bind"], f.ports["quic"], f.ports["vhost"])
	clientConf := f.clientHeader() + fmt.Sprintf(`
[[proxies]]
name = "mcp-tcp"
type = "tcp"
localIP = "127.0.0.1"
localPort = %s
remotePort = %s

[[proxies]]
name = "mcp-http"
type = "http"
localIP = "127.0.0.1"
localPort = %s
customDomains = ["%s"]
hostHeaderRewrite = "127.0.0.1"

[[proxies]]
name = "sessions-http"
type = "http"
localIP = "127.0.0.1"
localPort = %s
customDomains = ["%s"]
hostHeaderRewrite = "127.0.0.1"
`, upPort, f.ports["remote"], upPort, frpDemoHost, sessionsPort, frpSessionsHost)
	os.WriteFile(filepath.Join(work, "frps.toml"), []byte(server), 0o644)
	os.WriteFile(filepath.Join(work, "frpc.toml"), []byte(clientConf), 0o644)
	if err := f.startServer(ctx); err != nil {
		return nil, "frp rows skipped: " + err.Error()
	}
	time.Sleep(300 * time.Millisecond)
	if err := f.startClient(ctx); err != nil {
		return nil, "frp rows skipped: " + err.Error()
	}
	for _, t := range f.targets(http.DefaultClient) {
		var err error
		if !localrun.Await(30*time.Second, 200*time.Millisecond, func() bool {
			err = call(ctx, t, 0, 0)
			return err == nil
		}) {
			return nil, fmt.Sprintf("frp rows skipped: %s did not answer within 30s: %v", t.name, err)
		}
	}
	return f, ""
}

// close kills frps and every frpc, and waits for them.
func (f *frpRun) close() {
	for _, c := range append([]*exec.Cmd{f.server, f.client}, f.idle...) {
		if c != nil {
			kill(c)
		}
	}
}

// freePort picks a port free on loopback right now. frps refuses remote
// ports it finds in use on any address, which ports from the kernel's
// ephemeral range often are: it picks lower ones.
func (f *frpRun) freePort() string {
	for ; ; f.next++ {
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(f.next)); err == nil {
			ln.Close()
			f.next++
			return strconv.Itoa(f.next - 1)
		}
	}
}

func (f *frpRun) clientHeader() string {
	return fmt.Sprintf("serverAddr = \"127.0.0.1\"\nserverPort = %s\ntransport.protocol = \"quic\"\n",
		f.ports["quic"])
}

// targets are frp's two ways to the upstream.
func (f *frpRun) targets(client *http.Client) []*target {
	pids := func() []int { return []int{pid(f.server), pid(f.client)} }
	return []*target{
		{name: "frp QUIC, TCP forward", url: "http://127.0.0.1:" + f.ports["remote"] + "/mcp",
			client: client, pids: pids},
		{name: "frp QUIC, HTTP mode", url: f.vhostURL(), host: frpDemoHost, client: client, pids: pids},
	}
}

func (f *frpRun) vhostURL() string { return "http://127.0.0.1:" + f.ports["vhost"] + "/mcp" }

func (f *frpRun) startServer(ctx context.Context) error {
	f.server = exec.CommandContext(ctx, f.frps, "-c", filepath.Join(f.dir, "frps.toml"))
	return localrun.Start(f.server, filepath.Join(f.dir, "frps.log"))
}

func (f *frpRun) startClient(ctx context.Context) error {
	f.client = exec.CommandContext(ctx, f.frpc, "-c", filepath.Join(f.dir, "frpc.toml"))
	return localrun.Start(f.client, filepath.Join(f.dir, "frpc.log"))
}

// prepareIdle writes the configuration of n more frpc, each with one TCP
// forward of its own and its own QUIC connection to frps.
func (f *frpRun) prepareIdle(_ context.Context, n int) error {
	for i := range n {
		conf := f.clientHeader() + fmt.Sprintf(`
[[proxies]]
name = "idle-%d"
type = "tcp"
localIP = "127.0.0.1"
localPort = 9
remotePort = %s
`, i, f.freePort())
		file := filepath.Join(f.dir, fmt.Sprintf("frpc-idle-%d.toml", i))
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return err
		}
		f.idleConf = append(f.idleConf, file)
	}
	return nil
}

// startIdle starts the idle frpc.
func (f *frpRun) startIdle(ctx context.Context) error {
	for _, file := range f.idleConf {
		c := exec.CommandContext(ctx, f.frpc, "-c", file)
		if err := localrun.Start(c, file+".log"); err != nil {
			return err
		}
		f.idle = append(f.idle, c)
	}
	return nil
}
