package main

// How devcluster never leaks a child process, even when it is killed with
// SIGKILL:
//
//   - Each child (etcd, kube-apiserver, kube-controller-manager) gets
//     PR_SET_PDEATHSIG=SIGKILL, so the kernel kills it when devcluster dies.
//     envtest starts etcd and kube-apiserver itself and sets its own
//     SysProcAttr, so those two are started through a shim: envtest runs
//     <data>/run/bin/<name>, a symlink to this executable, which sets the
//     death signal, records its pid and execs the real binary from --bin
//     (the pid and the death signal survive exec).
//   - Every child's pid, start time and executable are recorded under
//     <data>/run. The next start kills whatever recorded process is still
//     the same process (same start time and executable), and any etcd
//     whose --data-dir is <data>/etcd (with the kube-apiserver that uses
//     it, and any kube-controller-manager with a kubeconfig under <data>),
//     which also covers processes leaked by older versions of devcluster.
//   - An exclusive flock on <data>/devcluster.lock keeps two devclusters off
//     the same data folder; the kernel releases it when devcluster dies, and
//     children do not inherit it (Go opens files close-on-exec).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// Set for the shim in the environment of the processes envtest starts.
	envShimBin    = "DEVCLUSTER_SHIM_BIN"    // the folder of the real binaries
	envShimRun    = "DEVCLUSTER_SHIM_RUN"    // <data>/run, where pids are recorded
	envShimParent = "DEVCLUSTER_SHIM_PARENT" // devcluster's pid
)

// shimmed are the binaries envtest starts, through the shim.
var shimmed = map[string]bool{"etcd": true, "kube-apiserver": true}

func init() {
	// The death signal fires when the thread that forked the child exits,
	// not the process. Pinning the main goroutine (which starts every
	// child) to the main thread, which lives as long as the process, makes
	// that the same thing.
	runtime.LockOSThread()
}

// maybeShim runs the shim and never returns when this executable was started
// as one of the shimmed binaries by devcluster; otherwise it returns.
func maybeShim() {
	name := filepath.Base(os.Args[0])
	bin := os.Getenv(envShimBin)
	if !shimmed[name] || bin == "" {
		return
	}
	// Die with devcluster; and if devcluster already died before the
	// death signal was set, do not start at all.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "devcluster shim: setting the death signal: %v\n", err)
		os.Exit(1)
	}
	if strconv.Itoa(os.Getppid()) != os.Getenv(envShimParent) {
		fmt.Fprintln(os.Stderr, "devcluster shim: devcluster is gone; not starting", name)
		os.Exit(1)
	}
	target := filepath.Join(bin, name)
	if err := recordPid(os.Getenv(envShimRun), os.Getpid(), name, target); err != nil {
		fmt.Fprintf(os.Stderr, "devcluster shim: %v\n", err)
		os.Exit(1)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEVCLUSTER_SHIM_") {
			env = append(env, kv)
		}
	}
	err := unix.Exec(target, append([]string{target}, os.Args[1:]...), env)
	fmt.Fprintf(os.Stderr, "devcluster shim: exec %s: %v\n", target, err)
	os.Exit(1)
}

// installShims points envtest's binaries at the shim: it links
// <run>/bin/<name> to this executable for each shimmed binary and sets the
// environment the shim reads. It returns the shims' folder.
func installShims(run, bin string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	shims := filepath.Join(run, "bin")
	if err := os.MkdirAll(shims, 0o700); err != nil {
		return "", err
	}
	for name := range shimmed {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			return "", fmt.Errorf("%s not found in %s (run make controlplane): %w", name, bin, err)
		}
		link := filepath.Join(shims, name)
		_ = os.Remove(link)
		if err := os.Symlink(self, link); err != nil {
			return "", err
		}
	}
	for k, v := range map[string]string{envShimBin: bin, envShimRun: run, envShimParent: strconv.Itoa(os.Getpid())} {
		if err := os.Setenv(k, v); err != nil {
			return "", err
		}
	}
	return shims, nil
}

