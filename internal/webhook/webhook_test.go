package webhook_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	"github.com/quotaops/quota-operator/api/v1alpha1"
	"github.com/quotaops/quota-operator/internal/testutil/kubeenv"
	"github.com/quotaops/quota-operator/internal/webhook"
)

// operatorNamespace is where the operator runs; the webhook never touches
// it, nor kube-system.
const operatorNamespace = "quota-operator-system"

var k8s client.Client

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\n*** WEBHOOK TESTS CANNOT RUN: %v ***\n\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// webhookConfigs reads the generated configurations and adds the
// namespaceSelector that keeps the injection webhook out of system
// namespaces.
func webhookConfigs() (*admissionv1.MutatingWebhookConfiguration, *admissionv1.ValidatingWebhookConfiguration, error) {
	raw, err := os.ReadFile(filepath.Join(kubeenv.ModuleRoot(), "config", "webhook", "manifests.yaml"))
	if err != nil {
		return nil, nil, err
	}
	docs := strings.Split(strings.TrimPrefix(string(raw), "---\n"), "\n---\n")
	if len(docs) != 2 { // one configuration per kind
		return nil, nil, fmt.Errorf("manifests.yaml holds %d documents", len(docs))
	}
	var cfg admissionv1.MutatingWebhookConfiguration
	var validating admissionv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &cfg); err != nil {
		return nil, nil, err
	}
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &validating); err != nil {
		return nil, nil, err
	}
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", operatorNamespace},
		}}}
	}
	return &cfg, &validating, nil
}

func run(m *testing.M) (int, error) {
	cfg, validating, err := webhookConfigs()
	if err != nil {
		return 0, err
	}
	dir, err := kubeenv.BinaryDir()
	if err != nil {
		return 0, err
	}
	env := &envtest.Environment{BinaryAssetsDirectory: dir,
		CRDDirectoryPaths: []string{filepath.Join(kubeenv.ModuleRoot(), "config", "crd", "bases")}, ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{MutatingWebhooks: []*admissionv1.MutatingWebhookConfiguration{cfg},
			ValidatingWebhooks: []*admissionv1.ValidatingWebhookConfiguration{validating}}}
	rest, err := env.Start()
	if err != nil {
		return 0, err
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return 0, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return 0, err
	}
	wo := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(rest, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: crwebhook.NewServer(crwebhook.Options{Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir})})
	if err != nil {
		return 0, err
	}
	// The shape the manager picks for this API server: native sidecars.
	native, err := webhook.NativeSidecars(rest)
	if err != nil || !native {
		return 0, fmt.Errorf("native sidecars %v, %w", native, err)
	}
	injector := &webhook.PodInjector{Namespaces: mgr.GetAPIReader(), Config: webhook.Config{
		Image: "quota-operator:test", Store: "redis://redis.quota:6379/0", CredentialsSecret: "quota-store", NativeSidecar: native}}
	if err := injector.SetupWithManager(mgr); err != nil {
		return 0, err
	}
	if err := webhook.SetupPolicyValidation(mgr); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = mgr.Start(ctx) }()
	if k8s, err = client.New(rest, client.Options{Scheme: scheme}); err != nil {
		return 0, err
	}
	if err := waitServing(mgr); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

func waitServing(mgr ctrl.Manager) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := mgr.GetWebhookServer().StartedChecker()(nil); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server not serving within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	if err != nil && !apierrorsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func newPod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}
}

// sidecars counts the quota sidecars among all the pod's containers.
func sidecars(p *corev1.Pod) int {
	n := 0
	for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		if c.Name == webhook.ContainerName {
			n++
		}
	}
	return n
}

// Through a real API server: opted-in pods get one native sidecar, which
// the API server's validation accepts (probes and all), also when created
// again from their mutated spec; others, and kube-system, do not.
func TestPodInjectionThroughTheAPIServer(t *testing.T) {
	ctx := context.Background()
	createNamespace(t, "shop", nil)
	createNamespace(t, "labelled", map[string]string{webhook.LabelInject: "enabled"})
	tests := []struct {
		name string
		pod  *corev1.Pod
		want int
	}{
		{"annotated pod", newPod("shop", "annotated", map[string]string{webhook.AnnotationInject: "true"}), 1},
		{"pod in a labelled namespace", newPod("labelled", "plain", nil), 1},
		{"opted out in a labelled namespace", newPod("labelled", "opted-out", map[string]string{webhook.AnnotationInject: "false"}), 0},
		{"plain pod", newPod("shop", "plain", nil), 0},
		{"annotated pod in kube-system", newPod("kube-system", "system", map[string]string{webhook.AnnotationInject: "true"}), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := k8s.Create(ctx, tt.pod); err != nil {
				t.Fatal(err)
			}
			if got := sidecars(tt.pod); got != tt.want {
				t.Fatalf("%d sidecars; want %d", got, tt.want)
			}
			if tt.want == 0 {
				return
			}
			// Created again from its mutated spec: still one sidecar.
			again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: tt.pod.Namespace, Name: tt.pod.Name + "-again",
				Annotations: tt.pod.Annotations}, Spec: *tt.pod.Spec.DeepCopy()}
			if err := k8s.Create(ctx, again); err != nil {
				t.Fatal(err)
			}
			if got := sidecars(again); got != 1 || len(again.Spec.InitContainers) != 1 || len(again.Spec.Containers) != 1 {
				t.Fatalf("created again: %d sidecars in %d init containers and %d containers", got,
					len(again.Spec.InitContainers), len(again.Spec.Containers))
			}
		})
	}
}

func apierrorsAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }
