package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/controllers"
	"github.com/quotaops/quota-operator/internal/cli"
	"github.com/quotaops/quota-operator/internal/limiter"
	"github.com/quotaops/quota-operator/internal/query"
	"github.com/quotaops/quota-operator/internal/sidecar"
	"github.com/quotaops/quota-operator/internal/store"
	"github.com/quotaops/quota-operator/internal/subject"
	"github.com/quotaops/quota-operator/internal/webhook"
)

// managerConfig is the manager's command line.
type managerConfig struct {
	kubeconfig, metricsAddr, probeAddr string
	leaderElect, metricsSecure         bool
	store                              cli.StoreFlags
	usageInterval, storeCheckInterval  time.Duration
	finalizeTimeout                    time.Duration
	// The sidecar injection webhook, on when sidecarImage is set.
	sidecarImage, webhookCertDir string
	webhookPort                  int
	storeSecretName              string
	storeTenancy                 controllers.Tenancy
	storeUsersSecret             string
	storePasswordSecret          string
	storeSentinelPasswordSecret  string
	subjectKeySecret             string
	sidecarCPU, sidecarMemory    string
	sidecarFailurePolicy         string
	policyConfigMap              string
	// The gateway rate-limit service's own store user, kept when
	// gatewayNamespaces is set.
	gatewayNamespaces []string
	gatewaySecret     string
	// subjectKey is the install's, once read, for the Secrets of sidecars
	// and the gateway.
	subjectKey []byte
	// The webhook's own certificate, kept when certSecret is set.
	certSecret, webhookService, namespace string
	mutatingConfig, validatingConfig      string
	certHosts                             []string
	zap                                   zap.Options
}

