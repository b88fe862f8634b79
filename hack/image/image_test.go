package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const repoRoot = "../.."

func TestResolveMeta(t *testing.T) {
	root, _ := filepath.Abs(repoRoot)
	describe := git(root, "describe", "--always", "--dirty")
	if describe == "" {
		t.Fatal("git describe found nothing: the test runs in the repository")
	}
	for _, tc := range []struct {
		image, version, epoch string
		wantVersion, wantName string
		wantCreated           time.Time
		wantErr               bool
	}{
		{image: "ghcr.io/acme/ops-operator:v1.2.3", epoch: "1700000000",
			wantVersion: "v1.2.3", wantName: "ghcr.io/acme/ops-operator:v1.2.3", wantCreated: time.Unix(1700000000, 0)},
		{image: "ops-operator:v1.2.3", version: "v2.0.0", epoch: "0",
			wantVersion: "v2.0.0", wantName: "docker.io/library/ops-operator:v1.2.3", wantCreated: time.Unix(0, 0)},
		{image: "ops-operator:latest", epoch: "86400",
			wantVersion: describe, wantName: "docker.io/library/ops-operator:latest", wantCreated: time.Unix(86400, 0)},
		{image: "ghcr.io/meerkat-ops/ops-operator:dev", epoch: "86400",
			wantVersion: describe, wantName: "ghcr.io/meerkat-ops/ops-operator:dev", wantCreated: time.Unix(86400, 0)},
		{image: "ops-operator:latest", epoch: "yesterday", wantErr: true},
		{image: "ops-operator@sha256:" + strings.Repeat("a", 64), epoch: "0", wantErr: true},
	} {
		m, err := resolveMeta(root, tc.image, tc.version, tc.epoch)
		if tc.wantErr {
			if err == nil {
				t.Errorf("resolveMeta(%q, %q, %q): no error", tc.image, tc.version, tc.epoch)
			}
			continue
		}
		if err != nil {
			t.Fatalf("resolveMeta(%q): %v", tc.image, err)
		}
		if m.Version != tc.wantVersion || m.Image != tc.wantName || !m.Created.Equal(tc.wantCreated) {
			t.Errorf("resolveMeta(%q, %q, %q) = version %q name %q created %v; want %q %q %v", tc.image, tc.version, tc.epoch,
				m.Version, m.Image, m.Created, tc.wantVersion, tc.wantName, tc.wantCreated)
		}
	}
	// Without SOURCE_DATE_EPOCH, created is the HEAD commit's time, not now.
	if ct := git(root, "log", "-1", "--format=%ct"); ct != "" {
		m, err := resolveMeta(root, "ops-operator:latest", "", "")
		if err != nil {
			t.Fatal(err)
		}
		if got := strconv.FormatInt(m.Created.Unix(), 10); got != ct {
			t.Errorf("created without SOURCE_DATE_EPOCH = %s; want the HEAD commit time %s", got, ct)
		}
	}
}

