package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/config"
)

// ConfigReader is the store as a config source.
type ConfigReader interface {
	Configs(ctx context.Context, namespace string) (int64, map[string][]byte, error)
	ConfigRevision(ctx context.Context, namespace string) (int64, error)
	WatchConfigs(ctx context.Context, namespace string) (<-chan int64, error)
}

// processStart is about when the process started: package variables are
// set before main runs.
var processStart = time.Now()

// Source holds the config being enforced and keeps it current. Readers
// never block: they load the current *Policies.
type Source struct {
	Namespace string
	// LabelsFile is the downward API file of the pod's labels.
	LabelsFile string
	Log        logr.Logger
	Metrics    *Metrics
	// OnRevision, when set, runs when a config of a new revision is
	// installed.
	OnRevision func()
	// EveryPolicy serves every policy of the namespace, whatever its
	// selector (the gateway); LabelsFile is then unused.
	EveryPolicy bool
	// Fallback, when set, is a folder of the compiled documents the manager
	// also keeps in a ConfigMap: the config RunStore installs when it
	// cannot read the store at start, so that a pod starting during a
	// Redis outage becomes Ready and each policy's failurePolicy answers,
	// instead of the pod waiting for Redis.
	Fallback string

	current atomic.Pointer[Policies]
	// fromFallback: the current config came from Fallback, not the store.
	fromFallback bool
	// docs are the last valid documents by id, so an invalid document never
	// replaces a valid one.
	docs map[string]*config.Policy
	// Reporter, when set, is told the revision enforced as Pod: at once
	// when it is new, and every reportEvery otherwise (report.go).
	Reporter EnforcingReporter
	Pod      string
	reported report
}

// Current is the config to enforce; nil until the first load.
func (s *Source) Current() *Policies { return s.current.Load() }

// Ready reports whether a config was loaded.
func (s *Source) Ready() bool { return s.current.Load() != nil }

// RunStore loads the namespace's config from the store, then reloads it on
// every announced change, and whenever the revision it checks every resync
// differs from the one it enforces (announcements are lost while a
// connection is down). With a Reporter, it reports the revision it
// enforces after each of those: one goroutine, so an idle sidecar's
// reads and reports never overlap (which would open a second command
// connection) and share its timer's wake-ups. It returns when ctx ends.
func (s *Source) RunStore(ctx context.Context, r ConfigReader, resync time.Duration) {
	var changes <-chan int64
	reload := false
	for {
		if !s.Ready() {
			// A config (or the Fallback) first: subscribing to a store
			// that does not answer can take its dial timeouts and retries,
			// 15 s and more, and the pod is not Ready meanwhile.
			s.loadStore(ctx, r)
			reload = false
		}
		if changes == nil {
			if ch, err := r.WatchConfigs(ctx, s.Namespace); err == nil {
				// What changed before the subscription was not announced.
				changes, reload = ch, reload || s.stale(ctx, r)
			}
		}
		if reload {
			s.loadStore(ctx, r)
		}
		s.report(ctx)
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				changes = nil
			}
			reload = true
		case <-time.After(min(s.nextLoad(resync, changes != nil), s.nextReport())):
			reload = s.stale(ctx, r)
		}
	}
}

// stale reports whether the whole config must be read again: nothing is
// loaded from the store yet, or its revision is not the one enforced (or
// cannot be read, so the read says why).
func (s *Source) stale(ctx context.Context, r ConfigReader) bool {
	cur := s.current.Load()
	if cur == nil || s.fromFallback {
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, configReadTimeout)
	defer cancel()
	rev, err := r.ConfigRevision(rctx, s.Namespace)
	return err != nil || rev != cur.Revision
}

// nextLoad is how long to wait before checking the config again: resync
// while all is well; at most a second until a first config is in, since
// the pod is not Ready before it is; at most degradedRetry while it runs
// on the Fallback or without a subscription, so it is back on the store's
// config, and hears of changes, soon after the store is.
func (s *Source) nextLoad(resync time.Duration, subscribed bool) time.Duration {
	switch {
	case !s.Ready():
		return min(resync, time.Second)
	case s.fromFallback || !subscribed:
		return min(resync, degradedRetry)
	}
	return resync
}

