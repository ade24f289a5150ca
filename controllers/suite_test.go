package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/controllers"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/query"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/testutil/redistest"
)

// One API server, one redis-server and one manager serve the package.
var (
	env    *kubeenv.Env
	redisS *redistest.Server
	k8s    client.Client
	st     *store.Redis
	lim    *limiter.Limiter
	scheme = runtime.NewScheme()
)

// The store Secret the operator keeps in namespaces with sidecars.
const storeSecret = "quota-operator-store"

// policyConfigMap holds each namespace's copy of its compiled config.
const policyConfigMap = "quota-policies"

// The gateway rate-limit service's user: its Secret, and the namespaces it
// serves.
var (
	gatewaySecret = client.ObjectKey{Namespace: "qo-gateway-home", Name: "quota-operator-ratelimit-store"}
	gatewayServes = []string{"gw-team-a", "gw-team-b"}
)

// sharedCA stands for a file every namespace's Secret carries a copy of.
const sharedCA = "-----BEGIN CERTIFICATE-----"

// Settings the tests shorten.
const (
	storeCheckEvery = 500 * time.Millisecond
	// finalizeAfter is the suite manager's --finalize-timeout: a deleted
	// object waits this long for an unreachable store.
	finalizeAfter = 3 * time.Second
	usageEvery    = time.Second
	secretRecheck = 500 * time.Millisecond
	rotationGrace = 2 * time.Second
	// queryTTL is how long an answered QuotaQuery stays.
	queryTTL = 5 * time.Second
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\n*** CONTROLLER TESTS CANNOT RUN: %v ***\n\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return 0, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return 0, err
	}
	var err error
	if redisS, err = redistest.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = redisS.Close() }()
	if env, err = kubeenv.Start(kubeenv.Options{CRDDirectoryPaths: []string{filepath.Join(kubeenv.ModuleRoot(), "config", "crd", "bases")}}); err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	if k8s, err = client.New(env.Config, client.Options{Scheme: scheme}); err != nil {
		return 0, err
	}
	s, err := store.Open(redisS.URL)
	if err != nil {
		return 0, err
	}
	defer func() { _ = s.Close() }()
	st = s.(*store.Redis)
	if lim, err = limiter.New(st); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, err := startManager(ctx)
	if err != nil {
		return 0, err
	}
	code := m.Run()
	cancel()
	<-done
	return code, nil
}

func startManager(ctx context.Context) (<-chan struct{}, error) {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return nil, err
	}
	loc, err := store.ParseLocation(redisS.URL)
	if err != nil {
		return nil, err
	}
	users, err := store.NewACLAdmin(loc)
	if err != nil {
		return nil, err
	}
	users.KeepLibrary(limiter.Library) // as the manager does
	queryLim, err := limiter.New(st)   // queries have their own, as in the manager
	if err != nil {
		return nil, err
	}
	// As the manager runs with Redis: config in Redis, a copy in each
	// namespace's ConfigMap.
	copied := controllers.WithCopy(st, &controllers.ConfigMapWriter{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Name: policyConfigMap})
	if err := controllers.Setup(mgr, controllers.Options{Store: st, Config: copied, Usage: lim, Users: users, Enforcement: st,
		Adjust: lim, Announce: st, UsageInterval: usageEvery, StoreCheckInterval: storeCheckEvery,
		FinalizeTimeout: finalizeAfter, Query: &query.Answerer{Reader: mgr.GetClient(), Counters: queryLim}, QueryTTL: queryTTL}); err != nil {
		return nil, err
	}
	secrets := &controllers.StoreSecretReconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Name: storeSecret,
		Users: users, Recheck: secretRecheck, RotationGrace: rotationGrace,
		Shared: func(context.Context) (map[string][]byte, error) {
			return map[string][]byte{"ca.crt": []byte(sharedCA)}, nil
		},
		Gateway: &controllers.GatewayUser{Secret: gatewaySecret, Namespaces: gatewayServes}}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: gatewaySecret.Namespace}}); err != nil {
		return nil, err
	}
	if err := secrets.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = users.Close() }()
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "manager: %v\n", err)
		}
	}()
	return done, nil
}

// zapLevel keeps the manager quiet unless QO_TEST_LOG is set.
func zapLevel() zapcore.Level {
	if os.Getenv("QO_TEST_LOG") != "" {
		return -1
	}
	return 2
}

// namespace creates a namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ctl-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// eventually retries check every 100ms until it returns nil or within
// passes, and fails with its last error.
func eventually(t *testing.T, within time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = check(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, within, err)
	return 0
}
