package webhook

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

var cfg = Config{Image: "ghcr.io/quotaops/quota-operator:v1", Store: "redis://redis.quota:6379/0", CredentialsSecret: "quota-store"}

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
		proxyName   string
		cpu, memory string
		wantErr     string
	}{
		{"annotation opts in", pod(map[string]string{AnnotationInject: "true"}, http), false, true, "--upstream=http://127.0.0.1:8080", 8000, "http", "50m", "48Mi", ""},
		{"namespace opts in", pod(nil, http), true, true, "--upstream=http://127.0.0.1:8080", 8000, "http", "50m", "48Mi", ""},
		{"annotation opts out of an opted-in namespace", pod(map[string]string{AnnotationInject: "false"}, http), true, false, "", 0, "", "", "", ""},
		{"not opted in", pod(nil, http), false, false, "", 0, "", "", "", ""},
		{"named upstream port, overrides", pod(map[string]string{AnnotationInject: "true", AnnotationUpstreamPort: "metrics",
			AnnotationProxyPort: "9000", AnnotationCPU: "200m", AnnotationMemory: "128Mi"}, http, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090}),
			false, true, "--upstream=http://127.0.0.1:9090", 9000, "metrics", "200m", "128Mi", ""},
		{"numbered upstream port", pod(map[string]string{AnnotationInject: "true", AnnotationUpstreamPort: "3000"}), false, true, "--upstream=http://127.0.0.1:3000", 8000, PortName, "50m", "48Mi", ""},
		{"numbered upstream port that has a name", pod(map[string]string{AnnotationInject: "true", AnnotationUpstreamPort: "8080"}, http), false, true, "--upstream=http://127.0.0.1:8080", 8000, "http", "50m", "48Mi", ""},
		{"unnamed app port", pod(map[string]string{AnnotationInject: "true"}, corev1.ContainerPort{ContainerPort: 8080}), false, true, "--upstream=http://127.0.0.1:8080", 8000, PortName, "50m", "48Mi", ""},
		{"capture turned off", pod(map[string]string{AnnotationInject: "true", AnnotationCapturePort: "false"}, http), false, true, "--upstream=http://127.0.0.1:8080", 8000, PortName, "50m", "48Mi", ""},
		{"no port at all", pod(map[string]string{AnnotationInject: "true"}), false, false, "", 0, "", "", "", "no HTTP port to put the sidecar in front of: name the app's port http (or http-..., http2...), or set the quotaops.dev/upstream-port annotation"},
		// The namespace alone opts in: only a port named as HTTP is taken.
		{"namespace opts in a pod without ports (a Job)", pod(nil), true, false, "", 0, "", "", "", "no HTTP port to put the sidecar in front of: name the app's port http (or http-..., http2...), or set the quotaops.dev/upstream-port annotation"},
		{"namespace opts in a TCP-only pod", pod(nil, corev1.ContainerPort{Name: "postgres", ContainerPort: 5432}), true, false, "", 0, "", "", "", "no HTTP port to put the sidecar in front of: name the app's port http (or http-..., http2...), or set the quotaops.dev/upstream-port annotation"},
		{"namespace opts in an https port", pod(nil, corev1.ContainerPort{Name: "https", ContainerPort: 8443}), true, false, "", 0, "", "", "", "no HTTP port to put the sidecar in front of: name the app's port http (or http-..., http2...), or set the quotaops.dev/upstream-port annotation"},
		{"namespace opts in: the HTTP port, not the first", pod(nil, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090}, corev1.ContainerPort{Name: "http-api", ContainerPort: 8081}),
			true, true, "--upstream=http://127.0.0.1:8081", 8000, "http-api", "50m", "48Mi", ""},
		{"namespace opts in an h2c port", pod(nil, corev1.ContainerPort{Name: "http2-grpc", ContainerPort: 9000}), true, true, "--upstream=http://127.0.0.1:9000", 8000, "http2-grpc", "50m", "48Mi", ""},
		{"namespace opts in, annotation names the port", pod(map[string]string{AnnotationUpstreamPort: "web"}, corev1.ContainerPort{Name: "web", ContainerPort: 3000}), true, true,
			"--upstream=http://127.0.0.1:3000", 8000, "web", "50m", "48Mi", ""},
		{"annotation opts in a TCP-only pod: its first port, as it asked", pod(map[string]string{AnnotationInject: "true"}, corev1.ContainerPort{Name: "web", ContainerPort: 3000}), false, true,
			"--upstream=http://127.0.0.1:3000", 8000, "web", "50m", "48Mi", ""},
		{"unknown port name", pod(map[string]string{AnnotationInject: "true", AnnotationUpstreamPort: "grpc"}, http), false, false, "", 0, "", "", "", `annotation quotaops.dev/upstream-port: "grpc" is neither a port number nor the name of a container port`},
		{"bad memory", pod(map[string]string{AnnotationInject: "true", AnnotationMemory: "lots"}, http), false, false, "", 0, "", "", "", `annotation quotaops.dev/sidecar-memory: "lots" is not a positive quantity`},
		{"bad capture", pod(map[string]string{AnnotationInject: "true", AnnotationCapturePort: "no"}, http), false, false, "", 0, "", "", "", `annotation quotaops.dev/capture-port: "no" is neither true nor false`},
		{"inject True in an opted-in namespace", pod(map[string]string{AnnotationInject: "True"}, http), true, false, "", 0, "", "", "", `annotation quotaops.dev/inject: "True" is neither "true" nor "false"`},
		{"inject yes", pod(map[string]string{AnnotationInject: "yes"}, http), false, false, "", 0, "", "", "", `annotation quotaops.dev/inject: "yes" is neither "true" nor "false"`},
		{"proxy on the app's port", pod(map[string]string{AnnotationInject: "true", AnnotationProxyPort: "8080"}, http), false, false, "", 0, "", "", "", `annotation quotaops.dev/proxy-port: port 8080 is taken by the app; choose another`},
		{"proxy on the health port", pod(map[string]string{AnnotationInject: "true", AnnotationProxyPort: "9902"}, http), false, false, "", 0, "", "", "", `annotation quotaops.dev/proxy-port: port 9902 is taken by the sidecar's health port; choose another`},
	}
	for _, native := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s, native sidecar %v", tt.name, native), func(t *testing.T) {
				c := cfg
				c.NativeSidecar = native
				p := tt.pod.DeepCopy()
				changed, err := Inject(p, tt.nsOptedIn, c)
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
					if !reflect.DeepEqual(p, tt.pod) {
						t.Fatal("a pod that did not opt in was changed")
					}
					return
				}
				checkShape(t, p, native)
				checkSidecar(t, p, tt.upstream, tt.proxy, tt.proxyName, tt.cpu, tt.memory)
				if got := p.Labels[LabelSidecar]; got != "injected" || len(p.Labels) != len(tt.pod.Labels)+1 {
					t.Fatalf("labels %v; want the pod's and %s=injected", p.Labels, LabelSidecar)
				}
				// Idempotent: a second pass changes nothing.
				before := p.DeepCopy()
				if again, err := Inject(p, tt.nsOptedIn, c); again || err != nil || !reflect.DeepEqual(before, p) {
					t.Fatalf("second pass changed the pod (%v, %v)", again, err)
				}
			})
		}
	}
}

