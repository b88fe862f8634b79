/*
Copyright 2026 The Meerkat ops-operator authors.

Licensed under the Apache License, Version 2.0.
*/

// Package openapi holds the OpenAPI definitions of the ops.meerkat.dev types
// (zz_generated.openapi.go, by openapi-gen from hack/update-codegen.sh). The
// models-schema command turns them into the OpenAPI v2 document that
// applyconfiguration-gen reads, so the generated apply configurations carry
// the structured-merge schema their Extract functions need.
package openapi