// TestImage builds the image as make image does (two cross-compiles of the
// manager, from the Go build cache when warm), then checks what a cluster
// would see: each platform's config, files and binary, the tarball, and a
// push to an in-process registry and back.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the manager twice")
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, tarPath, binDir := filepath.Join(dir, "image"), filepath.Join(dir, "image.tar"), filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	plats, err := parsePlatforms("linux/amd64,linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := resolveMeta(root, "example.test/meerkat/ops-operator:v9.9.9-test", "", "1767225600") // 2026-01-01
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	res, err := Build(ctx, BuildOptions{Root: root, Out: out, Tar: tarPath, BinDir: binDir, Platforms: plats, Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %v", res.IndexDigest, time.Since(start).Round(time.Millisecond))

	// The layout names one index, by tag and full name.
	idx, err := LoadIndex(out)
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, "layout index", idx, res.IndexDigest)
	var top v1.IndexManifest
	if b, err := os.ReadFile(filepath.Join(out, "index.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json has %d descriptors; want 1", len(top.Manifests))
	}
	for k, v := range map[string]string{annotationRef: "v9.9.9-test", annotationCtrRef: "example.test/meerkat/ops-operator:v9.9.9-test"} {
		if got := top.Manifests[0].Annotations[k]; got != v {
			t.Errorf("index.json annotation %s = %q; want %q", k, got, v)
		}
	}

	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %q; want %q", im.MediaType, types.OCIImageIndex)
	}
	if len(im.Manifests) != len(plats) {
		t.Fatalf("index has %d manifests; want %d", len(im.Manifests), len(plats))
	}
	for k, v := range meta.Labels() {
		if im.Annotations[k] != v {
			t.Errorf("index annotation %s = %q; want %q", k, im.Annotations[k], v)
		}
	}

	ports := managerPorts(t, root)
	var baseDigests []v1.Hash
	for i, p := range plats {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.OS != p.OS || d.Platform.Architecture != p.Architecture {
			t.Errorf("manifest %d platform %v; want %s", i, d.Platform, p)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		base := checkImage(t, p, img, meta, ports)
		baseDigests = append(baseDigests, base)
	}
	if len(baseDigests) == 2 && baseDigests[0] != baseDigests[1] {
		t.Errorf("base layers differ between platforms: %v", baseDigests)
	}

	// The same binaries and metadata give the same index; another version
	// gives another one.
	again, err := Pack(meta, res.Binaries)
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, "repacked index", again, res.IndexDigest)
	other := meta
	other.Version = "v9.9.10"
	if d, _ := mustPack(t, other, res.Binaries).Digest(); d == res.IndexDigest {
		t.Errorf("another version gave the same index digest %s", d)
	}

	t.Run("tarball", func(t *testing.T) {
		unpacked := t.TempDir()
		untar(t, tarPath, unpacked)
		fromTar, err := LoadIndex(unpacked)
		if err != nil {
			t.Fatal(err)
		}
		checkDigest(t, "index from the tarball", fromTar, res.IndexDigest)
	})

	t.Run("push", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		dst := strings.TrimPrefix(srv.URL, "http://") + "/meerkat/ops-operator:v9.9.9-test"
		pushed, err := Push(ctx, out, dst, nil)
		if err != nil {
			t.Fatal(err)
		}
		if pushed != res.IndexDigest {
			t.Errorf("Push returned %s; want %s", pushed, res.IndexDigest)
		}
		ref, err := name.ParseReference(dst)
		if err != nil {
			t.Fatal(err)
		}
		pulled, err := remote.Index(ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		checkDigest(t, "pulled index", pulled, res.IndexDigest)
		for i, p := range plats {
			img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(p))
			if err != nil {
				t.Fatal(err)
			}
			checkDigest(t, "pulled "+p.String()+" image", img, im.Manifests[i].Digest)
			// Layers came along, not only manifests.
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range layers {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n == 0 {
					t.Errorf("%s: pulling a layer: %d bytes, %v", p, n, err)
				}
			}
		}
		if _, err := Push(ctx, filepath.Join(dir, "missing"), dst, nil); err == nil {
			t.Error("Push from a missing layout: no error")
		}
	})
}

