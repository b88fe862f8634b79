// Package v1alpha1 contains the ops.meerkat.dev/v1alpha1 API: OpsSession, a
// session's operation registry with its limits, and Operation, one background
// tool job or mob member child whose status carries the lifecycle.
//
// +kubebuilder:object:generate=true
// +groupName=ops.meerkat.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "ops.meerkat.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this package's kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
