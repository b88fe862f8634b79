// Command celgen writes the CEL rules of the Operation CRD that name
// lifecycle phases from pkg/lifecycle's table, so the API server and the
// controller cannot disagree on it: the transition rule on status.phase, the
// first status write, the outcome's phases, the seal of a final status and
// its removal, and the write-once control requests.
//
// Each such rule is a marker line in api/v1alpha1/operation_types.go right
// below a tag line "// +celgen:<name>"; celgen rewrites the marker line from
// the template of that name in rules.go. `make manifests` runs it before
// controller-gen, which then writes the CRD as ever.
//
//	celgen [file]          rewrite the tagged rules in file (default api/v1alpha1/operation_types.go)
//	celgen -check [file]   fail, naming them, if they are not what the table gives; "-" reads stdin
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const defaultFile = "api/v1alpha1/operation_types.go"

func main() {
	check := flag.Bool("check", false, "only check that the tagged rules are current; exit 1 if not")
	flag.Usage = func() {
		if _, err := fmt.Fprintf(flag.CommandLine.Output(), "usage: celgen [-check] [file (default %s; - is stdin with -check)]\n", defaultFile); err != nil {
			return // the output is gone: the flags' defaults could not be written either
		}
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	file := defaultFile
	if flag.NArg() == 1 {
		file = flag.Arg(0)
	}
	if err := run(file, *check); err != nil {
		fmt.Fprintln(os.Stderr, "celgen:", err)
		os.Exit(1)
	}
}

func run(file string, check bool) error {
	var src []byte
	var err error
	if check && file == "-" {
		src, err = io.ReadAll(os.Stdin)
	} else {
		src, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	name := file
	if check && file == "-" {
		name = "stdin"
	}
	out, changed, err := Rewrite(src, FromLifecycle())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(changed) == 0 {
		return nil
	}
	if check {
		return fmt.Errorf("%s: rules %s are not what pkg/lifecycle's table gives; run make manifests", name, strings.Join(changed, ", "))
	}
	info, err := os.Stat(file)
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, out, info.Mode().Perm()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "celgen: rewrote %s in %s from pkg/lifecycle's table\n", strings.Join(changed, ", "), file)
	return nil
}
