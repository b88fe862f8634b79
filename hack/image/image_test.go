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
	ctx := context.Background()
	b := buildTestImage(ctx, t)

	idx := checkLayoutIndex(t, b)
	im := checkIndexManifest(t, b, idx)
	checkPlatformImages(t, b, idx, im)
	checkRepack(t, b)

	t.Run("tarball", func(t *testing.T) {
		unpacked := t.TempDir()
		untar(t, b.tar, unpacked)
		fromTar, err := LoadIndex(unpacked)
		if err != nil {
			t.Fatal(err)
		}
		checkDigest(t, "index from the tarball", fromTar, b.res.IndexDigest)
	})
	t.Run("push", func(t *testing.T) { testPush(ctx, t, b, im) })
}

// testBuild is what buildTestImage built, and with what.
type testBuild struct {
	root, dir string
	// out is the layout, tar the tarball.
	out, tar string
	plats    []v1.Platform
	meta     Meta
	res      Result
}

// buildTestImage builds the image for linux/amd64 and linux/arm64 into a
// temp dir, as make image does.
func buildTestImage(ctx context.Context, t *testing.T) testBuild {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	b := testBuild{root: root, dir: t.TempDir()}
	b.out, b.tar = filepath.Join(b.dir, "image"), filepath.Join(b.dir, "image.tar")
	binDir := filepath.Join(b.dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b.plats, err = parsePlatforms("linux/amd64,linux/arm64"); err != nil {
		t.Fatal(err)
	}
	if b.meta, err = resolveMeta(root, "example.test/meerkat/ops-operator:v9.9.9-test", "", "1767225600"); err != nil { // 2026-01-01
		t.Fatal(err)
	}
	start := time.Now()
	b.res, err = Build(ctx, BuildOptions{Root: root, Out: b.out, Tar: b.tar, BinDir: binDir, Platforms: b.plats, Meta: b.meta})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %v", b.res.IndexDigest, time.Since(start).Round(time.Millisecond))
	return b
}

// checkLayoutIndex checks that the layout names one index, by tag and full
// name, and returns it.
func checkLayoutIndex(t *testing.T, b testBuild) v1.ImageIndex {
	t.Helper()
	idx, err := LoadIndex(b.out)
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, "layout index", idx, b.res.IndexDigest)
	var top v1.IndexManifest
	if data, err := os.ReadFile(filepath.Join(b.out, "index.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(data, &top); err != nil {
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
	return idx
}

// checkIndexManifest checks the image index: OCI, one manifest per
// platform, the metadata as annotations. It returns its manifest.
func checkIndexManifest(t *testing.T, b testBuild, idx v1.ImageIndex) *v1.IndexManifest {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %q; want %q", im.MediaType, types.OCIImageIndex)
	}
	if len(im.Manifests) != len(b.plats) {
		t.Fatalf("index has %d manifests; want %d", len(im.Manifests), len(b.plats))
	}
	for k, v := range b.meta.Labels() {
		if im.Annotations[k] != v {
			t.Errorf("index annotation %s = %q; want %q", k, im.Annotations[k], v)
		}
	}
	return im
}

// checkPlatformImages checks each platform's image (checkImage) and that
// they share their base layer.
func checkPlatformImages(t *testing.T, b testBuild, idx v1.ImageIndex, im *v1.IndexManifest) {
	t.Helper()
	ports := managerPorts(t, b.root)
	baseDigests := make([]v1.Hash, 0, len(b.plats))
	for i, p := range b.plats {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.OS != p.OS || d.Platform.Architecture != p.Architecture {
			t.Errorf("manifest %d platform %v; want %s", i, d.Platform, p)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		base := checkImage(t, p, img, b.meta, ports)
		baseDigests = append(baseDigests, base)
	}
	if len(baseDigests) == 2 && baseDigests[0] != baseDigests[1] {
		t.Errorf("base layers differ between platforms: %v", baseDigests)
	}
}

// checkRepack checks that the same binaries and metadata give the same
// index, and another version another one.
func checkRepack(t *testing.T, b testBuild) {
	t.Helper()
	again, err := Pack(b.meta, b.res.Binaries)
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, "repacked index", again, b.res.IndexDigest)
	other := b.meta
	other.Version = "v9.9.10"
	if d, _ := mustPack(t, other, b.res.Binaries).Digest(); d == b.res.IndexDigest {
		t.Errorf("another version gave the same index digest %s", d)
	}
}

// testPush pushes the layout to an in-process registry and pulls the index
// and each platform's image, layers included, back.
func testPush(ctx context.Context, t *testing.T, b testBuild, im *v1.IndexManifest) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	dst := strings.TrimPrefix(srv.URL, "http://") + "/meerkat/ops-operator:v9.9.9-test"
	pushed, err := Push(ctx, b.out, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pushed != b.res.IndexDigest {
		t.Errorf("Push returned %s; want %s", pushed, b.res.IndexDigest)
	}
	ref, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	checkDigest(t, "pulled index", pulled, b.res.IndexDigest)
	for i, p := range b.plats {
		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(p))
		if err != nil {
			t.Fatal(err)
		}
		checkDigest(t, "pulled "+p.String()+" image", img, im.Manifests[i].Digest)
		checkPulledLayers(t, p, img)
	}
	if _, err := Push(ctx, filepath.Join(b.dir, "missing"), dst, nil); err == nil {
		t.Error("Push from a missing layout: no error")
	}
}

// checkPulledLayers checks that the layers came along, not only manifests.
func checkPulledLayers(t *testing.T, p v1.Platform, img v1.Image) {
	t.Helper()
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
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil || n == 0 {
			t.Errorf("%s: pulling a layer: %d bytes, %v", p, n, err)
		}
	}
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
	uid, gid := checkConfig(t, p, cf, meta, ports)

	layers := checkLayers(t, p, img)
	files := readLayers(t, layers)
	mgr := checkManagerFile(t, p, files, meta)
	checkUser(t, p, files, uid, gid)

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

// checkConfig checks one platform's image config: platform, created time,
// entrypoint, user, labels and exposed ports. It returns the user's uid and
// gid.
func checkConfig(t *testing.T, p v1.Platform, cf *v1.ConfigFile, meta Meta, ports []string) (uid, gid string) {
	t.Helper()
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
	}
	if !cf.Created.Equal(meta.Created) {
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
	return uid, gid
}

// checkLayers checks that the image has two OCI layers, base and manager,
// and returns them.
func checkLayers(t *testing.T, p v1.Platform, img v1.Image) []v1.Layer {
	t.Helper()
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
	return layers
}

// checkManagerFile checks /manager: an executable static ELF binary for the
// platform, with the image's created time; it returns it.
func checkManagerFile(t *testing.T, p v1.Platform, files map[string]file, meta Meta) file {
	t.Helper()
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
	return mgr
}

// checkUser checks that the user exists, with a home it owns, and that
// /tmp is writable by it.
func checkUser(t *testing.T, p v1.Platform, files map[string]file, uid, gid string) {
	t.Helper()
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
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
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
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 2) {
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
	matches := regexp.MustCompile(`containerPort:\s*(\d+)`).FindAllSubmatch(y, -1)
	ports := make([]string, 0, len(matches))
	for _, m := range matches {
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
	defer func() { _ = f.Close() }() // only read: tr.Next and io.ReadAll report its errors
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
