// Command image builds the ops-operator manager image without a container
// engine: it cross-compiles ./cmd/manager (CGO_ENABLED=0, -trimpath) for each
// platform, packs every binary with a small distroless-style base (a nonroot
// user 65532, /tmp) into an OCI image with go-containerregistry, and writes an
// image index for all platforms as an OCI layout (and an OCI archive tarball).
// It can then push that index to a registry.
//
//	go run . build -root ../.. -out ../../dist/image -tar ../../dist/image.tar -image ops-operator:latest
//	go run . push -layout ../../dist/image -image registry.example.com/team/ops-operator:v1.2.3
//
// make image and make image-push run it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  image build [-root DIR] [-out DIR] [-tar FILE] [-image NAME:TAG] [-version V] [-platforms linux/amd64,linux/arm64]
  image push  [-layout DIR] -image REGISTRY/REPO:TAG
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "build":
		err = buildCmd(ctx, os.Args[2:])
	case "push":
		err = pushCmd(ctx, os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func buildCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	root := fs.String("root", "../..", "The operator's repository (the main module).")
	out := fs.String("out", "../../dist/image", "OCI layout directory to write (replaced).")
	tarPath := fs.String("tar", "", "Also write the OCI layout as this tarball (docker load, podman load, ctr import); empty skips it.")
	img := fs.String("image", "ghcr.io/meerkat-ops/ops-operator:dev", "Image name and tag, recorded in the layout (org.opencontainers.image.ref.name, io.containerd.image.name).")
	version := fs.String("version", "", "org.opencontainers.image.version; default: the -image tag when it names a release (v1.2.3), else `git describe --always --dirty`.")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "Comma-separated os/arch[/variant] list.")
	_ = fs.Parse(args)

	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	plats, err := parsePlatforms(*platforms)
	if err != nil {
		return err
	}
	meta, err := resolveMeta(absRoot, *img, *version, os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	res, err := Build(ctx, BuildOptions{Root: absRoot, Out: *out, Tar: *tarPath, Platforms: plats, Meta: meta})
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s (index %s, %s, version %s, created %s)\n", *out, res.IndexDigest,
		strings.Join(platformStrings(plats), ", "), meta.Version, meta.Created.UTC().Format("2006-01-02T15:04:05Z"))
	if *tarPath != "" {
		fmt.Printf("wrote %s\n", *tarPath)
	}
	return nil
}

func pushCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	layoutDir := fs.String("layout", "../../dist/image", "OCI layout written by build.")
	img := fs.String("image", "", "Destination registry/repo:tag.")
	_ = fs.Parse(args)
	if !strings.Contains(*img, "/") {
		return fmt.Errorf("push needs IMG=registry/repo:tag (got %q)", *img)
	}
	d, err := Push(ctx, *layoutDir, *img, nil)
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s@%s\n", *img, d)
	return nil
}
