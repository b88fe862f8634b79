// Package objwatch lists and watches custom resources through
// controller-runtime's client, and waits on one object with
// watchtools.UntilWithSync, whose informer relists when a watch ends or its
// resourceVersion has expired. The agents' client (pkg/opsclient) and the
// kubectl plugin's wait share it.
package objwatch

import (
	"context"
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ListWatch lists and watches the objects of list's kind in namespace ns
// that match sel, passing on the options of the informer using it
// (resourceVersion, timeout, bookmarks, chunking). A client that says it
// cannot stream a list's initial events (a test's fake) gets a plain list
// and watch from the informer instead.
func ListWatch(c client.WithWatch, ns string, list client.ObjectList, sel client.MatchingFields) toolscache.ListerWatcher {
	return toolscache.ToListWatcherWithWatchListSemantics(&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l := list.DeepCopyObject().(client.ObjectList)
			err := c.List(ctx, l, client.InNamespace(ns), sel, &client.ListOptions{Raw: &opts})
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, list.DeepCopyObject().(client.ObjectList), client.InNamespace(ns), sel, &client.ListOptions{Raw: &opts})
		},
	}, c)
}

// ErrDeleted: the object Until waited on was missing, or was deleted before
// cond held for it.
var ErrDeleted = errors.New("object deleted")

// Until waits until cond holds for the object of obj's kind named name in
// namespace ns (list is that kind's list). cond sees every state observed,
// the deleted object's last one included. It returns nil once cond holds,
// ErrDeleted if the object is missing or is deleted before cond holds for
// it, and ctx's error if ctx ends first.
func Until(ctx context.Context, c client.WithWatch, ns, name string, obj client.Object, list client.ObjectList, cond func(client.Object) bool) error {
	lw := ListWatch(c, ns, list, client.MatchingFields{"metadata.name": name})
	listed := func(store toolscache.Store) (bool, error) {
		o, ok, err := store.GetByKey(ns + "/" + name)
		switch {
		case err != nil:
			return false, err
		case !ok:
			return false, ErrDeleted
		}
		return cond(o.(client.Object)), nil
	}
	changed := func(ev watch.Event) (bool, error) {
		o, ok := ev.Object.(client.Object)
		switch {
		case !ok:
			return false, nil
		case cond(o):
			return true, nil
		case ev.Type == watch.Deleted:
			return false, ErrDeleted
		}
		return false, nil
	}
	_, err := watchtools.UntilWithSync(ctx, lw, obj, listed, changed)
	if err != nil && ctx.Err() != nil {
		// UntilWithSync reports an ended ctx as its own error.
		return ctx.Err()
	}
	return err
}
