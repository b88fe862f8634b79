/*
Copyright 2026 The Meerkat ops-operator authors.

Licensed under the Apache License, Version 2.0.
*/

// Command models-schema writes the OpenAPI v2 document (definitions only) of
// the ops.meerkat.dev types and the apimachinery types they use to stdout,
// for applyconfiguration-gen's --openapi-schema. Definition names are the
// REST-friendly Go names (com.github.meerkat-ops.ops-operator.api.v1alpha1.Operation,
// io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta), as applyconfiguration-gen
// looks them up. After k8s.io/kubernetes' pkg/generated/openapi/cmd/models-schema.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/meerkat-ops/ops-operator/pkg/client/openapi"
)

func main() {
	if err := output(); err != nil {
		fmt.Fprintf(os.Stderr, "models-schema: %v\n", err)
		os.Exit(1)
	}
}

func output() error {
	ref := func(name string) spec.Ref {
		return spec.MustCreateRef("#/definitions/" + friendlyName(name))
	}
	defs := openapi.GetOpenAPIDefinitions(ref)
	schemas := make(map[string]spec.Schema, len(defs))
	for name, def := range defs {
		// A type may embed its OpenAPI v2 form (v3 has features v2 lacks,
		// such as oneOf for int-or-string); the document is v2.
		if v2, ok := def.Schema.Extensions[common.ExtensionV2Schema].(spec.Schema); ok {
			schemas[friendlyName(name)] = v2
			continue
		}
		schemas[friendlyName(name)] = def.Schema
	}
	data, err := json.MarshalIndent(&spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "ops.meerkat.dev", Version: "v1alpha1"}},
		Definitions: schemas,
	}}, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(data, '\n'))
	return err
}

// friendlyName is the definition name of a Go type: its REST-friendly name
// (github.com/x/y/v1.T becomes com.github.x.y.v1.T). Types that name their
// model themselves (apimachinery's, with OpenAPIModelName) already have it,
// as io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta.
func friendlyName(name string) string {
	if !strings.Contains(name, "/") {
		return name
	}
	return util.ToRESTFriendlyName(name)
}
