package envtest

import (
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

func objKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