// checkShape: a native sidecar is the last init container, restarting
// always; otherwise it is the second container. The app stays first.
func checkShape(t *testing.T, p *corev1.Pod, native bool) {
	t.Helper()
	if p.Spec.Containers[0].Name != "app" {
		t.Fatalf("containers %+v", p.Spec.Containers)
	}
	if native {
		last := p.Spec.InitContainers[len(p.Spec.InitContainers)-1]
		if len(p.Spec.Containers) != 1 || last.Name != ContainerName || last.RestartPolicy == nil || *last.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("not a native sidecar: init %+v, containers %d", p.Spec.InitContainers, len(p.Spec.Containers))
		}
		return
	}
	if len(p.Spec.InitContainers) != 0 || len(p.Spec.Containers) != 2 || p.Spec.Containers[1].RestartPolicy != nil {
		t.Fatalf("not a plain sidecar: init %d, containers %+v", len(p.Spec.InitContainers), p.Spec.Containers)
	}
}

// sidecarOf is the injected container, in either shape.
func sidecarOf(t *testing.T, p *corev1.Pod) corev1.Container {
	t.Helper()
	c := Sidecar(p)
	if c == nil {
		t.Fatal("no sidecar")
	}
	return *c
}

// checkSidecar checks the injected container: args, ports, HTTP probes on
// the health port, resources, a locked-down security context, and the
// store credentials only as the namespace's Secret, mounted in the sidecar
// alone.
func checkSidecar(t *testing.T, p *corev1.Pod, upstream string, proxy int32, proxyName, cpu, memory string) {
	t.Helper()
	c := sidecarOf(t, p)
	wantArgs := []string{"--listen=:" + itoa(proxy), upstream, "--pod-labels-file=/etc/quota/labels", "--store=redis://redis.quota:6379/0", "--health-listen=:9902",
		"--store-username-file=/etc/quota-store/username", "--store-password-file=/etc/quota-store/password", "--subject-key-file=/etc/quota-store/subject-key"}
	wantPorts := []corev1.ContainerPort{{Name: proxyName, ContainerPort: proxy, Protocol: corev1.ProtocolTCP},
		{Name: HealthPortName, ContainerPort: 9902, Protocol: corev1.ProtocolTCP}}
	if c.Image != cfg.Image || !reflect.DeepEqual(c.Command, []string{"/quota-sidecar"}) || !reflect.DeepEqual(c.Args, wantArgs) || !reflect.DeepEqual(c.Ports, wantPorts) {
		t.Fatalf("sidecar command %q, args %q, ports %+v", c.Command, c.Args, c.Ports)
	}
	checkProbes(t, c)
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
	checkCredentials(t, p, c)
}

