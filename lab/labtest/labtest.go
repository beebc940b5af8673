// Package labtest runs a lab manifest (lab.Manifest) as containers for the
// end-to-end tests, through testcontainers-go: the image is built from
// this checkout (the static dsn binary and the DSN kernel, FROM scratch:
// nothing is pulled), each lab gets a network of its own, every container,
// volume and network is removed when the test ends (and the containers'
// last log lines are printed if it failed), and each container is started
// once its health endpoint answers. It perturbs the lab as the fault tests
// need: kill (SIGKILL), stop, start, pause, partition (checking that no
// other network still links the container), heal.
//
// `make lab-up` runs the same manifest with docker-compose instead (the
// rendered compose/docker-compose.yml); both take the containers from
// lab.Manifest.Containers.
package labtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/tezos-dsn/dsn/lab"
)

// Lab is a running manifest.
type Lab struct {
	tb         testing.TB
	M          *lab.Manifest
	Dir        string // the render: config/ (and a compose file, unused here)
	net        *testcontainers.DockerNetwork
	cli        *testcontainers.DockerClient
	mu         sync.Mutex
	containers map[string]*testcontainers.DockerContainer
}

var (
	imageOnce sync.Once
	imageTag  string
	imageErr  error
)

// Image builds dsn:e2e from this checkout once per test binary: the
// static binary, the DSN kernel, then the FROM-scratch image.
func Image(tb testing.TB) string {
	tb.Helper()
	imageOnce.Do(func() { imageTag, imageErr = buildImage() })
	if imageErr != nil {
		tb.Fatal(imageErr)
	}
	return imageTag
}

func buildImage() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin, err := os.MkdirTemp("", "dsn-image")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(bin)
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "dsn"), "./cmd/dsn")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dsn: %v\n%s", err, out)
	}
	kernel := exec.Command(filepath.Join(bin, "dsn"), "kernel", "build", "--pkg", "./kernel/dsn", "--out", filepath.Join(bin, "dsn.wasm"))
	kernel.Dir = root
	if out, err := kernel.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the DSN kernel: %v\n%s", err, out)
	}
	const tag = "dsn:e2e"
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, "-f", filepath.Join(root, "lab", "Dockerfile"), bin).CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build: %v\n%s", err, out)
	}
	// The previous build's image lost its tag: remove such leftovers (ours
	// only, by label), or every run would leave 38 MB behind.
	exec.Command("docker", "image", "prune", "-f", "--filter", "label=dsn.image=1").Run()
	return tag, nil
}

