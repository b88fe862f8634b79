package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image runs as this user: numeric, so the kubelet can check
// runAsNonRoot (config/manager/manager.yaml) without reading /etc/passwd.
const (
	nonrootUID = 65532
	imageUser  = "65532:65532"
	entrypoint = "/manager"
)

// OCI annotation and label keys.
const (
	labelTitle       = "org.opencontainers.image.title"
	labelDescription = "org.opencontainers.image.description"
	labelSource      = "org.opencontainers.image.source"
	labelVersion     = "org.opencontainers.image.version"
	labelRevision    = "org.opencontainers.image.revision"
	labelLicenses    = "org.opencontainers.image.licenses"
	labelCreated     = "org.opencontainers.image.created"
	annotationRef    = "org.opencontainers.image.ref.name"
	annotationCtrRef = "io.containerd.image.name"
)

// Meta is what the image says about itself.
type Meta struct {
	Title, Description, Source, Licenses string
	Version, Revision                    string
	// Created is the time in the config, its history and the
	// created label, and the mtime of every file in the layers.
	Created time.Time
	// Image is the full name the layout records, e.g.
	// docker.io/library/ops-operator:latest; Tag is its tag.
	Image, Tag string
}

// Labels are the OCI labels of each image's config and the annotations of
// the index.
func (m Meta) Labels() map[string]string {
	return map[string]string{
		labelTitle:       m.Title,
		labelDescription: m.Description,
		labelSource:      m.Source,
		labelVersion:     m.Version,
		labelRevision:    m.Revision,
		labelLicenses:    m.Licenses,
		labelCreated:     m.Created.UTC().Format(time.RFC3339),
	}
}

// versionTag matches tags that name a release (v1.2.3, 1.2, v2-rc.1), not
// moving ones (latest, dev, main).
var versionTag = regexp.MustCompile(`^v?[0-9]`)

// resolveMeta fills Meta from the image reference, an explicit version (may
// be empty), SOURCE_DATE_EPOCH (may be empty) and git in root. The version is
// the explicit one, else the image tag when it names a release (v1.2.3), else
// `git describe --always --dirty`. Created is SOURCE_DATE_EPOCH, else the
// HEAD commit's time, else the Unix epoch: never the wall clock, so the same
// sources give the same digests.
func resolveMeta(root, image, version, sourceDateEpoch string) (Meta, error) {
	tag, err := name.NewTag(image)
	if err != nil {
		return Meta{}, fmt.Errorf("image %q: want name:tag: %w", image, err)
	}
	m := Meta{
		Title:       "ops-operator",
		Description: "Kubernetes operator for the Meerkat ops lifecycle: OpsSession and Operation (ops.meerkat.dev)",
		Source:      "https://github.com/meerkat-ops/ops-operator",
		Licenses:    "Apache-2.0",
		Version:     version,
		Tag:         tag.TagStr(),
		Image:       fullName(tag),
	}
	if m.Version == "" && versionTag.MatchString(m.Tag) {
		m.Version = m.Tag
	}
	if m.Version == "" {
		m.Version = git(root, "describe", "--always", "--dirty")
	}
	if m.Version == "" {
		m.Version = "dev"
	}
	if m.Revision = git(root, "rev-parse", "HEAD"); m.Revision == "" {
		m.Revision = "unknown"
	}
	epoch := sourceDateEpoch
	if epoch == "" {
		epoch = git(root, "log", "-1", "--format=%ct")
	}
	m.Created = time.Unix(0, 0).UTC()
	if epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return Meta{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
		}
		m.Created = time.Unix(sec, 0).UTC()
	}
	return m, nil
}

// fullName is the name containerd and docker give an image on import:
// docker.io/library/ops-operator:latest for ops-operator:latest.
func fullName(t name.Tag) string {
	reg := t.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + t.RepositoryStr() + ":" + t.TagStr()
}

// git runs git in dir and returns its trimmed output, or "" when git fails
// (no git, not a repository).
func git(dir string, args ...string) string {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func parsePlatforms(s string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("platform %q: want os/arch[/variant]", f)
		}
		ps = append(ps, *p)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("no platforms")
	}
	return ps, nil
}

func platformStrings(ps []v1.Platform) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// BuildOptions are the inputs of Build.
type BuildOptions struct {
	Root      string // the operator's repository
	Out       string // OCI layout directory, replaced
	Tar       string // optional OCI archive of the layout
	BinDir    string // where the binaries go; empty: a temporary directory, removed
	Platforms []v1.Platform
	Meta      Meta
}

// Result is what Build wrote.
type Result struct {
	Index       v1.ImageIndex
	IndexDigest v1.Hash
	Binaries    []Binary // in BinDir
}

// Binary is a manager binary built for one platform.
type Binary struct {
	Platform v1.Platform
	Path     string
}

// Build compiles the manager for each platform, one after the other (each
// build uses every core), packs the image index and writes the layout.
func Build(ctx context.Context, o BuildOptions) (Result, error) {
	tmp := o.BinDir
	if tmp == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "ops-operator-image-"); err != nil {
			return Result{}, err
		}
		// Best effort: the binaries are packed by then, and a leftover
		// temp folder fails nothing.
		defer func() { _ = os.RemoveAll(tmp) }()
	}
	var bins []Binary
	for _, p := range o.Platforms {
		b, err := BuildManager(ctx, o.Root, p, tmp)
		if err != nil {
			return Result{}, err
		}
		bins = append(bins, b)
	}
	idx, err := Pack(o.Meta, bins)
	if err != nil {
		return Result{}, err
	}
	if err := WriteLayout(o.Out, idx, o.Meta); err != nil {
		return Result{}, err
	}
	if o.Tar != "" {
		if err := WriteLayoutTar(o.Out, o.Tar, o.Meta.Created); err != nil {
			return Result{}, err
		}
	}
	d, err := idx.Digest()
	return Result{Index: idx, IndexDigest: d, Binaries: bins}, err
}