func checkCredentials(t *testing.T, p *corev1.Pod, c corev1.Container) {
	t.Helper()
	want := corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "quota-store", DefaultMode: ptr.To[int32](0o444),
		Items: []corev1.KeyToPath{{Key: "username", Path: "username"}, {Key: "password", Path: "password"}, {Key: "subject-key", Path: "subject-key"}}}}
	i := slices.IndexFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "quota-store-credentials" })
	if i < 0 || !reflect.DeepEqual(p.Spec.Volumes[i].VolumeSource, want) {
		t.Fatalf("volumes %+v lack the store Secret", p.Spec.Volumes)
	}
	mount := corev1.VolumeMount{Name: "quota-store-credentials", MountPath: "/etc/quota-store", ReadOnly: true}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return reflect.DeepEqual(m, mount) }) {
		t.Fatalf("sidecar mounts %+v", c.VolumeMounts)
	}
	for _, other := range p.Spec.Containers {
		if other.Name != ContainerName && slices.ContainsFunc(other.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == mount.Name }) {
			t.Fatalf("container %s mounts the store Secret", other.Name)
		}
	}
}

// checkProbes: HTTP startup, readiness and liveness probes on the health
// port; only readiness asks whether a config is loaded.
func checkProbes(t *testing.T, c corev1.Container) {
	t.Helper()
	for probe, want := range map[*corev1.Probe]string{c.StartupProbe: "/healthz", c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.StrVal != HealthPortName {
			t.Fatalf("probe %+v, want GET %s on %s", probe, want, HealthPortName)
		}
	}
}

// The sidecar takes the app port's name: the app's port becomes quota-app,
// and the app's probes and hooks that named it now use its number, while
// those naming another port, or a number, stay as they were.
func TestInjectCapturesThePortName(t *testing.T) {
	byName := func(name string) intstr.IntOrString { return intstr.FromString(name) }
	p := pod(map[string]string{AnnotationInject: "true"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080},
		corev1.ContainerPort{Name: "admin", ContainerPort: 9090})
	app := &p.Spec.Containers[0]
	app.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/live", Port: byName("http")}}}
	app.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: byName("http")}}}
	app.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/started", Port: byName("admin")}}}
	app.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/stop", Port: byName("http")}}}
	if changed, err := Inject(p, false, cfg); !changed || err != nil {
		t.Fatalf("changed %v, %v", changed, err)
	}
	app = &p.Spec.Containers[0]
	wantPorts := []corev1.ContainerPort{{Name: AppPortName, ContainerPort: 8080}, {Name: "admin", ContainerPort: 9090}}
	if !reflect.DeepEqual(app.Ports, wantPorts) {
		t.Fatalf("app ports %+v", app.Ports)
	}
	number := intstr.FromInt32(8080)
	if app.LivenessProbe.HTTPGet.Port != number || app.ReadinessProbe.TCPSocket.Port != number || app.Lifecycle.PreStop.HTTPGet.Port != number {
		t.Fatalf("probes and hooks that named the port: %+v %+v %+v", app.LivenessProbe, app.ReadinessProbe, app.Lifecycle.PreStop)
	}
	if app.StartupProbe.HTTPGet.Port != byName("admin") {
		t.Fatalf("a probe naming another port changed: %+v", app.StartupProbe)
	}
	if got := sidecarOf(t, p).Ports[0]; got.Name != "http" || got.ContainerPort != 8000 {
		t.Fatalf("sidecar port %+v", got)
	}
}

