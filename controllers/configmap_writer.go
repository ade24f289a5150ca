package controllers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// RevisionAnnotation counts the changes ConfigMapWriter made to a
// namespace's ConfigMap, as the store's revision counts them.
const RevisionAnnotation = "quotaops.dev/revision"

// ConfigMapWriter is where compiled config goes without Redis: a ConfigMap
// in each namespace, one key per object (Kind.name.json), which the
// injected sidecars mount as their policy folder. The manager's own memory
// is out of their reach.
type ConfigMapWriter struct {
	Client client.Client
	// Reader gets the ConfigMap by name straight from the API server: the
	// manager may read only that name, so it cannot list and watch.
	Reader client.Reader
	Name   string
}

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=create
// +kubebuilder:rbac:groups="",resources=configmaps,resourceNames=quota-policies,verbs=get;update

// PutConfig stores doc under id and returns the ConfigMap's revision; an
// unchanged document changes nothing.
func (w *ConfigMapWriter) PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error) {
	return w.putDocs(ctx, namespace, map[string][]byte{id: doc})
}

// putDocs stores each of docs under its id, in one change; unchanged
// documents change nothing.
func (w *ConfigMapWriter) putDocs(ctx context.Context, namespace string, docs map[string][]byte) (int64, error) {
	return w.change(ctx, namespace, func(data map[string]string) bool {
		changed := false
		for id, doc := range docs {
			if key := configMapKey(id); data[key] != string(doc) {
				data[key], changed = string(doc), true
			}
		}
		return changed
	})
}

// DeleteConfig removes id and returns the revision.
func (w *ConfigMapWriter) DeleteConfig(ctx context.Context, namespace, id string) (int64, error) {
	return w.change(ctx, namespace, func(data map[string]string) bool {
		key := configMapKey(id)
		_, ok := data[key]
		delete(data, key)
		return ok
	})
}

// Programmed words what was written where, for the Programmed condition.
func (w *ConfigMapWriter) Programmed(namespace string, rev int64) string {
	return fmt.Sprintf("Compiled into ConfigMap %s in namespace %s (revision %d); counters are per pod: without Redis each sidecar counts alone", w.Name, namespace, rev)
}

// configMapKey is id (Kind/name) as a ConfigMap key: Kind.name.json.
func configMapKey(id string) string { return strings.Replace(id, "/", ".", 1) + ".json" }

// change applies edit to the namespace's ConfigMap, creating it when
// missing. A conflict with another writer is returned: the reconcile runs
// again on the newer object.
func (w *ConfigMapWriter) change(ctx context.Context, namespace string, edit func(map[string]string) bool) (int64, error) {
	var cm corev1.ConfigMap
	err := w.Reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: w.Name}, &cm)
	if apierrors.IsNotFound(err) {
		cm = corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: w.Name,
			Labels: ManagedLabels()}, Data: map[string]string{}}
		if !edit(cm.Data) {
			return 0, nil
		}
		cm.Annotations = map[string]string{RevisionAnnotation: "1"}
		return 1, w.Client.Create(ctx, &cm)
	}
	if err != nil {
		return 0, err
	}
	rev, _ := strconv.ParseInt(cm.Annotations[RevisionAnnotation], 10, 64)
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	if !edit(cm.Data) {
		return rev, nil
	}
	rev++
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[RevisionAnnotation] = strconv.FormatInt(rev, 10)
	return rev, w.Client.Update(ctx, &cm)
}

// copyingWriter writes config to the store, then a copy to the ConfigMap
// (Redis, with a copy for sidecars that start while Redis cannot be
// read). The store is the truth: its revision and its words go into
// Programmed, and a copy that cannot be written is retried as a store
// write is.
type copyingWriter struct {
	store interface {
		ConfigWriter
		ConfigCreator
	}
	copy *ConfigMapWriter
}

// WithCopy is s with a copy of every change in cm.
func WithCopy(s interface {
	ConfigWriter
	ConfigCreator
}, cm *ConfigMapWriter) ConfigWriter {
	return copyingWriter{store: s, copy: cm}
}

func (w copyingWriter) PutConfig(ctx context.Context, namespace, id string, doc []byte) (int64, error) {
	rev, err := w.store.PutConfig(ctx, namespace, id, doc)
	if err != nil {
		return rev, err
	}
	_, err = w.copy.PutConfig(ctx, namespace, id, doc)
	return rev, copyError(err)
}

func (w copyingWriter) CreateConfigs(ctx context.Context, namespace string, docs map[string][]byte) (int64, error) {
	rev, err := w.store.CreateConfigs(ctx, namespace, docs)
	if err != nil {
		return rev, err
	}
	_, err = w.copy.putDocs(ctx, namespace, docs)
	return rev, copyError(err)
}

func (w copyingWriter) DeleteConfig(ctx context.Context, namespace, id string) (int64, error) {
	rev, err := w.store.DeleteConfig(ctx, namespace, id)
	if err != nil {
		return rev, err
	}
	_, err = w.copy.DeleteConfig(ctx, namespace, id)
	return rev, copyError(err)
}

// RecordLoss and LostAt are the store's: the copy keeps no losses.
func (w copyingWriter) RecordLoss(ctx context.Context, namespace string, at time.Time, keep time.Duration) error {
	if r, ok := w.store.(LossRecorder); ok {
		return r.RecordLoss(ctx, namespace, at, keep)
	}
	return nil
}

func (w copyingWriter) LostAt(ctx context.Context, namespace string) (time.Time, error) {
	if r, ok := w.store.(LossRecorder); ok {
		return r.LostAt(ctx, namespace)
	}
	return time.Time{}, nil
}

func copyError(err error) error {
	if err != nil {
		return fmt.Errorf("copy the config into the namespace's ConfigMap: %w", err)
	}
	return nil
}