// lockData takes the exclusive lock on data, or says who holds it. The
// returned file holds the lock until it is closed or devcluster exits.
func lockData(data string) (*os.File, error) {
	path := filepath.Join(data, "devcluster.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another devcluster (pid %s, holding %s): stop it first (Ctrl-C in its terminal, or kill %s), or use another --data folder",
				data, strings.TrimSpace(string(holder)), path, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// A pid file <run>/<name>-<pid>.pid holds "<pid> <start time> <executable>":
// the start time (in clock ticks since boot, /proc/<pid>/stat) tells the
// same process from a later one that reuses the pid.

func recordPid(run string, pid int, name, exe string) error {
	start, err := startTime(pid)
	if err != nil {
		return err
	}
	file := filepath.Join(run, fmt.Sprintf("%s-%d.pid", name, pid))
	return os.WriteFile(file, fmt.Appendf(nil, "%d %d %s\n", pid, start, exe), 0o600)
}

// procInfo is what /proc says about a process.
type procInfo struct {
	pid   int
	start uint64
	state byte
	args  []string
}

func readProc(pid int) (procInfo, error) {
	p := procInfo{pid: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// The command name is in parentheses and may hold spaces; the fields
	// after it start with the state (field 3); the start time is field 22.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return p, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return p, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	p.state = f[0][0]
	if p.start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return p, err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return p, err
	}
	p.args = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return p, nil
}

func startTime(pid int) (uint64, error) {
	p, err := readProc(pid)
	return p.start, err
}

// running reports whether pid is a live process (a zombie is not).
func running(pid int) bool {
	p, err := readProc(pid)
	return err == nil && p.state != 'Z'
}

// flagValue returns the value of --name=value (or --name value) in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// stale finds the processes a previous devcluster on data left running:
// those recorded in data/run that are still the same process, and those
// whose command line ties them to data (see the top of this file). It
// returns them with a reason each.
func stale(data string) (map[int]string, error) {
	found := map[int]string{}
	for pid, file := range recorded(data) {
		found[pid] = "recorded in " + file
	}

	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	etcdDir := filepath.Join(data, "etcd")
	etcdURLs := map[string]bool{}
	var apiservers []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		p, err := readProc(pid)
		if err != nil || p.state == 'Z' || len(p.args) == 0 {
			continue
		}
		switch filepath.Base(p.args[0]) {
		case "etcd":
			if d, ok := flagValue(p.args, "data-dir"); ok && filepath.Clean(d) == etcdDir {
				found[pid] = "etcd on " + etcdDir
				if u, ok := flagValue(p.args, "listen-client-urls"); ok {
					for _, u := range strings.Split(u, ",") {
						etcdURLs[u] = true
					}
				}
			}
		case "kube-apiserver":
			apiservers = append(apiservers, p)
		case "kube-controller-manager":
			if k, ok := flagValue(p.args, "kubeconfig"); ok && strings.HasPrefix(k, data+string(filepath.Separator)) {
				found[pid] = "kube-controller-manager with " + k
			}
		}
	}
	for _, p := range apiservers {
		if u, ok := flagValue(p.args, "etcd-servers"); ok && etcdURLs[u] {
			found[p.pid] = "kube-apiserver on that etcd " + u
		}
	}
	return found, nil
}

// cleanStale kills what a previous devcluster on data left running (it holds
// the lock on data, so nothing else of ours uses it), waits until they are
// gone, and removes the pid files and the previous API server's certificate
// folder. It reports each process it kills through logf.
func cleanStale(data string, logf func(pid int, why string, args []string)) error {
	found, err := stale(data)
	if err != nil {
		return err
	}
	for pid, why := range found {
		p, _ := readProc(pid)
		logf(pid, why, p.args)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("killing stale pid %d (%s): %w", pid, why, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for pid, why := range found {
		for running(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("stale pid %d (%s) is still running after SIGKILL", pid, why)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	clearRun(data)
	return nil
}

// clearRun removes the pid files and the API server's certificate folder
// recorded by a previous start.
func clearRun(data string) {
	run := filepath.Join(data, "run")
	files, _ := filepath.Glob(filepath.Join(run, "*.pid"))
	for _, f := range files {
		_ = os.Remove(f)
	}
	if b, err := os.ReadFile(filepath.Join(run, "apiserver-cert-dir")); err == nil {
		dir := strings.TrimSpace(string(b))
		// Only envtest's own temporary folders.
		if filepath.Dir(dir) == filepath.Clean(os.TempDir()) && strings.HasPrefix(filepath.Base(dir), "k8s_test_framework_") {
			_ = os.RemoveAll(dir)
		}
		_ = os.Remove(filepath.Join(run, "apiserver-cert-dir"))
	}
}

// recorded returns the recorded children that are still the recorded
// process (same start time and executable), with their pid files.
func recorded(data string) map[int]string {
	found := map[int]string{}
	files, _ := filepath.Glob(filepath.Join(data, "run", "*.pid"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		var pid int
		var start uint64
		var exe string
		if n, _ := fmt.Sscanf(string(b), "%d %d %s", &pid, &start, &exe); n != 3 {
			continue
		}
		p, err := readProc(pid)
		if err == nil && p.state != 'Z' && p.start == start && len(p.args) > 0 && p.args[0] == exe {
			found[pid] = file
		}
	}
	return found
}

// killRecorded kills every recorded child that is still the recorded
// process, and waits (a few seconds at most) until they are gone.
func killRecorded(data string) {
	var pids []int
	for pid := range recorded(data) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			pids = append(pids, pid)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for running(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}