func itoa(n int32) string { b, _ := json.Marshal(n); return string(b) }

// The rate-limit service listens on loopback unless the pod asks for it
// to be exposed: before, it listened on every interface, so any pod of the
// cluster could spend the pod's subjects' limits.
func TestInjectGRPCOnLoopbackUnlessExposed(t *testing.T) {
	for _, tt := range []struct {
		expose, listen string
		port           bool
		err            string
	}{
		{"", "--grpc-listen=127.0.0.1:8081", false, ""},
		{"false", "--grpc-listen=127.0.0.1:8081", false, ""},
		{"true", "--grpc-listen=:8081", true, ""},
		{"yes", "", false, `annotation quotaops.dev/grpc-expose: "yes" is neither true nor false`},
	} {
		ann := map[string]string{AnnotationInject: "true", AnnotationGRPCPort: "8081"}
		if tt.expose != "" {
			ann[AnnotationGRPCExpose] = tt.expose
		}
		p := pod(ann, corev1.ContainerPort{ContainerPort: 8080})
		_, err := Inject(p, false, Config{Image: "img", Store: "memory://"})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("expose %q: %v; want %q", tt.expose, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		c := p.Spec.Containers[1]
		declared := slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == GRPCPortName })
		if !slices.Contains(c.Args, tt.listen) || declared != tt.port {
			t.Fatalf("expose %q: args %q, port declared %v; want %s, %v", tt.expose, c.Args, declared, tt.listen, tt.port)
		}
	}
}

// A pod that asks for Envoy's rate-limit service, which quota-sidecar
// hands to quota-operator sidecar, gets that program's memory, unless the
// manager's setting is higher or the pod names its own.
func TestGRPCSidecarMemory(t *testing.T) {
	for _, tt := range []struct {
		name, podMemory, managerMemory, want string
	}{
		{"the default", "", "", GRPCMemory},
		{"over the manager's lower setting", "", "64Mi", GRPCMemory},
		{"the manager's higher setting", "", "256Mi", "256Mi"},
		{"the pod's own", "96Mi", "", "96Mi"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ann := map[string]string{AnnotationInject: "true", AnnotationGRPCPort: "8081"}
			if tt.podMemory != "" {
				ann[AnnotationMemory] = tt.podMemory
			}
			c := Config{Image: "img", Store: "memory://"}
			if tt.managerMemory != "" {
				c.Memory = resource.MustParse(tt.managerMemory)
			}
			p := pod(ann, corev1.ContainerPort{ContainerPort: 8080})
			if _, err := Inject(p, false, c); err != nil {
				t.Fatal(err)
			}
			got := p.Spec.Containers[1].Resources
			if !got.Limits.Memory().Equal(resource.MustParse(tt.want)) || !got.Requests.Memory().Equal(resource.MustParse(tt.want)) {
				t.Fatalf("resources %v; want %s of memory", got, tt.want)
			}
		})
	}
}

// Admin port, failure policy, trusted proxies and gRPC port annotations
// and a policy ConfigMap add their arguments; the ConfigMap is mounted
// optional, so a namespace without one still starts.
func TestInjectOverridesAndPolicyConfigMap(t *testing.T) {
	p := pod(map[string]string{AnnotationInject: "true", AnnotationAdminPort: "19901", AnnotationFailurePolicy: "Closed",
		AnnotationTrustedProxies: "10.0.0.0/8,192.168.1.0/24", AnnotationGRPCPort: "8081"}, corev1.ContainerPort{ContainerPort: 8080})
	memory := Config{Image: "img", Store: "memory://", PolicyConfigMap: "quota-policies"}
	if changed, err := Inject(p, false, memory); !changed || err != nil {
		t.Fatalf("changed %v, %v", changed, err)
	}
	c := p.Spec.Containers[1]
	wantArgs := []string{"--listen=:8000", "--upstream=http://127.0.0.1:8080", "--pod-labels-file=/etc/quota/labels",
		"--store=memory://", "--health-listen=:9902", "--admin-listen=127.0.0.1:19901", "--failure-policy=Closed",
		"--trusted-proxies=10.0.0.0/8,192.168.1.0/24", "--grpc-listen=127.0.0.1:8081", "--policy-file=/etc/quota-policies"}
	if !reflect.DeepEqual(c.Args, wantArgs) {
		t.Fatalf("args %q\nwant %q", c.Args, wantArgs)
	}
	for _, port := range c.Ports {
		if port.Name == GRPCPortName {
			t.Fatalf("a loopback-only gRPC port declared: %+v", port)
		}
	}
	vol := p.Spec.Volumes[len(p.Spec.Volumes)-1]
	if vol.ConfigMap == nil || vol.ConfigMap.Name != "quota-policies" || !*vol.ConfigMap.Optional ||
		!reflect.DeepEqual(c.VolumeMounts[1], corev1.VolumeMount{Name: vol.Name, MountPath: "/etc/quota-policies", ReadOnly: true}) {
		t.Fatalf("policy volume %+v, mounts %+v", vol, c.VolumeMounts)
	}
	for key, want := range map[string]string{
		AnnotationAdminPort:      `annotation quotaops.dev/admin-port: "99999" is not a port number (1-65535)`,
		AnnotationFailurePolicy:  `annotation quotaops.dev/failure-policy: "99999" is neither Open nor Closed`,
		AnnotationGRPCPort:       `annotation quotaops.dev/grpc-port: "99999" is not a port number (1-65535)`,
		AnnotationTrustedProxies: `annotation quotaops.dev/trusted-proxies: "99999" is not a comma-separated list of CIDRs: netip.ParsePrefix("99999"): no '/'`,
	} {
		bad := pod(map[string]string{AnnotationInject: "true", key: "99999"}, corev1.ContainerPort{ContainerPort: 8080})
		if _, err := Inject(bad, false, memory); err == nil || err.Error() != want {
			t.Fatalf("error %v; want %s", err, want)
		}
	}
}

