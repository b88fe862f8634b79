package envtest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meerkat-ops/ops-operator/internal/controlplane"
	"github.com/meerkat-ops/ops-operator/test/envtest/testenv"
)

// TestRoleTableInReadme asks `kubectl auth can-i`, as a user of each
// persona bound to the role we ship, every question of the README's role
// table, and compares the answers with the table.
func TestRoleTableInReadme(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	personas := map[string]controlplane.Persona{
		"manager": controlplane.Manager, "agent": controlplane.Agent,
		"editor": controlplane.Editor, "viewer": controlplane.Viewer,
	}
	kubeconfigs := map[string]string{}
	for name, p := range personas {
		path, err := writeKubeconfig(p, "can-i-"+name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(path) }) // best-effort cleanup of a temp file
		kubeconfigs[name] = path
	}

	header, rows := readRoleTable(t)
	if len(rows) < 10 {
		t.Fatalf("the README's role table has %d rows", len(rows))
	}
	for _, row := range rows {
		// The request is the first cell's `code`; the rest is a remark.
		parts := strings.Split(row[0], "`")
		if len(parts) < 3 {
			t.Fatalf("role table row %q: no `kubectl auth can-i` arguments", row[0])
		}
		args := strings.Fields(parts[1])
		for i, persona := range header[1:] {
			want := strings.ToLower(strings.TrimSpace(row[i+1]))
			got := canI(ctx, t, kubeconfigs[persona], ns, args)
			if got != want {
				t.Errorf("%s: kubectl auth can-i %s says %q, the README says %q", persona, strings.Join(args, " "), got, want)
			}
		}
	}
}

func canI(ctx context.Context, t *testing.T, kubeconfig, ns string, args []string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, kubectl, withKubeconfig(kubeconfig, append([]string{"-n", ns, "auth", "can-i"}, args...)...)...)
	out, err := cmd.Output()
	answer := strings.TrimSpace(string(out))
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("kubectl auth can-i %v: %v", args, err)
	}
	return answer
}

// readRoleTable returns the table between the README's role-table markers:
// the header (request, then one column per persona) and the rows.
func readRoleTable(t *testing.T) (header []string, rows [][]string) {
	t.Helper()
	f, err := os.Open(filepath.Join(testenv.Root(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read only: a close error loses nothing
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "<!-- role table: checked by test/envtest/roles_test.go -->":
			in = true
			continue
		case line == "<!-- end of role table -->":
			return header, rows
		case !in || !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		if len(cells) != len(header) {
			t.Fatalf("role table row %q has %d cells, want %d", line, len(cells), len(header))
		}
		rows = append(rows, cells)
	}
	t.Fatal("the README has no role table")
	return nil, nil
}