func parseManagerFlags(args []string, stderr io.Writer) (*managerConfig, error) {
	c := &managerConfig{}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "path to a kubeconfig; default: KUBECONFIG, in-cluster, ~/.kube/config")
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8443", "address of the metrics endpoint; 0 turns it off")
	fs.BoolVar(&c.metricsSecure, "metrics-secure", true, "serve metrics over HTTPS to clients the API server authenticates and authorizes (get on /metrics); false: plain HTTP to anyone")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&c.leaderElect, "leader-elect", false, "elect a leader, so only one replica writes config")
	cli.BindStore(fs, &c.store)
	fs.DurationVar(&c.usageInterval, "usage-interval", 30*time.Second, "how often UsageQuota status.usage is refreshed")
	fs.DurationVar(&c.storeCheckInterval, "store-check-interval", 2*time.Second, "how often the store is checked for lost config")
	fs.DurationVar(&c.finalizeTimeout, "finalize-timeout", time.Minute, "how long a deleted policy or quota waits for an unreachable store to remove its config before it goes anyway (a warning event; the config is removed when the store is back); 0: as long as it takes")
	fs.StringVar(&c.sidecarImage, "sidecar-image", "", "image of the injected sidecar (the manager's own); the webhooks are off when empty")
	fs.IntVar(&c.webhookPort, "webhook-port", 9443, "port of the webhook server")
	fs.StringVar(&c.webhookCertDir, "webhook-cert-dir", "", "directory of the webhook server's tls.crt and tls.key (default: controller-runtime's)")
	fs.StringVar(&c.sidecarCPU, "sidecar-cpu", webhook.DefaultCPU, "CPU request of injected sidecars (a pod's quotaops.dev/sidecar-cpu wins)")
	fs.StringVar(&c.sidecarMemory, "sidecar-memory", webhook.DefaultMemory, "memory request and limit of injected sidecars (a pod's quotaops.dev/sidecar-memory wins)")
	fs.StringVar(&c.sidecarFailurePolicy, "sidecar-failure-policy", "", "Open or Closed: overrides every policy's failurePolicy in injected sidecars (a pod's quotaops.dev/failure-policy wins); empty: each policy's own")
	fs.StringVar(&c.storePasswordSecret, "store-password-secret", "", "Secret in --namespace whose \"password\" key holds the store password; the manager creates it with a random password when it does not exist (config/default: Redis's own password, never in Git)")
	fs.StringVar(&c.storeSentinelPasswordSecret, "store-sentinel-password-secret", "", "with redis+sentinel://, a Secret in --namespace whose \"password\" key the manager logs in to the Sentinels with (created at random when missing, as --store-password-secret's; overlays/redis-ha: the same Secret, whose password the Sentinels and Redis share); empty: the URL's sentinel_password_file, or none")
	fs.StringVar(&c.subjectKeySecret, "subject-key-secret", "quota-operator-subject-key", "with Redis, the Secret in --namespace whose \"subject-key\" keys every subject hash (created at random when missing, and copied to sidecars and the gateway with their store users). Never change it: counters are keyed by these hashes")
	fs.StringVar(&c.storeSecretName, "store-secret-name", "quota-operator-store", "Secret the operator keeps, in each namespace with sidecars, holding the username and password of that namespace's own Redis user")
	c.storeTenancy = controllers.TenancyManaged
	fs.Func("store-tenancy", "how each namespace's sidecars get a store user: managed (the manager keeps one ACL user per namespace; its store user needs ACL SETUSER), provided (an administrator makes each user with the rule `quota-operator tenant-acl NAMESPACE` prints and puts NAMESPACE.username and NAMESPACE.password in --store-users-secret) or shared (every namespace gets the username and password of --store-users-secret: no isolation in Redis). Default managed", func(v string) error {
		if !slices.Contains(controllers.Tenancies, controllers.Tenancy(v)) {
			return fmt.Errorf("%q is not managed, provided or shared", v)
		}
		c.storeTenancy = controllers.Tenancy(v)
		return nil
	})
	fs.StringVar(&c.storeUsersSecret, "store-users-secret", "quota-operator-store-users", "with --store-tenancy provided or shared, the Secret in --namespace holding the store users an administrator made")
	fs.StringVar(&c.policyConfigMap, "policy-configmap", "quota-policies", "the ConfigMap the manager keeps in each namespace with the compiled policies, which sidecars mount: with the memory store their policies (they cannot reach the manager's memory); with Redis the config they enforce when Redis cannot be read at their start; empty: none")
	fs.Func("gateway-namespaces", "comma-separated namespaces the gateway rate-limit service serves: the manager keeps its own store user, which reaches those namespaces only, in --gateway-secret", namespaceList(&c.gatewayNamespaces))
	fs.StringVar(&c.gatewaySecret, "gateway-secret", "quota-operator-ratelimit-store", "Secret in --namespace holding the username and password of the gateway rate-limit service's store user")
	fs.StringVar(&c.certSecret, "webhook-cert-secret", "", "Secret, in --namespace, where the manager keeps a self-signed CA and the webhook's serving certificate, renewing both and setting the webhook configuration's caBundle; empty: the certificate comes from elsewhere (cert-manager)")
	fs.StringVar(&c.webhookService, "webhook-service", "quota-operator-webhook-service", "the webhook's Service, named in the serving certificate")
	fs.StringVar(&c.mutatingConfig, "mutating-webhook-configuration", "quota-operator-mutating-webhook-configuration", "the MutatingWebhookConfiguration whose caBundle the manager sets")
	fs.StringVar(&c.validatingConfig, "validating-webhook-configuration", "quota-operator-validating-webhook-configuration", "the ValidatingWebhookConfiguration whose caBundle the manager sets")
	fs.Func("webhook-cert-hosts", "extra comma-separated host names or IPs for the serving certificate", func(v string) error {
		c.certHosts = append(c.certHosts, strings.Split(v, ",")...)
		return nil
	})
	fs.StringVar(&c.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the operator's own namespace (default $POD_NAMESPACE)")
	c.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// check refuses flags that do not go together.
func (c *managerConfig) check() error {
	if c.finalizeTimeout < 0 {
		return errors.New("--finalize-timeout must not be negative")
	}
	if c.usageInterval <= 0 || c.storeCheckInterval <= 0 {
		return errors.New("--usage-interval and --store-check-interval must be positive")
	}
	if err := c.checkSidecarDefaults(); err != nil {
		return err
	}
	if err := c.checkNamespaced(); err != nil {
		return err
	}
	if c.certSecret != "" {
		if c.namespace == "" {
			return errors.New("--webhook-cert-secret needs --namespace (or POD_NAMESPACE)")
		}
		if c.webhookCertDir == "" {
			c.webhookCertDir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
		}
	}
	return nil
}

func runManager(args []string, _, stderr io.Writer) int {
	return cli.RunService("quota-operator manager", stderr, func() (*managerConfig, error) { return parseManagerFlags(args, stderr) },
		func(ctx context.Context, c *managerConfig) error { return startManager(ctx, c, stderr, os.Getenv) })
}

// operatorStore is what the manager needs of the store: counters for the
// usage index, and config publication.
type operatorStore interface {
	store.Store
	controllers.Store
}

// startManager runs the controllers until ctx ends.
func startManager(ctx context.Context, c *managerConfig, stderr io.Writer, getenv func(string) string) error {
	log := cli.NewLog(&c.zap, stderr)
	if c.storePasswordSecret != "" {
		password, err := storePasswordFromSecret(ctx, c)
		if err != nil {
			return err
		}
		getenv = cli.WithEnv(getenv, cli.PasswordEnv, password)
	}
	if c.storeSentinelPasswordSecret != "" {
		password, err := generatedSecret(ctx, c, "--store-sentinel-password-secret", c.storeSentinelPasswordSecret, "password")
		if err != nil {
			return err
		}
		getenv = cli.WithEnv(getenv, cli.SentinelPasswordEnv, password)
	}
	s, loc, err := cli.OpenStore(c.store, getenv)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	if err := useSubjectKey(ctx, c, loc); err != nil {
		return err
	}
	return runManagerOn(ctx, c, log, s, loc)
}

// useSubjectKey, with Redis, keys subject hashes with the install's key,
// from --subject-key-secret. The memory store's sidecars get no Secret, so
// there hashes keep the empty key.
func useSubjectKey(ctx context.Context, c *managerConfig, loc *store.Location) error {
	switch {
	case loc.Redis == nil:
		return nil
	case c.store.SubjectKeyFile != "": // cli.OpenStore uses it
		key, err := cli.ReadSecretFile("--subject-key-file", c.store.SubjectKeyFile)
		c.subjectKey = []byte(key)
		return err
	case c.subjectKeySecret == "":
		return errors.New("with Redis, the manager needs --subject-key-secret or --subject-key-file: sidecars must hash subjects as it does")
	}
	if c.namespace == "" {
		return errors.New("--subject-key-secret needs --namespace (or POD_NAMESPACE); or give --subject-key-file")
	}
	key, err := generatedSecret(ctx, c, "--subject-key-secret", c.subjectKeySecret, webhook.SubjectKeyFile)
	if err != nil {
		return err
	}
	c.subjectKey = []byte(key)
	subject.UseKey(c.subjectKey)
	return nil
}

// runManagerOn runs the controllers on an open store until ctx ends.
func runManagerOn(ctx context.Context, c *managerConfig, log logr.Logger, s store.Store, loc *store.Location) error {
	ctrl.SetLogger(log)
	st, ok := s.(operatorStore)
	if !ok {
		return fmt.Errorf("store %s cannot hold config", loc)
	}
	lim, err := limiter.New(s)
	if err != nil {
		return err
	}
	cfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return err
	}
	mgr, err := newManager(cfg, c)
	if err != nil {
		return err
	}
	users, err := tenantUsers(loc)
	if err != nil {
		return err
	}
	opts := controllerOptions(mgr, c, st, lim, loc)
	if users != nil {
		defer func() { _ = users.Close() }()
		opts.Users = users
	}
	if err := setupQueries(&opts, mgr, s, loc); err != nil {
		return err
	}
	if err := controllers.Setup(mgr, opts); err != nil {
		return err
	}
	if err := setupWebhooksAndUsers(ctx, mgr, c, loc, users, opts.Problems); err != nil {
		return err
	}
	if err := removeLegacyAPIService(mgr, log); err != nil {
		return err
	}
	log.Info("Starting manager", "version", version, "store", loc.String(), "leaderElection", c.leaderElect)
	return mgr.Start(ctx)
}

