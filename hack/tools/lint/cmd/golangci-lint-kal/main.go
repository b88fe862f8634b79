// Command golangci-lint-kal is golangci-lint with kube-api-linter (KAL)
// compiled in as the module plugin "kubeapilinter" (.golangci.yml's
// linters.settings.custom). It is what `golangci-lint custom` would generate,
// written here because that command git-clones golangci-lint: the blank
// import of sigs.k8s.io/kube-api-linter registers the plugin, and main does
// what golangci-lint's own cmd/golangci-lint main does. hack/build-lint.sh
// builds it into bin/golangci-lint.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/golangci/golangci-lint/v2/pkg/commands"
	"github.com/golangci/golangci-lint/v2/pkg/exitcodes"

	// Registers the kubeapilinter module plugin and KAL's linters.
	_ "sigs.k8s.io/kube-api-linter"
)

const (
	golangciModule = "github.com/golangci/golangci-lint/v2"
	kalModule      = "sigs.k8s.io/kube-api-linter"
)

func main() {
	if err := commands.Execute(buildInfo()); err != nil {
		_, _ = fmt.Fprintf(os.Stderr, "The command is terminated due to an error: %v\n", err)
		os.Exit(exitcodes.Failure)
	}
}

// buildInfo reports the golangci-lint and KAL module versions this binary
// was built from (hack/tools/lint/go.mod pins both) for `golangci-lint
// version`; golangci-lint's config version check reads Version.
func buildInfo() commands.BuildInfo {
	info := commands.BuildInfo{
		Version:   "unknown",
		Commit:    kalModule + " unknown",
		GoVersion: runtime.Version(),
		Date:      "(unknown)",
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.GoVersion = bi.GoVersion
	for _, dep := range bi.Deps {
		switch dep.Path {
		case golangciModule:
			info.Version = strings.TrimPrefix(dep.Version, "v")
		case kalModule:
			info.Commit = kalModule + " " + dep.Version
		}
	}
	return info
}
