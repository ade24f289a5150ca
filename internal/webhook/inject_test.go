package webhook

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var cfg = Config{Image: "ghcr.io/quotaops/quota-operator:v1", Store: "redis://redis.quota:6379/0", PasswordSecret: "quota-store"}

func pod(annotations map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "shop", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1", Ports: ports}}},
	}
}

func TestInject(t *testing.T) {
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	tests := []struct {
		name        string
		pod         *corev1.Pod
		nsOptedIn   bool
		changed     bool
		upstream    string
		proxy       int32
		cpu, memory string
		wantErr     string
	}{
		{"annotation opts in", pod(map[string]string{AnnotationInject: "true"}, http), false, true, "--upstream=http://127.0.0.1:8080", 8000, "50m", "64Mi", ""},
		{"namespace opts in", pod(nil, http), true, true, "--upstream=http://127.0.0.1:8080", 8000, "50m", "64Mi", ""},
		{"annotation opts out of an opted-in namespace", pod(map[string]string{AnnotationInject: "false"}, http), true, false, "", 0, "", "", ""},
		{"not opted in", pod(nil, http), false, false, "", 0, "", "", ""},
		{"named upstream port, overrides", pod(map[string]string{AnnotationInject: "true", AnnotationUpstreamPort: "metrics",
			AnnotationProxyPort: "9000", AnnotationCPU: "200m", AnnotationMemory: "128Mi"}, http, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090}),
			false, true, "--upstream=http://127.0.0.1:9090", 9000, "200m", "128Mi", ""},
		{"numbered upstream port", pod(map[string]string{AnnotationInject: "true", AnnotationUpstreamPort: "3000"}), false, true, "--upstream=http://127.0.0.1:3000", 8000, "50m", "64Mi", ""},
		{"no port at all", pod(map[string]string{AnnotationInject: "true"}), false, false, "", 0, "", "", "no container port to put the sidecar in front of: set the quotaops.dev/upstream-port annotation"},
		{"unknown port name", pod(map[string]string{AnnotationInject: "true", AnnotationUpstreamPort: "grpc"}, http), false, false, "", 0, "", "", `annotation quotaops.dev/upstream-port: "grpc" is neither a port number nor the name of a container port`},
		{"bad memory", pod(map[string]string{AnnotationInject: "true", AnnotationMemory: "lots"}, http), false, false, "", 0, "", "", `annotation quotaops.dev/sidecar-memory: "lots" is not a positive quantity`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := Inject(tt.pod, tt.nsOptedIn, cfg)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || changed != tt.changed {
				t.Fatalf("changed %v, %v; want %v", changed, err, tt.changed)
			}
			if !changed {
				if len(tt.pod.Spec.Containers) != 1 {
					t.Fatal("an unchanged pod got containers")
				}
				return
			}
			checkSidecar(t, tt.pod, tt.upstream, tt.proxy, tt.cpu, tt.memory)
			// Idempotent: a second pass changes nothing.
			before := tt.pod.DeepCopy()
			if again, err := Inject(tt.pod, tt.nsOptedIn, cfg); again || err != nil || !reflect.DeepEqual(before, tt.pod) {
				t.Fatalf("second pass changed the pod (%v, %v)", again, err)
			}
		})
	}
}

// checkSidecar checks the injected container: args, port, resources, a
// locked-down security context, and the password only as a secretKeyRef.
func checkSidecar(t *testing.T, p *corev1.Pod, upstream string, proxy int32, cpu, memory string) {
	t.Helper()
	c := p.Spec.Containers[1]
	wantArgs := []string{"sidecar", "--listen=:" + itoa(proxy), upstream, "--pod-labels-file=/etc/quota/labels", "--store=redis://redis.quota:6379/0"}
	if c.Name != ContainerName || c.Image != cfg.Image || !reflect.DeepEqual(c.Args, wantArgs) ||
		c.Ports[0].Name != PortName || c.Ports[0].ContainerPort != proxy {
		t.Fatalf("sidecar %+v", c)
	}
	if !c.Resources.Requests.Cpu().Equal(resource.MustParse(cpu)) || !c.Resources.Limits.Memory().Equal(resource.MustParse(memory)) {
		t.Fatalf("resources %v", c.Resources)
	}
	limit := resource.MustParse(memory)
	if want := (corev1.EnvVar{Name: "GOMEMLIMIT", Value: strconv.FormatInt(limit.Value()*8/10, 10) + "B"}); !slices.Contains(c.Env, want) {
		t.Fatalf("env %+v lacks %+v", c.Env, want)
	}
	sc := c.SecurityContext
	if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("security context %+v", sc)
	}
	raw, _ := json.Marshal(p)
	if !strings.Contains(string(raw), `"secretKeyRef":{"name":"quota-store","key":"password"}`) {
		t.Fatalf("no secretKeyRef for the store password: %s", raw)
	}
}

func itoa(n int32) string { b, _ := json.Marshal(n); return string(b) }

// Admin port and failure policy annotations and a policy ConfigMap add
// their arguments; the
// ConfigMap is mounted optional, so a namespace without one still starts.
func TestInjectOverridesAndPolicyConfigMap(t *testing.T) {
	p := pod(map[string]string{AnnotationInject: "true", AnnotationAdminPort: "19901", AnnotationFailurePolicy: "Closed"}, corev1.ContainerPort{ContainerPort: 8080})
	memory := Config{Image: "img", Store: "memory://", PolicyConfigMap: "quota-policies"}
	if changed, err := Inject(p, false, memory); !changed || err != nil {
		t.Fatalf("changed %v, %v", changed, err)
	}
	c := p.Spec.Containers[1]
	wantArgs := []string{"sidecar", "--listen=:8000", "--upstream=http://127.0.0.1:8080", "--pod-labels-file=/etc/quota/labels",
		"--store=memory://", "--admin-listen=127.0.0.1:19901", "--failure-policy=Closed", "--policy-file=/etc/quota-policies"}
	if !reflect.DeepEqual(c.Args, wantArgs) {
		t.Fatalf("args %q\nwant %q", c.Args, wantArgs)
	}
	vol := p.Spec.Volumes[len(p.Spec.Volumes)-1]
	if vol.ConfigMap == nil || vol.ConfigMap.Name != "quota-policies" || !*vol.ConfigMap.Optional ||
		!reflect.DeepEqual(c.VolumeMounts[1], corev1.VolumeMount{Name: vol.Name, MountPath: "/etc/quota-policies", ReadOnly: true}) {
		t.Fatalf("policy volume %+v, mounts %+v", vol, c.VolumeMounts)
	}
	for key, want := range map[string]string{
		AnnotationAdminPort:     `annotation quotaops.dev/admin-port: "99999" is not a port number (1-65535)`,
		AnnotationFailurePolicy: `annotation quotaops.dev/failure-policy: "99999" is neither Open nor Closed`,
	} {
		bad := pod(map[string]string{AnnotationInject: "true", key: "99999"}, corev1.ContainerPort{ContainerPort: 8080})
		if _, err := Inject(bad, false, memory); err == nil || err.Error() != want {
			t.Fatalf("error %v; want %s", err, want)
		}
	}
}