// degradedRetry: see nextLoad.
const degradedRetry = 10 * time.Second

// configReadTimeout bounds one read of the config: a store that does not
// answer is given up on soon enough for the Fallback to make the pod Ready.
const configReadTimeout = 3 * time.Second

func (s *Source) loadStore(ctx context.Context, r ConfigReader) {
	rctx, cancel := context.WithTimeout(ctx, configReadTimeout)
	defer cancel()
	rev, raw, err := r.Configs(rctx, s.Namespace)
	if err != nil {
		s.Log.V(1).Info("Config not read; keeping the current one", "error", err.Error())
		s.loadFallback(err)
		return
	}
	// Revision 0 means nothing was ever written: a store that was flushed
	// or restarted empty. Deleting every policy leaves a revision above 0.
	// Until the operator writes the config back, the last one stays.
	if cur := s.current.Load(); rev == 0 && cur != nil && (cur.Revision > 0 || s.fromFallback) {
		s.Log.V(1).Info("Store holds no config; keeping the current one until the operator writes it back")
		return
	}
	if s.docs == nil {
		s.docs = map[string]*config.Policy{}
	}
	next := make(map[string]*config.Policy, len(raw))
	for id, doc := range raw {
		p, err := config.Decode(doc)
		if err != nil {
			s.refused(err, "id", id)
			if old, ok := s.docs[id]; ok {
				next[id] = old
			}
			continue
		}
		next[id] = p
	}
	if err := s.install(rev, next); err == nil {
		s.docs, s.fromFallback = next, false
	}
}

// loadFallback installs the Fallback folder's config when nothing is
// loaded yet: the store could not be read (why) at start.
func (s *Source) loadFallback(why error) {
	if s.Fallback == "" || s.Ready() {
		return
	}
	if err := s.loadFile(s.Fallback); err != nil {
		return
	}
	s.fromFallback = true
	s.Log.Info("The store cannot be read; enforcing the manager's copy of the config until it can, each policy's failurePolicy deciding",
		"path", s.Fallback, "error", why.Error())
}

// install builds and publishes the config from docs.
func (s *Source) install(rev int64, docs map[string]*config.Policy) error {
	list := make([]*config.Policy, 0, len(docs))
	for _, p := range docs {
		list = append(list, p)
	}
	ps, err := s.build(rev, list)
	if err != nil {
		s.refused(err)
		return err
	}
	old := s.current.Swap(ps)
	switch {
	case old == nil:
		// The first config makes the sidecar ready: how long that took
		// from the process's start is part of what a pod's start costs.
		s.Log.Info("Config loaded", "revision", rev, "policies", ps.Len(), "sinceStart", time.Since(processStart).Round(time.Millisecond).String())
	case old.Revision != rev || old.Len() != ps.Len():
		s.Log.Info("Config loaded", "revision", rev, "policies", ps.Len())
	}
	if old != nil && old.Revision != rev && s.OnRevision != nil {
		s.OnRevision()
	}

	if s.Metrics != nil {
		s.Metrics.ConfigRevision.Set(float64(rev))
		s.Metrics.watchCosts(ps)
	}
	return nil
}

func (s *Source) build(rev int64, docs []*config.Policy) (*Policies, error) {
	if s.EveryPolicy {
		return AllPolicies(s.Namespace, rev, docs)
	}
	labels, err := ReadLabels(s.LabelsFile)
	if err != nil {
		return nil, fmt.Errorf("labels file %s: %w", s.LabelsFile, err)
	}
	return NewPolicies(s.Namespace, labels, rev, docs)
}

func (s *Source) refused(err error, kv ...any) {
	s.Log.Error(err, "Config refused; the last valid config stays", kv...)
	if s.Metrics != nil {
		s.Metrics.ConfigErrors.Inc()
	}
}