// Start renders m (its Image set to a build of this checkout) and starts
// it; without a Docker engine the test is skipped with one line.
func Start(tb testing.TB, m *lab.Manifest) *Lab {
	tb.Helper()
	// Ryuk, testcontainers' reaper, is an image we cannot pull: cleanup is
	// registered on the test instead. Published ports are on loopback.
	for k, v := range map[string]string{"TESTCONTAINERS_RYUK_DISABLED": "true", "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1"} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	ctx := context.Background()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err == nil {
		_, err = cli.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		tb.Skipf("no Docker engine: the container e2e tests skip (%v)", err)
	}
	tb.Cleanup(func() { cli.Close() })
	m.Image = Image(tb)
	l := &Lab{tb: tb, M: m, Dir: tb.TempDir(), cli: cli, containers: map[string]*testcontainers.DockerContainer{}}
	if err := lab.Render(m, l.Dir); err != nil {
		tb.Fatal(err)
	}
	if l.net, err = tcnetwork.New(ctx); err != nil {
		tb.Fatalf("lab network: %v", err)
	}
	testcontainers.CleanupNetwork(tb, l.net)
	tb.Cleanup(func() {
		if tb.Failed() {
			l.printLogs()
		}
	})
	var nodes, rest []lab.Container
	for _, c := range m.Containers() {
		if strings.HasPrefix(c.Name, "node") {
			nodes = append(nodes, c)
		} else {
			rest = append(rest, c)
		}
	}
	// The nodes start together (each waits for its peers), then the rest
	// in dependency order.
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, c := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.run(ctx, c) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	for _, c := range rest {
		if err := l.run(ctx, c); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// run creates and starts one container, its cleanup registered at once.
func (l *Lab) run(ctx context.Context, c lab.Container) error {
	var ports []string
	for _, p := range c.Ports {
		ports = append(ports, fmt.Sprintf("%d/tcp", p))
	}
	volume := fmt.Sprintf("%s-%s-data", l.M.Name, c.Name)
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithCmd(c.Command...),
		testcontainers.WithExposedPorts(ports...),
		tcnetwork.WithNetwork([]string{c.Name}, l.net),
		testcontainers.WithName(l.M.Name + "-" + c.Name),
	}
	if len(c.Env) > 0 {
		env := map[string]string{}
		for _, kv := range c.Env {
			env[kv[0]] = kv[1]
		}
		opts = append(opts, testcontainers.WithEnv(env))
	}
	if c.HealthPath != "" {
		opts = append(opts, testcontainers.WithWaitStrategy(wait.ForHTTP(c.HealthPath).WithPort(fmt.Sprintf("%d/tcp", c.HealthPort)).
			WithStartupTimeout(2*time.Minute)))
	}
	if c.Data {
		opts = append(opts, testcontainers.WithMounts(testcontainers.VolumeMount(volume, "/data")))
	}
	if c.Config {
		config := filepath.Join(l.Dir, "config")
		opts = append(opts, testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, config+":/config:ro")
		}))
	}
	ctr, err := testcontainers.Run(ctx, l.M.Image, opts...)
	var terminate []testcontainers.TerminateOption
	if c.Data {
		terminate = append(terminate, testcontainers.RemoveVolumes(volume))
	}
	testcontainers.CleanupContainer(l.tb, ctr, terminate...)
	if err != nil {
		return fmt.Errorf("start %s: %w", c.Name, err)
	}
	l.mu.Lock()
	l.containers[c.Name] = ctr
	l.mu.Unlock()
	return nil
}

func (l *Lab) container(service string) *testcontainers.DockerContainer {
	l.tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.containers[service]
	if !ok {
		l.tb.Fatalf("no container %s in the lab", service)
	}
	return c
}

// DirectAddr returns a service's container port at the container's address
// on the lab network, if this host reaches it (Linux does; Docker Desktop's
// VM does not): traffic then skips Docker's userland proxy, whose copies
// cost a sixth of a core per node at 5,000 tx/s. Otherwise it is Addr.
func (l *Lab) DirectAddr(service string, port int) string {
	l.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ip, err := l.container(service).ContainerIP(ctx); err == nil && ip != "" {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		var d net.Dialer
		if conn, err := d.DialContext(ctx, "tcp", addr); err == nil {
			conn.Close()
			return addr
		}
	}
	return l.Addr(service, port)
}