// checkImage checks one platform's image against meta and returns its base
// layer's digest.
func checkImage(t *testing.T, p v1.Platform, img v1.Image, meta Meta, ports []string) v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("%s: media types %q, config %q; want OCI", p, m.MediaType, m.Config.MediaType)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
	}
	if !cf.Created.Time.Equal(meta.Created) {
		t.Errorf("%s: created %v; want %v", p, cf.Created.Time, meta.Created)
	}
	c := cf.Config
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/manager" || len(c.Cmd) != 0 {
		t.Errorf("%s: entrypoint %q cmd %q; want [/manager] and no cmd", p, c.Entrypoint, c.Cmd)
	}
	if c.WorkingDir != "/" {
		t.Errorf("%s: working dir %q; want /", p, c.WorkingDir)
	}
	// runAsNonRoot (config/manager/manager.yaml) needs a numeric, non-zero
	// user: the kubelet cannot resolve names.
	uid, gid, ok := strings.Cut(c.User, ":")
	u, uerr := strconv.Atoi(uid)
	g, gerr := strconv.Atoi(gid)
	if !ok || uerr != nil || gerr != nil || u == 0 || g == 0 {
		t.Errorf("%s: user %q; want numeric non-root uid:gid", p, c.User)
	}
	for k, v := range meta.Labels() {
		if v == "" || c.Labels[k] != v {
			t.Errorf("%s: label %s = %q; want %q (non-empty)", p, k, c.Labels[k], v)
		}
	}
	if c.Labels[labelVersion] != "v9.9.9-test" || c.Labels[labelCreated] != "2026-01-01T00:00:00Z" {
		t.Errorf("%s: version %q created %q", p, c.Labels[labelVersion], c.Labels[labelCreated])
	}
	for _, port := range ports {
		if _, ok := c.ExposedPorts[port+"/tcp"]; !ok {
			t.Errorf("%s: manager.yaml's containerPort %s not exposed (%v)", p, port, c.ExposedPorts)
		}
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%s: %d layers; want base and manager", p, len(layers))
	}
	for _, l := range layers {
		if mt, _ := l.MediaType(); mt != types.OCILayer {
			t.Errorf("%s: layer media type %q; want %q", p, mt, types.OCILayer)
		}
	}
	files := readLayers(t, layers)

	mgr, ok := files["manager"]
	if !ok {
		t.Fatalf("%s: no /manager in the image", p)
	}
	if mgr.hdr.Typeflag != tar.TypeReg || mgr.hdr.Mode&0o755 != 0o755 {
		t.Errorf("%s: /manager type %c mode %o; want an executable file", p, mgr.hdr.Typeflag, mgr.hdr.Mode)
	}
	if !mgr.hdr.ModTime.Equal(meta.Created) {
		t.Errorf("%s: /manager mtime %v; want %v", p, mgr.hdr.ModTime, meta.Created)
	}
	checkELF(t, p, mgr.data)

	// The user exists, with a home it owns, and /tmp is writable by it.
	passwd := string(files["etc/passwd"].data)
	wantUser := "nonroot:x:" + uid + ":" + gid + ":nonroot:/home/nonroot:"
	if !strings.Contains(passwd, wantUser) {
		t.Errorf("%s: /etc/passwd lacks %q:\n%s", p, wantUser, passwd)
	}
	if !strings.Contains(string(files["etc/group"].data), "nonroot:x:"+gid+":") {
		t.Errorf("%s: /etc/group lacks group %s", p, gid)
	}
	if h := files["home/nonroot/"].hdr; h == nil || h.Typeflag != tar.TypeDir || strconv.Itoa(h.Uid) != uid {
		t.Errorf("%s: /home/nonroot missing or not owned by %s: %+v", p, uid, h)
	}
	if h := files["tmp/"].hdr; h == nil || h.Typeflag != tar.TypeDir || h.Mode&0o1777 != 0o1777 {
		t.Errorf("%s: /tmp missing or not mode 1777: %+v", p, h)
	}

	// Run the binary of this machine's architecture: it must start and
	// print its flags.
	if p.OS == runtime.GOOS && p.Architecture == runtime.GOARCH {
		runHelp(t, mgr.data)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type file struct {
	hdr  *tar.Header
	data []byte
}

// readLayers returns the files of the layers, read from the layout (the
// compressed blobs, through Uncompressed), later layers winning.
func readLayers(t *testing.T, layers []v1.Layer) map[string]file {
	t.Helper()
	files := map[string]file{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = file{hdr: h, data: data}
		}
		rc.Close()
	}
	return files
}

func checkELF(t *testing.T, p v1.Platform, bin []byte) {
	t.Helper()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Errorf("%s: /manager is not ELF: %v", p, err)
		return
	}
	if want != 0 && f.Machine != want {
		t.Errorf("%s: /manager is built for %v; want %v", p, f.Machine, want)
	}
	// Static: no interpreter, so it runs on an image without libc.
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s: /manager is dynamically linked", p)
		}
	}
}

func runHelp(t *testing.T, bin []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manager")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--help")
	cmd.Env = []string{"HOME=" + t.TempDir()} // nothing of this machine's cluster
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
		t.Fatalf("/manager --help: %v (want exit status 0 or 2)\n%s", err, out)
	}
	for _, flag := range []string{"-metrics-bind-address", "-health-probe-bind-address", "-leader-elect", "-kubeconfig"} {
		if !bytes.Contains(out, []byte(flag)) {
			t.Errorf("/manager --help does not list %s:\n%s", flag, out)
		}
	}
}

// managerPorts are the containerPorts of config/manager/manager.yaml.
func managerPorts(t *testing.T, root string) []string {
	t.Helper()
	y, err := os.ReadFile(filepath.Join(root, "config/manager/manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s*runAsNonRoot:\s*true\b`).Match(y) {
		t.Error("config/manager/manager.yaml no longer sets runAsNonRoot: true; revisit the image user")
	}
	var ports []string
	for _, m := range regexp.MustCompile(`containerPort:\s*(\d+)`).FindAllSubmatch(y, -1) {
		ports = append(ports, string(m[1]))
	}
	if len(ports) == 0 {
		t.Error("no containerPort in config/manager/manager.yaml")
	}
	return ports
}

type digester interface{ Digest() (v1.Hash, error) }

func checkDigest(t *testing.T, what string, d digester, want v1.Hash) {
	t.Helper()
	got, err := d.Digest()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Errorf("%s digest %s; want %s", what, got, want)
	}
}

func mustPack(t *testing.T, m Meta, bins []Binary) v1.ImageIndex {
	t.Helper()
	idx, err := Pack(m, bins)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func untar(t *testing.T, tarPath, dst string) {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dst, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, dst+string(filepath.Separator)) {
			t.Fatalf("tarball entry %q escapes", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, fs.FileMode(0o644)); err != nil {
			t.Fatal(err)
		}
	}
}