// RunFile enforces the RateLimitPolicy and UsageQuota objects in path (a
// YAML file, or a folder of them), reloading when a file changes. A file
// that does not compile is refused whole. It returns when ctx ends.
func (s *Source) RunFile(ctx context.Context, path string, every time.Duration) {
	var seen string
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if stamp, err := FileStamp(path, s.LabelsFile); err == nil && stamp != seen {
			if err := s.loadFile(path); err == nil {
				seen = stamp
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Source) loadFile(path string) error {
	docs, err := ReadPolicyFiles(path, s.Namespace)
	if err != nil {
		s.refused(err, "path", path)
		return err
	}
	byID := make(map[string]*config.Policy, len(docs))
	for _, d := range docs {
		byID[d.ID()] = d
	}
	return s.install(0, byID)
}

// FileStamp changes when any file under the paths changes. Each path is
// also read through its symbolic links: a file mounted from a ConfigMap or
// the downward API is a link that never changes into a folder the kubelet
// swaps, and WalkDir stats the link itself.
func FileStamp(paths ...string) (string, error) {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		target, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s -> %d %d\n", p, target.Size(), target.ModTime().UnixNano())
		err = filepath.WalkDir(p, func(f string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "%s %d %d\n", f, info.Size(), info.ModTime().UnixNano())
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return b.String(), nil
}

// ReadPolicyFiles compiles every RateLimitPolicy and UsageQuota in path
// (a YAML file, possibly multi-document, or a folder of .yaml/.yml files)
// for namespace. Objects of other kinds are an error: a typo in a kind
// should not silently drop a policy. A folder's .json files are documents
// the operator compiled (the ConfigMap it keeps without Redis).
func ReadPolicyFiles(path, namespace string) ([]*config.Policy, error) {
	files, err := policyFiles(path)
	if err != nil {
		return nil, err
	}
	var out []*config.Policy
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs, err := compileFile(f, raw, namespace)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, docs...)
	}
	return out, nil
}

func compileFile(name string, raw []byte, namespace string) ([]*config.Policy, error) {
	if filepath.Ext(name) != ".json" {
		return compileYAML(raw, namespace)
	}
	p, err := config.Decode(raw)
	if err != nil {
		return nil, err
	}
	if p.Namespace != namespace {
		return nil, fmt.Errorf("%s is for namespace %q, not %q", p.ID(), p.Namespace, namespace)
	}
	return []*config.Policy{p}, nil
}

func policyFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	for _, ext := range []string{"*.yaml", "*.yml", "*.json"} {
		m, err := filepath.Glob(filepath.Join(path, ext))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	return files, nil
}

func compileYAML(raw []byte, namespace string) ([]*config.Policy, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out []*config.Policy
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		p, err := compileObject(doc, namespace)
		if err != nil {
			return nil, err
		}
		if p != nil {
			out = append(out, p)
		}
	}
}

func compileObject(doc []byte, namespace string) (*config.Policy, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	switch head.Kind {
	case "":
		return nil, nil // a comment-only document
	case config.KindRateLimitPolicy:
		var p v1alpha1.RateLimitPolicy
		if err := yaml.UnmarshalStrict(doc, &p); err != nil {
			return nil, err
		}
		p.Namespace = namespace
		return config.CompileRateLimitPolicy(&p)
	case config.KindUsageQuota:
		var q v1alpha1.UsageQuota
		if err := yaml.UnmarshalStrict(doc, &q); err != nil {
			return nil, err
		}
		q.Namespace = namespace
		return config.CompileUsageQuota(&q)
	}
	return nil, fmt.Errorf("kind %q is neither RateLimitPolicy nor UsageQuota", head.Kind)
}

// ReadLabels reads a downward API labels file: one key="value" per line.
// No file means no labels.
func ReadLabels(path string) (map[string]string, error) {
	labels := map[string]string{}
	if path == "" {
		return labels, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for n, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		value, err := strconv.Unquote(v)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s:%d: not key=\"value\"", path, n+1)
		}
		labels[k] = value
	}
	return labels, nil
}