// Addr returns the host address of a service's container port (it changes
// when the container restarts).
func (l *Lab) Addr(service string, port int) string {
	l.tb.Helper()
	ctx := context.Background()
	c := l.container(service)
	p, err := c.MappedPort(ctx, fmt.Sprintf("%d/tcp", port))
	if err != nil {
		l.tb.Fatalf("port %d of %s: %v", port, service, err)
	}
	host, err := c.Host(ctx)
	if err != nil {
		l.tb.Fatal(err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("%s:%s", host, p.Port())
}

// Kill sends SIGKILL to a service's container.
func (l *Lab) Kill(service string) {
	l.tb.Helper()
	if _, err := l.cli.ContainerKill(context.Background(), l.container(service).GetContainerID(), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		l.tb.Fatalf("kill %s: %v", service, err)
	}
}

// Stop stops a service's container (SIGTERM, then SIGKILL after 2 s).
func (l *Lab) Stop(service string) {
	l.tb.Helper()
	d := 2 * time.Second
	if err := l.container(service).Stop(context.Background(), &d); err != nil {
		l.tb.Fatalf("stop %s: %v", service, err)
	}
}

// Start starts a stopped or killed container again, from its volume, and
// waits until it is healthy.
func (l *Lab) Start(service string) {
	l.tb.Helper()
	if err := l.container(service).Start(context.Background()); err != nil {
		l.tb.Fatalf("start %s: %v", service, err)
	}
}

// StopAll stops every container (SIGTERM, then SIGKILL after 2 s), the
// sequencer first and the nodes last.
func (l *Lab) StopAll() {
	l.tb.Helper()
	cs := l.M.Containers()
	for i := len(cs) - 1; i >= 0; i-- {
		l.Stop(cs[i].Name)
	}
}

// StartAll starts every container again from its volume, the nodes
// together, then the rest in dependency order, each until healthy.
func (l *Lab) StartAll() {
	l.tb.Helper()
	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	for _, c := range l.M.Containers() {
		if !strings.HasPrefix(c.Name, "node") {
			continue
		}
		ctr := l.container(c.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ctr.Start(context.Background())
			mu.Lock()
			errs[c.Name] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	for name, err := range errs {
		if err != nil {
			l.tb.Fatalf("start %s: %v", name, err)
		}
	}
	for _, c := range l.M.Containers() {
		if !strings.HasPrefix(c.Name, "node") {
			l.Start(c.Name)
		}
	}
}

// Pause freezes a service's container; Unpause thaws it.
func (l *Lab) Pause(service string) {
	l.tb.Helper()
	if _, err := l.cli.ContainerPause(context.Background(), l.container(service).GetContainerID(), client.ContainerPauseOptions{}); err != nil {
		l.tb.Fatalf("pause %s: %v", service, err)
	}
}

// Unpause thaws a paused container.
func (l *Lab) Unpause(service string) {
	l.tb.Helper()
	if _, err := l.cli.ContainerUnpause(context.Background(), l.container(service).GetContainerID(), client.ContainerUnpauseOptions{}); err != nil {
		l.tb.Fatalf("unpause %s: %v", service, err)
	}
}

// Partition cuts a service's container off the lab network and checks
// that no other network still links it (a second network — testcontainers'
// reaper network, the default bridge — would defeat the partition).
func (l *Lab) Partition(service string) {
	l.tb.Helper()
	ctx := context.Background()
	id := l.container(service).GetContainerID()
	if _, err := l.cli.NetworkDisconnect(ctx, l.net.ID, client.NetworkDisconnectOptions{Container: id}); err != nil {
		l.tb.Fatalf("disconnect %s: %v", service, err)
	}
	in, err := l.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		l.tb.Fatal(err)
	}
	if n := len(in.Container.NetworkSettings.Networks); n != 0 {
		l.tb.Fatalf("%s is still on %d network(s) after the partition", service, n)
	}
}

// Heal puts a partitioned container back on the lab network under its
// service name.
func (l *Lab) Heal(service string) {
	l.tb.Helper()
	id := l.container(service).GetContainerID()
	if _, err := l.cli.NetworkConnect(context.Background(), l.net.ID, client.NetworkConnectOptions{
		Container: id, EndpointConfig: &network.EndpointSettings{Aliases: []string{service}}}); err != nil {
		l.tb.Fatalf("connect %s: %v", service, err)
	}
}

// printLogs prints each container's last 40 log lines.
func (l *Lab) printLogs() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, c := range l.containers {
		rc, err := c.Logs(context.Background())
		if err != nil {
			l.tb.Logf("%s: logs: %v", name, err)
			continue
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		l.tb.Logf("%s, last log lines:\n%s", name, bytes.Join(lines, []byte("\n")))
	}
}
