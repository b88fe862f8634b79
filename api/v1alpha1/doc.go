// Package v1alpha1 contains the ops.meerkat.dev/v1alpha1 API: OpsSession, a
// session's operation registry with its limits, and Operation, one background
// tool job or mob member child whose status carries the lifecycle.
//
// The package depends on apimachinery only (no controller-runtime), so the
// client-go clientset, listers, informers and apply configurations generated
// into pkg/client (hack/update-codegen.sh) use it as client-go uses k8s.io/api.
// The package markers are here because the k8s.io/code-generator generators
// read them from doc.go only; controller-gen reads them from any file.
//
// +kubebuilder:object:generate=true
// +k8s:openapi-gen=true
// +groupName=ops.meerkat.dev
// +groupGoName=Ops
package v1alpha1