// controllerOptions wire the controllers to the store: where config goes,
// and what of usage and enforcement can be read back.
func controllerOptions(mgr ctrl.Manager, c *managerConfig, st operatorStore, lim *limiter.Limiter, loc *store.Location) controllers.Options {
	opts := controllers.Options{Store: st, Usage: lim, UsageInterval: c.usageInterval, StoreCheckInterval: c.storeCheckInterval,
		FinalizeTimeout: c.finalizeTimeout, Problems: &controllers.TenantProblems{}}
	if c.storeTenancy == controllers.TenancyShared && loc.Redis != nil {
		opts.ProgrammedNote = controllers.SharedNote
	}
	switch cm := (&controllers.ConfigMapWriter{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Name: c.policyConfigMap}); {
	case c.policyConfigMap == "":
	case loc.Redis == nil:
		// The manager's memory is its own: sidecars read a ConfigMap, and
		// each counts alone, so usage across pods cannot be read. (The demo
		// runs its sidecar in the manager's process, on the same memory.)
		opts.Config, opts.Usage = cm, nil
	default:
		// Redis holds the config; the ConfigMap is the copy a sidecar that
		// starts while Redis is unreachable enforces.
		opts.Config = controllers.WithCopy(st, cm)
	}
	if r, ok := st.(controllers.EnforcementReader); ok {
		opts.Enforcement = r
	}
	if a, ok := st.(controllers.RevisionAnnouncer); ok && loc.Redis != nil {
		opts.Adjust, opts.Announce = lim, a
	}
	return opts
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

func newManager(cfg *rest.Config, c *managerConfig) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		WebhookServer:          ctrlwebhook.NewServer(ctrlwebhook.Options{Port: c.webhookPort, CertDir: c.webhookCertDir}),
		Metrics:                metricsOptions(c),
		HealthProbeBindAddress: c.probeAddr,
		LeaderElection:         c.leaderElect,
		LeaderElectionID:       "quota-operator.quotaops.dev",
		// In a cluster controller-runtime finds its namespace itself; outside
		// one (a manager run from a laptop) it would stop without this.
		LeaderElectionNamespace: c.namespace,
		// The process ends as soon as the manager stops, so the lease can be
		// handed over at once instead of after it expires (15 s).
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, mgr.AddReadyzCheck("readyz", healthz.Ping)
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsOptions serve metrics as the kubebuilder scaffold does: over
// HTTPS, with a certificate made at start, to clients whose token the API
// server accepts (TokenReview) and who may get /metrics
// (SubjectAccessReview), such as a Prometheus bound to the metrics-reader
// ClusterRole.
func metricsOptions(c *managerConfig) metricsserver.Options {
	o := metricsserver.Options{BindAddress: c.metricsAddr, SecureServing: c.metricsSecure}
	if c.metricsSecure {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}

// checkNamespaced refuses flags that name objects of --namespace without
// one.
func (c *managerConfig) checkNamespaced() error {
	if (c.storePasswordSecret != "" || c.storeSentinelPasswordSecret != "") && c.namespace == "" {
		return errors.New("--store-password-secret and --store-sentinel-password-secret need --namespace (or POD_NAMESPACE)")
	}
	if c.storeTenancy != controllers.TenancyManaged && (c.namespace == "" || c.storeUsersSecret == "") {
		return errors.New("--store-tenancy provided and shared need --namespace (or POD_NAMESPACE) and --store-users-secret")
	}
	if len(c.gatewayNamespaces) > 0 && (c.namespace == "" || c.gatewaySecret == "" || c.gatewaySecret == c.storeSecretName) {
		return errors.New("--gateway-namespaces needs --namespace (or POD_NAMESPACE) and a --gateway-secret other than --store-secret-name")
	}
	return nil
}

// checkSidecarDefaults refuses defaults every injected pod would fail on.
func (c *managerConfig) checkSidecarDefaults() error {
	for flagName, v := range map[string]string{"--sidecar-cpu": c.sidecarCPU, "--sidecar-memory": c.sidecarMemory} {
		if q, err := resource.ParseQuantity(v); err != nil || q.Sign() <= 0 {
			return fmt.Errorf("%s: %q is not a positive quantity", flagName, v)
		}
	}
	switch c.sidecarFailurePolicy {
	case "", sidecar.FailOpen, sidecar.FailClosed:
		return nil
	}
	return fmt.Errorf("--sidecar-failure-policy: %q is neither Open nor Closed", c.sidecarFailurePolicy)
}

// tenantUsers keeps one Redis user per namespace with sidecars, and the
// functions library on every master; the memory store has neither.
func tenantUsers(loc *store.Location) (*store.ACLAdmin, error) {
	if loc.Redis == nil {
		return nil, nil
	}
	a, err := store.NewACLAdmin(loc)
	if err != nil {
		return nil, err
	}
	a.KeepLibrary(limiter.Library)
	return a, nil
}

// setupWebhooks serves the webhooks: sidecar injection, and validation of
// what the CRD schema cannot check.
func setupWebhooks(ctx context.Context, mgr ctrl.Manager, c *managerConfig, loc *store.Location) error {
	if c.sidecarImage == "" {
		return nil
	}
	if err := setupCerts(ctx, mgr, c); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	if err := webhook.SetupPolicyValidation(mgr); err != nil {
		return err
	}
	cfg := injectionConfig(c, loc)
	native, err := webhook.NativeSidecars(mgr.GetConfig())
	if err != nil {
		return err
	}
	cfg.NativeSidecar = native
	ctrl.Log.Info("Injecting sidecars", "native", native)
	return (&webhook.PodInjector{Namespaces: mgr.GetAPIReader(), Config: cfg}).SetupWithManager(mgr)
}

// setupWebhooksAndUsers serves the webhooks and keeps the store users:
// the namespaces' (who have sidecars only with the webhook) and the
// gateway's.
func setupWebhooksAndUsers(ctx context.Context, mgr ctrl.Manager, c *managerConfig, loc *store.Location, users *store.ACLAdmin,
	problems *controllers.TenantProblems) error {
	if err := setupWebhooks(ctx, mgr, c, loc); err != nil {
		return err
	}
	return setupStoreUsers(mgr, c, loc, users, problems)
}

// setupStoreUsers, with Redis, gives each namespace with sidecars its own
// store user and the Secret that holds it, and so to the gateway
// rate-limit service with --gateway-namespaces.
func setupStoreUsers(mgr ctrl.Manager, c *managerConfig, loc *store.Location, users *store.ACLAdmin, problems *controllers.TenantProblems) error {
	if users == nil || (c.sidecarImage == "" && len(c.gatewayNamespaces) == 0) {
		return nil
	}
	secrets := &controllers.StoreSecretReconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Name: c.storeSecretName,
		Users: users, Shared: sharedStoreFiles(loc, users, c.subjectKey), Problems: problems,
		Tenancy: c.storeTenancy, ProvidedUsers: client.ObjectKey{Namespace: c.namespace, Name: c.storeUsersSecret}}
	if len(c.gatewayNamespaces) > 0 {
		secrets.Gateway = &controllers.GatewayUser{Secret: client.ObjectKey{Namespace: c.namespace, Name: c.gatewaySecret},
			Namespaces: c.gatewayNamespaces}
	}
	return secrets.SetupWithManager(mgr)
}

// injectionConfig is what sidecars get: the store URL without the
// manager's credentials and, with Redis, the Secret of their namespace's
// own user, which also carries copies of the files the URL names. They
// log in to Sentinels as store.SentinelUserName, never with the
// Sentinels' own password.
func injectionConfig(c *managerConfig, loc *store.Location) webhook.Config {
	bare := *loc
	cfg := webhook.Config{Image: c.sidecarImage, FailurePolicy: c.sidecarFailurePolicy}
	// Checked when the flags were parsed.
	cfg.CPU, _ = resource.ParseQuantity(c.sidecarCPU)
	cfg.Memory, _ = resource.ParseQuantity(c.sidecarMemory)
	if loc.Redis == nil {
		cfg.Store, cfg.PolicyConfigMap = bare.String(), c.policyConfigMap
		return cfg
	}
	opts := *loc.Redis
	opts.Username, opts.Password, opts.CredentialsProviderContext = "", "", nil
	opts.SentinelUsername, opts.SentinelPassword = "", ""
	bare.Redis = &opts
	bare.Files = store.LocationFiles{}
	for _, f := range storeFiles {
		if *f.path(&loc.Files) != "" {
			*f.path(&bare.Files) = webhook.StoreSecretDir + "/" + f.key
			cfg.CredentialsFiles = append(cfg.CredentialsFiles, f.key)
		}
	}
	if loc.Kind == "sentinel" {
		opts.SentinelUsername = store.SentinelUserName
		bare.Files.SentinelPassword = webhook.StoreSecretDir + "/" + sentinelPasswordKey
		cfg.CredentialsFiles = append(cfg.CredentialsFiles, sentinelPasswordKey)
	}
	cfg.Store, cfg.CredentialsSecret, cfg.FallbackConfigMap = bare.String(), c.storeSecretName, c.policyConfigMap
	return cfg
}

// sentinelPasswordKey holds store.SentinelUserName's password in each
// namespace's Secret.
const sentinelPasswordKey = "sentinel-password"

// storeFiles are the files a store URL may name that sidecars get copies
// of, by the Secret key their copies have in each namespace.
var storeFiles = []struct {
	key  string
	path func(*store.LocationFiles) *string
}{
	{"ca.crt", func(f *store.LocationFiles) *string { return &f.CA }},
	{"tls.crt", func(f *store.LocationFiles) *string { return &f.Cert }},
	{"tls.key", func(f *store.LocationFiles) *string { return &f.Key }},
}

// sharedStoreFiles reads the files the manager's store URL names, for the
// namespaces' Secrets, and adds the subject key and the Sentinel user's
// password. The client key is shared: Redis authorises by ACL user, and a
// client certificate only admits the connection.
func sharedStoreFiles(loc *store.Location, users *store.ACLAdmin, subjectKey []byte) func(context.Context) (map[string][]byte, error) {
	return func(ctx context.Context) (map[string][]byte, error) {
		out := map[string][]byte{webhook.SubjectKeyFile: subjectKey}
		for _, f := range storeFiles {
			path := *f.path(&loc.Files)
			if path == "" {
				continue
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			out[f.key] = raw
		}
		if loc.Kind != "sentinel" {
			return out, nil
		}
		password, err := users.SentinelPassword(ctx)
		if err != nil {
			return nil, fmt.Errorf("the Sentinel user: %w", err)
		}
		out[sentinelPasswordKey] = []byte(password)
		return out, nil
	}
}

// setupCerts, with --webhook-cert-secret, has the serving certificate in
// place before the webhook server starts, then keeps it renewed.
func setupCerts(ctx context.Context, mgr ctrl.Manager, c *managerConfig) error {
	if c.certSecret == "" {
		return nil
	}
	// The manager's client reads from a cache that starts with the manager.
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return err
	}
	certs := &webhook.Certs{Client: direct, Secret: client.ObjectKey{Namespace: c.namespace, Name: c.certSecret},
		Hosts: append(webhook.ServiceHosts(c.webhookService, c.namespace), c.certHosts...),
		Dir:   c.webhookCertDir, Configurations: []webhook.Configuration{
			{Kind: "MutatingWebhookConfiguration", Name: c.mutatingConfig},
			{Kind: "ValidatingWebhookConfiguration", Name: c.validatingConfig},
		}}
	if err := certs.Sync(ctx); err != nil {
		return fmt.Errorf("webhook certificate: %w", err)
	}
	return mgr.Add(certs)
}

// setupQueries answers QuotaQueries (kubectl quota usage and check) with
// a limiter of their own, so what it learns never answers a decision and
// its checks always read the store. Without Redis they are answered
// PerPodCounters.
func setupQueries(opts *controllers.Options, mgr ctrl.Manager, s store.Store, loc *store.Location) error {
	if loc.Redis == nil {
		return nil
	}
	lim, err := limiter.New(s)
	if err != nil {
		return err
	}
	opts.Query = &query.Answerer{Reader: mgr.GetClient(), Counters: lim}
	return nil
}

// removeLegacyAPIService deletes the APIService of an earlier release's
// usage API once the manager runs; the manager goes on if it cannot.
func removeLegacyAPIService(mgr ctrl.Manager, log logr.Logger) error {
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		switch removed, err := webhook.RemoveLegacyAPIService(ctx, mgr.GetClient()); {
		case err != nil:
			log.Error(err, "Could not delete the APIService of the former usage API: while it is unavailable, namespaces cannot finish deleting", "apiservice", webhook.LegacyUsageAPIService)
		case removed:
			log.Info("Deleted the APIService of the former usage API: kubectl quota now asks through QuotaQuery objects", "apiservice", webhook.LegacyUsageAPIService)
		}
		return nil
	}))
}
