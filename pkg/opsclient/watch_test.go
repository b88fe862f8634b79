package opsclient

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	opsv1 "github.com/meerkat-ops/ops-operator/api/v1alpha1"
	"github.com/meerkat-ops/ops-operator/internal/objwatch"
)

// Unit tests of the watches on a fake client: how long the shared session
// watch lives against its callers' contexts, and TerminateOwner's wait.

// noWatchList is a client that says it cannot stream a list's initial
// events, as the fake cannot (informers would wait 10s for its bookmark):
// informers on it list and then watch.
type noWatchList struct{ client.WithWatch }

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

// newWatchStore is a fake API server holding the test session.
func newWatchStore() client.WithWatch {
	session := &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: testSession, Namespace: testNS, UID: "session-uid"}}
	return fake.NewClientBuilder().WithScheme(Scheme()).
		WithStatusSubresource(&opsv1.Operation{}, &opsv1.OpsSession{}).
		WithObjects(session).
		WithIndex(&opsv1.Operation{}, "spec.sessionName", func(o client.Object) []string {
			return []string{o.(*opsv1.Operation).Spec.SessionName}
		}).
		WithIndex(&opsv1.OpsSession{}, "metadata.name", func(o client.Object) []string {
			return []string{o.GetName()}
		}).Build()
}

func newWatchRegistry(t *testing.T, c client.WithWatch, ctx context.Context) (*Runtime, *Registry) {
	t.Helper()
	rt := NewFromClient(noWatchList{c}, testNS, clock.RealClock{})
	t.Cleanup(rt.Close)
	reg, err := rt.OpsLifecycleRegistry(ctx, testSession)
	if err != nil {
		t.Fatal(err)
	}
	return rt, reg
}

func receive(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting after 10s")
		return nil
	}
}

// TestSessionWatchOutlivesCallerContext: the ctx that starts the shared
// watch, and a caller's ctx that ends while it syncs, end only their own
// waits; the Runtime's Close ends the watch and every wait on it.
func TestSessionWatchOutlivesCallerContext(t *testing.T) {
	release := make(chan struct{})
	c := interceptor.NewClient(newWatchStore(), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*opsv1.OperationList); ok {
				select { // the API server is slow to answer the watch's list
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return c.List(ctx, list, opts...)
		},
	})
	started, stop := context.WithCancel(context.Background())
	rt, reg := newWatchRegistry(t, c, started) // starts the watch
	stop()

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := reg.sessionWatch(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sessionWatch with a ctx ending before the sync: got %v, want %v", err, context.DeadlineExceeded)
	}

	close(release)
	long, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := reg.sessionWatch(long); err != nil {
		t.Fatalf("sessionWatch after earlier callers' ctx ended: %v", err)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := reg.waitFor(context.Background(), "never", "uid", func(*opsv1.Operation) bool { return false })
		errc <- err
	}()
	rt.Close()
	if err := receive(t, errc); !errors.Is(err, errWatchStopped) {
		t.Fatalf("wait pending at Close: got %v, want %v", err, errWatchStopped)
	}
}

// TestTerminateOwnerWatch: TerminateOwner returns once the controller
// reports the termination, objwatch.ErrDeleted if the session goes first, and ctx's
// error if ctx ends first.
func TestTerminateOwnerWatch(t *testing.T) {
	cases := map[string]struct {
		act  func(ctx context.Context, c client.Client, cancel context.CancelFunc) error
		want error
	}{
		"terminated": {
			act: func(ctx context.Context, c client.Client, _ context.CancelFunc) error {
				s := &opsv1.OpsSession{}
				if err := c.Get(ctx, client.ObjectKey{Namespace: testNS, Name: testSession}, s); err != nil {
					return err
				}
				if s.Spec.Termination == nil || s.Spec.Termination.Reason != "bye" {
					return errors.New("spec.termination not written")
				}
				meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{
					Type: opsv1.ConditionTerminated, Status: metav1.ConditionTrue, Reason: "Terminated",
					ObservedGeneration: s.Generation,
				})
				return c.Status().Update(ctx, s)
			},
		},
		"deleted": {
			act: func(ctx context.Context, c client.Client, _ context.CancelFunc) error {
				return c.Delete(ctx, &opsv1.OpsSession{ObjectMeta: metav1.ObjectMeta{Name: testSession, Namespace: testNS}})
			},
			want: objwatch.ErrDeleted,
		},
		"ctx ends": {
			act: func(_ context.Context, _ client.Client, cancel context.CancelFunc) error {
				cancel()
				return nil
			},
			want: context.Canceled,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			store := newWatchStore()
			watching := make(chan struct{})
			var once sync.Once
			c := interceptor.NewClient(store, interceptor.Funcs{
				Watch: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) (watch.Interface, error) {
					w, err := c.Watch(ctx, list, opts...)
					if _, ok := list.(*opsv1.OpsSessionList); ok && err == nil {
						once.Do(func() { close(watching) })
					}
					return w, err
				},
			})
			_, reg := newWatchRegistry(t, c, context.Background())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- reg.TerminateOwner(ctx, "bye") }()
			select {
			case <-watching: // the fake's watch starts at now: act only once it is up
			case err := <-errc:
				t.Fatalf("TerminateOwner returned before watching: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("no watch of the session after 10s")
			}
			if err := tc.act(context.Background(), store, cancel); err != nil {
				t.Fatal(err)
			}
			if err := receive(t, errc); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("TerminateOwner: got %v, want %v", err, tc.want)
			}
		})
	}
}
