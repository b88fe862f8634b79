// Package health holds the tables that say how GitOps tools read the health
// of Operations and OpsSessions: kstatus (Flux, kpt, cli-utils) through the
// conditions the controller writes, and Argo CD through the Lua health checks
// in config/argocd. The tests run fixtures built by the real lifecycle code
// through sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute and through the
// Lua scripts in gopher-lua, and check both against one expected table.
//
// The package is pure: it imports no client and holds only tests.
package health