// With Redis, the ConfigMap is the manager's copy of the config: mounted
// optional and named by --fallback-policy-file, which the sidecar enforces
// only while Redis cannot be read at its start.
func TestInjectFallbackConfigMap(t *testing.T) {
	p := pod(map[string]string{AnnotationInject: "true"}, corev1.ContainerPort{ContainerPort: 8080})
	redis := Config{Image: "img", Store: "redis://redis:6379/0", FallbackConfigMap: "quota-policies"}
	if changed, err := Inject(p, false, redis); !changed || err != nil {
		t.Fatalf("changed %v, %v", changed, err)
	}
	c := p.Spec.Containers[1]
	if got := c.Args[len(c.Args)-1]; got != "--fallback-policy-file=/etc/quota-policies" || slices.Contains(c.Args, "--policy-file=/etc/quota-policies") {
		t.Fatalf("args %q; want --fallback-policy-file last, no --policy-file", c.Args)
	}
	vol := p.Spec.Volumes[len(p.Spec.Volumes)-1]
	if vol.ConfigMap == nil || vol.ConfigMap.Name != "quota-policies" || !*vol.ConfigMap.Optional ||
		!slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return reflect.DeepEqual(m, corev1.VolumeMount{Name: vol.Name, MountPath: "/etc/quota-policies", ReadOnly: true})
		}) {
		t.Fatalf("policy volume %+v, mounts %+v", vol, c.VolumeMounts)
	}
}

// The manager's sidecar defaults (resources and a failure policy) apply
// to every injected pod; a pod's own annotations win over them.
func TestInjectClusterDefaults(t *testing.T) {
	defaults := Config{Image: "img", Store: "memory://", CPU: resource.MustParse("100m"), Memory: resource.MustParse("96Mi"), FailurePolicy: "Open"}
	tests := []struct {
		name                    string
		annotations             map[string]string
		cpu, memory, failPolicy string
	}{
		{"defaults", map[string]string{AnnotationInject: "true"}, "100m", "96Mi", "--failure-policy=Open"},
		{"the pod's own", map[string]string{AnnotationInject: "true", AnnotationCPU: "20m", AnnotationMemory: "48Mi", AnnotationFailurePolicy: "Closed"},
			"20m", "48Mi", "--failure-policy=Closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pod(tt.annotations, corev1.ContainerPort{ContainerPort: 8080})
			if changed, err := Inject(p, false, defaults); !changed || err != nil {
				t.Fatalf("changed %v, %v", changed, err)
			}
			c := sidecarOf(t, p)
			if !c.Resources.Requests.Cpu().Equal(resource.MustParse(tt.cpu)) || !c.Resources.Limits.Memory().Equal(resource.MustParse(tt.memory)) ||
				!slices.Contains(c.Args, tt.failPolicy) || slices.Index(c.Args, tt.failPolicy) != slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--failure-policy=") }) {
				t.Fatalf("resources %v, args %q; want %s, %s, %s once", c.Resources, c.Args, tt.cpu, tt.memory, tt.failPolicy)
			}
		})
	}
}
