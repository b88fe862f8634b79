package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of every kind in this package.
const GroupName = "ops.meerkat.dev"

var (
	// SchemeGroupVersion is the group and version of every kind in this
	// package, under the name client-go's generated code expects.
	SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

	// GroupVersion is SchemeGroupVersion, under the name kubebuilder uses.
	GroupVersion = SchemeGroupVersion

	// SchemeBuilder registers this package's kinds with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Kind takes an unqualified kind and returns its group-qualified GroupKind.
func Kind(kind string) schema.GroupKind {
	return SchemeGroupVersion.WithKind(kind).GroupKind()
}

// Resource takes an unqualified resource and returns its group-qualified
// GroupResource, as the generated listers' NotFound errors need.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// addKnownTypes registers both kinds and their lists, and the meta/v1 kinds
// (ListOptions, DeleteOptions, ...) under this group version.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&Operation{}, &OperationList{},
		&OpsSession{}, &OpsSessionList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
