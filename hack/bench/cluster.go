package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meerkat-ops/ops-operator/internal/controlplane"
)

// cluster is the local control plane, started as cmd/devcluster starts it:
// envtest with kube-apiserver and etcd from --bin, the CRDs installed, data
// in a temporary folder that is removed at the end.
type cluster struct {
	env        *envtest.Environment
	dir        string
	kubeconfig string
	// managerKubeconfig is a user bound to the shipped manager role.
	managerKubeconfig string
	// cfg is the bench user's config (system:masters), without rate limits set.
	cfg *rest.Config
}

func startCluster(bin, crds string) (*cluster, error) {
	dir, err := os.MkdirTemp("", "ops-bench-")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "etcd"), 0o700); err != nil {
		return nil, err
	}
	// The repository's top folder: crds is its config/crd/bases.
	root := filepath.Join(crds, "..", "..", "..")
	env := controlplane.Environment(bin, root)
	env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")}
	c := &cluster{env: env, dir: dir}
	if _, err := env.Start(); err != nil {
		c.stop()
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	// The admission policy and the roles, as in a cluster: the manager runs
	// as the manager role, and every status write pays for the policy.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := controlplane.Install(ctx, env, root); err != nil {
		c.stop()
		return nil, err
	}
	mkc, err := controlplane.KubeConfig(env, controlplane.Manager, "ops-operator-manager")
	if err != nil {
		c.stop()
		return nil, err
	}
	c.managerKubeconfig = filepath.Join(dir, "manager.kubeconfig")
	if err := os.WriteFile(c.managerKubeconfig, mkc, 0o600); err != nil {
		c.stop()
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "bench", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		c.stop()
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		c.stop()
		return nil, err
	}
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, kc, 0o600); err != nil {
		c.stop()
		return nil, err
	}
	c.cfg = rest.CopyConfig(user.Config())
	return c, nil
}

// stop stops kube-apiserver and etcd and removes the data folder.
func (c *cluster) stop() {
	if c == nil {
		return
	}
	if c.env != nil {
		if err := c.env.Stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
		c.env = nil
	}
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
		c.dir = ""
	}
}

// childPID finds this process's child whose command name is comm (the
// control plane processes envtest started), or 0.
func childPID(comm string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, ppid, err := procCommPPID(pid)
		if err == nil && ppid == me && name == comm {
			return pid
		}
	}
	return 0
}

func procCommPPID(pid int) (string, int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return "", 0, errors.New("bad stat")
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 2 {
		return "", 0, errors.New("bad stat")
	}
	ppid, err := strconv.Atoi(f[1])
	return s[open+1 : close], ppid, err
}

// procSample is one reading of a process's CPU time and memory.
type procSample struct {
	CPU    float64 // user+system seconds
	RSSKB  int64
	PeakKB int64 // VmHWM
}

const clockTicks = 100 // USER_HZ on Linux

var selfPID = os.Getpid()

func readProc(pid int) procSample {
	var ps procSample
	if pid <= 0 {
		return ps
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			// After the command: state(3) ppid(4) ... utime(14) stime(15).
			if len(f) > 12 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				ps.CPU = (ut + st) / clockTicks
			}
		}
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "VmRSS:"):
				ps.RSSKB = kbField(line)
			case strings.HasPrefix(line, "VmHWM:"):
				ps.PeakKB = kbField(line)
			}
		}
		_ = f.Close() // only read: nothing to lose
	}
	return ps
}

// machineBusy returns the CPU seconds all processes on the machine have used
// (from /proc/stat: everything but idle and iowait).
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest, guest_nice are already in user
			break
		}
		busy += n
	}
	return busy / clockTicks
}

func kbField(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	// Closing frees the port for the manager.
	if err := l.Close(); err != nil {
		return "", err
	}
	return addr, nil
}

// managerProc runs bin/manager as its own process against the cluster.
type managerProc struct {
	bin        string
	kubeconfig string
	args       []string // pass-through flags
	env        []string // added to the bench's environment
	logPath    string
	pprof      bool

	cmd         *exec.Cmd
	done        chan struct{}
	started     time.Time
	metricsAddr string
	probeAddr   string
	pprofAddr   string
}

func (m *managerProc) running() bool { return m.cmd != nil }

func (m *managerProc) pid() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

func (m *managerProc) start() error {
	if m.running() {
		return errors.New("manager already running")
	}
	var err error
	if m.metricsAddr, err = freeAddr(); err != nil {
		return err
	}
	if m.probeAddr, err = freeAddr(); err != nil {
		return err
	}
	args := []string{"--metrics-bind-address=" + m.metricsAddr, "--metrics-secure=false", "--health-probe-bind-address=" + m.probeAddr}
	if m.pprof {
		if m.pprofAddr, err = freeAddr(); err != nil {
			return err
		}
		args = append(args, "--pprof-bind-address="+m.pprofAddr)
	}
	args = append(args, m.args...)
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(log, "\n=== %s %s %s\n", time.Now().Format(time.RFC3339), m.bin, strings.Join(args, " ")); err != nil {
		return errors.Join(fmt.Errorf("writing %s: %w", m.logPath, err), log.Close())
	}
	cmd := exec.Command(m.bin, args...)
	cmd.Env = append(append(os.Environ(), m.env...), "KUBECONFIG="+m.kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so a Ctrl-C reaches only the bench, which then
	// stops the manager before the control plane; and a SIGTERM if the bench dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return errors.Join(err, log.Close())
	}
	m.cmd, m.started, m.done = cmd, time.Now(), make(chan struct{})
	done := m.done
	go func() {
		_ = cmd.Wait()
		if err := log.Close(); err != nil {
			logf("manager log %s: %v", m.logPath, err)
		}
		close(done)
	}()
	return nil
}

// waitReady polls /readyz and returns the time since the process started.
func (m *managerProc) waitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	url := "http://" + m.probeAddr + "/readyz"
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-m.done:
			return 0, fmt.Errorf("manager exited before it was ready; see %s", m.logPath)
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		if resp, err := hc.Get(url); err == nil {
			_ = resp.Body.Close() // unread: the status is the answer
			if resp.StatusCode == http.StatusOK {
				return time.Since(m.started), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("manager not ready after %s; see %s", timeout, m.logPath)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM (the manager drains and exits) and kills it if it
// has not exited in 40 s.
func (m *managerProc) stop() {
	if !m.running() {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(40 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// exited reports whether a started manager has exited on its own.
func (m *managerProc) exited() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}