// BuildManager runs CGO_ENABLED=0 go build -trimpath ./cmd/manager for p in
// root, into dir. The Go build cache makes a rebuild of unchanged sources
// a link step.
func BuildManager(ctx context.Context, root string, p v1.Platform, dir string) (Binary, error) {
	out := filepath.Join(dir, "manager-"+p.OS+"-"+p.Architecture+p.Variant)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/manager")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && strings.HasPrefix(p.Variant, "v") {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return Binary{}, fmt.Errorf("go build ./cmd/manager for %s: %w", p.String(), err)
	}
	return Binary{Platform: p, Path: out}, nil
}

// Pack builds one image per binary, on a shared base layer, and an OCI image
// index of them. The same binaries and Meta give the same digests.
func Pack(m Meta, bins []Binary) (v1.ImageIndex, error) {
	base, err := baseLayer(m.Created)
	if err != nil {
		return nil, err
	}
	var adds []mutate.IndexAddendum
	for _, b := range bins {
		img, err := platformImage(m, base, b)
		if err != nil {
			return nil, err
		}
		p := b.Platform
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, m.Labels()).(v1.ImageIndex), nil
}

func platformImage(m Meta, base v1.Layer, b Binary) (v1.Image, error) {
	bin, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, err
	}
	mgr, err := tarLayer(m.Created, []entry{{name: "manager", mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: m.Created}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created,
			CreatedBy: "hack/image: base: /etc/passwd and /etc/group with nonroot 65532, /home/nonroot, /tmp"}},
		mutate.Addendum{Layer: mgr, History: v1.History{Created: created,
			CreatedBy: fmt.Sprintf("hack/image: CGO_ENABLED=0 GOOS=%s GOARCH=%s go build -trimpath ./cmd/manager -> /manager", b.Platform.OS, b.Platform.Architecture)}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = b.Platform.OS, b.Platform.Architecture, b.Platform.Variant, b.Platform.OSVersion
	cf.Config = v1.Config{
		Entrypoint: []string{entrypoint},
		User:       imageUser,
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		// The manager's ports in config/manager/manager.yaml: metrics, probes.
		ExposedPorts: map[string]struct{}{"8443/tcp": {}, "8081/tcp": {}},
		Labels:       m.Labels(),
	}
	return mutate.ConfigFile(img, cf)
}

// entry is one file or directory of a layer.
type entry struct {
	name     string // relative, no leading slash
	mode     int64  // permission bits, with 0o1000 for sticky
	uid, gid int
	dir      bool
	data     []byte
}

// baseLayer is a distroless-style base: users root, nobody and nonroot
// (65532) and their groups, nonroot's home, and a world-writable sticky /tmp.
// No shell, no CA bundle: the manager talks only to the API server, with the
// service account's CA.
func baseLayer(mtime time.Time) (v1.Layer, error) {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group := "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
	return tarLayer(mtime, []entry{
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "home", dir: true, mode: 0o755},
		{name: "home/nonroot", dir: true, mode: 0o700, uid: nonrootUID, gid: nonrootUID},
		{name: "root", dir: true, mode: 0o700},
		{name: "tmp", dir: true, mode: 0o1777},
	})
}

// tarLayer makes a gzip OCI layer of entries, every one with mtime, so the
// layer's digest depends only on its contents.
func tarLayer(mtime time.Time, entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime.UTC().Truncate(time.Second), Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// WriteLayout replaces dir with an OCI image layout whose index.json points
// at idx, named by the tag (org.opencontainers.image.ref.name, for skopeo's
// oci:DIR:TAG) and the full name (io.containerd.image.name, for docker load
// and ctr import).
func WriteLayout(dir string, idx v1.ImageIndex, m Meta) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		annotationRef:    m.Tag,
		annotationCtrRef: m.Image,
	}))
}

// WriteLayoutTar writes the layout in dir as a tarball (an OCI archive), in
// lexical order with fixed owners and mtimes.
func WriteLayoutTar(dir, tarPath string, mtime time.Time) error {
	if err := os.MkdirAll(filepath.Dir(tarPath), 0o755); err != nil {
		return err
	}
	tmp := tarPath + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	// Removes a partial tarball on failure; after the rename there is
	// nothing left to remove, hence no error to check.
	defer func() { _ = os.Remove(tmp) }()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime.UTC().Truncate(time.Second), Format: tar.FormatPAX}
		if d.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, fi.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer func() { _ = src.Close() }() // only read: io.Copy reports its errors
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, tarPath)
}

// LoadIndex returns the one image index that the layout in dir names.
func LoadIndex(dir string) (v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if d.MediaType.IsIndex() {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%s: want one image index in index.json, found %d", dir, len(found))
	}
	return top.ImageIndex(found[0].Digest)
}

// Push pushes the image index of the layout in dir, with every platform's
// image, to dst, with the credentials of docker's and podman's config files
// and credential helpers (authn.DefaultKeychain). It returns the index
// digest.
func Push(ctx context.Context, dir, dst string, extra []remote.Option) (v1.Hash, error) {
	idx, err := LoadIndex(dir)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%w (run make image first)", err)
	}
	ref, err := name.ParseReference(dst)
	if err != nil {
		return v1.Hash{}, err
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, extra...)
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return idx.Digest()
}
