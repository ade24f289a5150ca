// Package webhook injects the quota sidecar into opted-in pods. inject.go
// is the mutation itself, a pure function of the pod and the operator's
// settings; the admission plumbing wraps it.
package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/quotaops/quota-operator/internal/subject"
)

// Names in the contract (DESIGN §5).
const (
	// AnnotationInject on a pod: "true" opts in, "false" opts out even in an
	// opted-in namespace.
	AnnotationInject = "quotaops.dev/inject"
	// LabelInject on a namespace: "enabled" opts its pods in.
	LabelInject = "quotaops.dev/inject"
	// LabelSidecar marks a pod the webhook gave the sidecar, so that a
	// selector can name such pods: the Redis NetworkPolicy admits them.
	// It admits a connection only; Redis still asks for the namespace's
	// own user.
	LabelSidecar = "quotaops.dev/sidecar"
	// AnnotationUpstreamPort names the app's port (a number or a port name).
	AnnotationUpstreamPort = "quotaops.dev/upstream-port"
	// AnnotationProxyPort overrides the sidecar's proxy port (default 8000).
	AnnotationProxyPort = "quotaops.dev/proxy-port"
	// AnnotationAdminPort moves the sidecar's loopback admin listener
	// (health, metrics, the local API; default 9901) off a port the app
	// uses.
	AnnotationAdminPort = "quotaops.dev/admin-port"
	// AnnotationFailurePolicy ("Open" or "Closed") overrides the
	// failurePolicy of every policy in this pod.
	AnnotationFailurePolicy = "quotaops.dev/failure-policy"
	// AnnotationCPU and AnnotationMemory override the sidecar's requests
	// (and the memory limit).
	AnnotationCPU    = "quotaops.dev/sidecar-cpu"
	AnnotationMemory = "quotaops.dev/sidecar-memory"
	// AnnotationCapturePort: "false" leaves the app's port its name, so
	// only Services that target quota-proxy reach the sidecar.
	AnnotationCapturePort = "quotaops.dev/capture-port"
	// AnnotationTrustedProxies (comma-separated CIDRs) whose
	// X-Forwarded-For the sidecar believes, such as an ingress's.
	AnnotationTrustedProxies = "quotaops.dev/trusted-proxies"
	// AnnotationGRPCPort turns on the sidecar's Envoy rate-limit service
	// on this port.
	AnnotationGRPCPort = "quotaops.dev/grpc-port"
	// AnnotationGRPCExpose: "true" serves the rate-limit service on every
	// interface, for callers outside the pod. Without it the service
	// listens on loopback only: the pod's own Envoy reaches it there, and
	// no other pod can spend the pod's subjects' limits through it.
	AnnotationGRPCExpose = "quotaops.dev/grpc-expose"

	ContainerName = "quota-sidecar"
	// SidecarProgram is the injected container's command: the image holds
	// it beside /quota-operator.
	SidecarProgram = "/quota-sidecar"
	// DefaultCPU and DefaultMemory are an injected sidecar's requests
	// (and memory limit) unless the manager's flags or the pod's
	// annotations say otherwise. 48Mi is twice what BenchmarkFootprint's
	// load makes quota-sidecar resident, and the first sidecar on a node,
	// charged for its binary's pages, stays under half of it
	// (test/cluster); docs/performance.md.
	DefaultCPU    = "50m"
	DefaultMemory = "48Mi"
	// GRPCMemory is the least memory of a sidecar that serves Envoy's
	// rate-limit service (quotaops.dev/grpc-port): quota-operator sidecar,
	// about 53 MiB resident after load (BenchmarkFootprint).
	GRPCMemory = "128Mi"
	// PortName is the sidecar's proxy port when it does not take the app
	// port's name.
	PortName = "quota-proxy"
	// AppPortName is what the app's port is renamed to when the sidecar
	// takes its name.
	AppPortName = "quota-app"
	// HealthPortName serves /healthz, /readyz and /metrics.
	HealthPortName = "quota-health"
	GRPCPortName   = "quota-grpc"
	HealthPort     = 9902
	labelsVolume   = "quota-pod-labels"
	labelsDir      = "/etc/quota"
	policyVolume   = "quota-policies"
	policyDir      = "/etc/quota-policies"
	storeVolume    = "quota-store-credentials"
	// StoreSecretDir is where the sidecar finds its namespace's store
	// Secret.
	StoreSecretDir = "/etc/quota-store"
	// SubjectKeyFile is the key of that Secret (and its file) holding
	// the install's subject key, which keys every subject hash.
	SubjectKeyFile = subject.SecretKey
)

// Config is what the operator puts into every sidecar.
type Config struct {
	// Image is the manager's own image: operator and sidecar run one
	// version.
	Image string
	// Store is the store URL, without a password.
	Store string
	// CredentialsSecret names the Secret, in the pod's namespace, whose
	// "username" and "password" keys hold the namespace's own store user;
	// empty without Redis. The sidecar mounts it and reads the files for
	// each new connection, so a rotation needs no restart.
	CredentialsSecret string
	// CredentialsFiles are more keys of that Secret to mount beside
	// username and password, such as ca.crt; the Store URL names them
	// under StoreSecretDir.
	CredentialsFiles []string
	// PolicyConfigMap, when set, names a ConfigMap in the pod's namespace
	// whose .yaml keys hold the policies the sidecar enforces (its
	// --policy-file). Without Redis the manager's memory is out of the
	// sidecars' reach, so this is where their policies come from.
	PolicyConfigMap string
	// FallbackConfigMap, when set (with Redis), names the ConfigMap in the
	// pod's namespace where the manager keeps a copy of the compiled
	// policies: the sidecar enforces it when Redis cannot be read at its
	// start (--fallback-policy-file), so a pod can start during an outage.
	FallbackConfigMap string
	// CPU and Memory are the sidecar's request (and memory limit) unless
	// a pod's annotations say otherwise; zero: DefaultCPU and DefaultMemory.
	CPU, Memory resource.Quantity
	// FailurePolicy, when set ("Open" or "Closed"), overrides every
	// policy's failurePolicy in sidecars whose pod does not set its own.
	FailurePolicy string
	// NativeSidecar makes the sidecar an init container with
	// restartPolicy Always (Kubernetes 1.29 and later), so it starts before
	// the app and stops after it; otherwise it is one more container.
	NativeSidecar bool
}

// Inject adds the sidecar to pod when it opted in, and reports whether it
// changed the pod. A pod that has the sidecar already is left as it is, so
// a second pass changes nothing.
//
// A pod its namespace opted in that has no HTTP port (a Job, a database)
// gets ErrNoHTTPPort: the webhook admits it without a sidecar, with a
// warning. A pod that asked by annotation is refused whatever the reason.
func Inject(pod *corev1.Pod, namespaceOptedIn bool, cfg Config) (bool, error) {
	in, err := optedIn(pod, namespaceOptedIn)
	if err != nil || !in || HasSidecar(pod) {
		return false, err
	}
	_, asked := pod.Annotations[AnnotationInject]
	app, err := findAppPort(pod, asked)
	if err != nil {
		return false, err
	}
	c, err := sidecarFor(pod, cfg, app.number)
	if err != nil {
		return false, err
	}
	capture, err := capturesPort(pod, app)
	if err != nil {
		return false, err
	}
	if capture {
		c.Ports[0].Name = app.name()
		app.rename(AppPortName)
	}
	addVolumes(pod, &c, cfg)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[LabelSidecar] = "injected"
	if cfg.NativeSidecar {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, c)
	} else {
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	return true, nil
}

// sidecarFor is the sidecar container for pod, with what its annotations
// ask for.
func sidecarFor(pod *corev1.Pod, cfg Config, upstream int32) (corev1.Container, error) {
	proxy, err := annotationPort(pod, AnnotationProxyPort, 8000)
	if err != nil {
		return corev1.Container{}, err
	}
	// On the app's port the sidecar would proxy to itself; on its health
	// port it would not start.
	switch proxy {
	case upstream:
		return corev1.Container{}, fmt.Errorf("annotation %s: port %d is taken by the app; choose another", AnnotationProxyPort, proxy)
	case HealthPort:
		return corev1.Container{}, fmt.Errorf("annotation %s: port %d is taken by the sidecar's health port; choose another", AnnotationProxyPort, proxy)
	}
	res, err := resources(pod, cfg)
	if err != nil {
		return corev1.Container{}, err
	}
	c := sidecar(cfg, upstream, proxy, res)
	args, ports, err := annotationArgs(pod, cfg.FailurePolicy)
	if err != nil {
		return corev1.Container{}, err
	}
	c.Args = append(c.Args, args...)
	c.Ports = append(c.Ports, ports...)
	return c, nil
}

// annotationArgs turns the pod's sidecar annotations into arguments (and
// ports), refusing a bad value with the annotation's name.
func annotationArgs(pod *corev1.Pod, defaultFailurePolicy string) ([]string, []corev1.ContainerPort, error) {
	var args []string
	var ports []corev1.ContainerPort
	admin, err := annotationPort(pod, AnnotationAdminPort, 0)
	if err != nil {
		return nil, nil, err
	}
	if admin != 0 {
		args = append(args, "--admin-listen=127.0.0.1:"+strconv.Itoa(int(admin)))
	}
	switch fp, set := pod.Annotations[AnnotationFailurePolicy]; {
	case !set && defaultFailurePolicy != "":
		args = append(args, "--failure-policy="+defaultFailurePolicy)
	case !set:
	case fp == "Open" || fp == "Closed":
		args = append(args, "--failure-policy="+fp)
	default:
		return nil, nil, fmt.Errorf("annotation %s: %q is neither Open nor Closed", AnnotationFailurePolicy, fp)
	}
	if v, set := pod.Annotations[AnnotationTrustedProxies]; set {
		if err := checkCIDRs(v); err != nil {
			return nil, nil, fmt.Errorf("annotation %s: %w", AnnotationTrustedProxies, err)
		}
		args = append(args, "--trusted-proxies="+v)
	}
	grpc, err := annotationPort(pod, AnnotationGRPCPort, 0)
	if err != nil {
		return nil, nil, err
	}
	switch expose := pod.Annotations[AnnotationGRPCExpose]; {
	case grpc == 0:
	case expose == "true":
		args = append(args, "--grpc-listen=:"+strconv.Itoa(int(grpc)))
		ports = append(ports, corev1.ContainerPort{Name: GRPCPortName, ContainerPort: grpc, Protocol: corev1.ProtocolTCP})
	case expose == "" || expose == "false":
		args = append(args, "--grpc-listen=127.0.0.1:"+strconv.Itoa(int(grpc)))
	default:
		return nil, nil, fmt.Errorf("annotation %s: %q is neither true nor false", AnnotationGRPCExpose, expose)
	}
	return args, ports, nil
}

// checkCIDRs accepts what the sidecar's --trusted-proxies accepts.
func checkCIDRs(v string) error {
	for _, cidr := range strings.Split(v, ",") {
		if _, err := netip.ParsePrefix(strings.TrimSpace(cidr)); err != nil {
			return fmt.Errorf("%q is not a comma-separated list of CIDRs: %w", v, err)
		}
	}
	return nil
}

// capturesPort: the sidecar takes the app port's name unless the pod says
// "false", or the port has no name to take.
func capturesPort(pod *corev1.Pod, app appPort) (bool, error) {
	switch v, set := pod.Annotations[AnnotationCapturePort]; {
	case !set || v == "true":
		return app.name() != "", nil
	case v == "false":
		return false, nil
	default:
		return false, fmt.Errorf("annotation %s: %q is neither true nor false", AnnotationCapturePort, v)
	}
}

func addVolumes(pod *corev1.Pod, c *corev1.Container, cfg Config) {
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: labelsVolume, VolumeSource: corev1.VolumeSource{
		DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}},
	}})
	if cfg.CredentialsSecret != "" {
		addCredentials(pod, c, cfg)
	}
	switch {
	case cfg.PolicyConfigMap != "":
		c.Args = append(c.Args, "--policy-file="+policyDir)
		mountPolicies(pod, c, cfg.PolicyConfigMap)
	case cfg.FallbackConfigMap != "":
		c.Args = append(c.Args, "--fallback-policy-file="+policyDir)
		mountPolicies(pod, c, cfg.FallbackConfigMap)
	}
}

// mountPolicies mounts the ConfigMap name, the manager's compiled
// policies, into the sidecar as its policy folder.
func mountPolicies(pod *corev1.Pod, c *corev1.Container, name string) {
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: policyVolume, MountPath: policyDir, ReadOnly: true})
	// Optional: a namespace without the ConfigMap gets no policies, not a
	// pod stuck in ContainerCreating.
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: policyVolume, VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name},
			Optional: ptr.To(true)},
	}})
}

// addCredentials mounts the namespace's store Secret into the sidecar
// only: its user, the install's subject key and the files the store URL
// names. It is not optional: the manager creates it when the first pod
// with a sidecar appears, and the kubelet waits for it.
func addCredentials(pod *corev1.Pod, c *corev1.Container, cfg Config) {
	c.Args = append(c.Args, "--store-username-file="+StoreSecretDir+"/username", "--store-password-file="+StoreSecretDir+"/password",
		"--subject-key-file="+StoreSecretDir+"/"+SubjectKeyFile)
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: storeVolume, MountPath: StoreSecretDir, ReadOnly: true})
	items := []corev1.KeyToPath{{Key: "username", Path: "username"}, {Key: "password", Path: "password"},
		{Key: SubjectKeyFile, Path: SubjectKeyFile}}
	for _, key := range cfg.CredentialsFiles {
		items = append(items, corev1.KeyToPath{Key: key, Path: key})
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: storeVolume, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: cfg.CredentialsSecret, DefaultMode: ptr.To[int32](0o444), Items: items},
	}})
}

// optedIn: the pod's annotation decides, else its namespace's label. A
// value other than "true" or "false" is refused rather than read as either:
// "True" silently skipping injection would leave a pod unprotected.
func optedIn(pod *corev1.Pod, namespaceOptedIn bool) (bool, error) {
	switch v, set := pod.Annotations[AnnotationInject]; {
	case !set:
		return namespaceOptedIn, nil
	case v == "true":
		return true, nil
	case v == "false":
		return false, nil
	default:
		return false, fmt.Errorf("annotation %s: %q is neither \"true\" nor \"false\"", AnnotationInject, v)
	}
}

// HasSidecar reports whether pod runs the quota sidecar, in either shape.
func HasSidecar(pod *corev1.Pod) bool { return Sidecar(pod) != nil }

// Sidecar is the pod's quota sidecar, a native one among the init
// containers or a plain one; nil when there is none.
func Sidecar(pod *corev1.Pod) *corev1.Container {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Name == ContainerName {
				return &cs[i]
			}
		}
	}
	return nil
}

// appPort is the port the sidecar fronts: its number, and where the pod
// declares it (container nil when only the annotation gives a number).
type appPort struct {
	number    int32
	container *corev1.Container
	index     int
}

func (a appPort) name() string {
	if a.container == nil {
		return ""
	}
	return a.container.Ports[a.index].Name
}

// rename gives the app's port a new name, and the app's probes and
// lifecycle hooks that named the old one its number, so they still reach
// the app rather than the sidecar.
func (a appPort) rename(to string) {
	old := a.name()
	a.container.Ports[a.index].Name = to
	byNumber := intstr.FromInt32(a.number)
	for _, h := range appHandlers(a.container) {
		if h.http != nil && h.http.Port.Type == intstr.String && h.http.Port.StrVal == old {
			h.http.Port = byNumber
		}
		if h.tcp != nil && h.tcp.Port.Type == intstr.String && h.tcp.Port.StrVal == old {
			h.tcp.Port = byNumber
		}
	}
}

type handler struct {
	http *corev1.HTTPGetAction
	tcp  *corev1.TCPSocketAction
}

// appHandlers are the container's probe and lifecycle actions that can
// name a port.
func appHandlers(c *corev1.Container) []handler {
	var hs []handler
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil {
			hs = append(hs, handler{p.HTTPGet, p.TCPSocket})
		}
	}
	if c.Lifecycle != nil {
		for _, l := range []*corev1.LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if l != nil {
				hs = append(hs, handler{l.HTTPGet, l.TCPSocket})
			}
		}
	}
	return hs
}

// ErrNoHTTPPort: the pod has no port the sidecar can stand in front of.
var ErrNoHTTPPort = errors.New("no HTTP port to put the sidecar in front of")

// findAppPort resolves the annotation (a number or the name of an app
// container's port), else the first HTTP port (isHTTP) of the pod's
// containers. A pod that asked for the sidecar by annotation (asked)
// falls back to the first port of the first container, as it always did;
// one opted in by its namespace alone never does, so a Postgres pod keeps
// its port and a Job with no port starts as it is.
func findAppPort(pod *corev1.Pod, asked bool) (appPort, error) {
	want, set := pod.Annotations[AnnotationUpstreamPort]
	number, numErr := annotationPort(pod, AnnotationUpstreamPort, 0)
	var first *appPort
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for j, p := range c.Ports {
			match := isHTTP(p)
			if set {
				match = p.Name == want || numErr == nil && p.ContainerPort == number
			}
			if match {
				return appPort{number: p.ContainerPort, container: c, index: j}, nil
			}
			if first == nil {
				first = &appPort{number: p.ContainerPort, container: c, index: j}
			}
		}
	}
	switch {
	case set && numErr == nil:
		return appPort{number: number}, nil
	case set:
		return appPort{}, fmt.Errorf("annotation %s: %q is neither a port number nor the name of a container port", AnnotationUpstreamPort, want)
	case asked && first != nil:
		return *first, nil
	}
	return appPort{}, fmt.Errorf("%w: name the app's port http (or http-..., http2...), or set the %s annotation",
		ErrNoHTTPPort, AnnotationUpstreamPort)
}

// isHTTP: the port's name says it speaks plain HTTP: "http", or a name
// that starts with "http-" or "http2" (Istio's convention; not "https",
// which the sidecar cannot read). A container port has no appProtocol
// (Kubernetes puts that on Service ports), so the name is what a pod has.
func isHTTP(p corev1.ContainerPort) bool {
	return p.Name == "http" || strings.HasPrefix(p.Name, "http-") || strings.HasPrefix(p.Name, "http2")
}

func annotationPort(pod *corev1.Pod, key string, def int32) (int32, error) {
	v, ok := pod.Annotations[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("annotation %s: %q is not a port number (1-65535)", key, v)
	}
	return int32(n), nil
}

func resources(pod *corev1.Pod, cfg Config) (corev1.ResourceRequirements, error) {
	cpu, mem := resource.MustParse(DefaultCPU), resource.MustParse(DefaultMemory)
	if !cfg.CPU.IsZero() {
		cpu = cfg.CPU
	}
	if !cfg.Memory.IsZero() {
		mem = cfg.Memory
	}
	// A pod that asks for Envoy's rate-limit service runs quota-operator
	// sidecar, which links gRPC and holds about 48 MiB resident idle: it
	// gets at least GRPCMemory unless its own annotation says otherwise.
	if _, ok := pod.Annotations[AnnotationGRPCPort]; ok {
		if floor := resource.MustParse(GRPCMemory); mem.Cmp(floor) < 0 {
			mem = floor
		}
	}
	for key, q := range map[string]*resource.Quantity{AnnotationCPU: &cpu, AnnotationMemory: &mem} {
		if v, ok := pod.Annotations[key]; ok {
			parsed, err := resource.ParseQuantity(v)
			if err != nil || parsed.Sign() <= 0 {
				return corev1.ResourceRequirements{}, errors.New("annotation " + key + ": " + strconv.Quote(v) + " is not a positive quantity")
			}
			*q = parsed
		}
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: mem},
	}, nil
}

func sidecar(cfg Config, upstream, proxy int32, res corev1.ResourceRequirements) corev1.Container {
	env := []corev1.EnvVar{{Name: "QUOTA_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "QUOTA_POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		// The Go runtime keeps the heap under 80% of the memory limit,
		// collecting more often near it rather than being killed.
		{Name: "GOMEMLIMIT", Value: strconv.FormatInt(res.Limits.Memory().Value()*8/10, 10) + "B"}}
	// The admin listener stays on loopback (its API is the pod's own); the
	// kubelet asks the health port. Ready means a config is loaded.
	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path, Port: intstr.FromString(HealthPortName)}}, PeriodSeconds: period, FailureThreshold: failures}
	}
	return corev1.Container{
		Name:  ContainerName,
		Image: cfg.Image,
		// The sidecar alone (cmd/quota-sidecar), beside quota-operator in
		// the one image: it links no Kubernetes client, so a pod pays less
		// than half the memory (BenchmarkFootprint).
		Command: []string{SidecarProgram},
		Args: []string{
			"--listen=:" + strconv.Itoa(int(proxy)),
			"--upstream=http://127.0.0.1:" + strconv.Itoa(int(upstream)),
			"--pod-labels-file=" + labelsDir + "/labels",
			"--store=" + cfg.Store,
			"--health-listen=:" + strconv.Itoa(HealthPort),
		},
		Env: env,
		Ports: []corev1.ContainerPort{{Name: PortName, ContainerPort: proxy, Protocol: corev1.ProtocolTCP},
			{Name: HealthPortName, ContainerPort: HealthPort, Protocol: corev1.ProtocolTCP}},
		Resources:      res,
		VolumeMounts:   []corev1.VolumeMount{{Name: labelsVolume, MountPath: labelsDir, ReadOnly: true}},
		StartupProbe:   probe("/healthz", 1, 30),
		ReadinessProbe: probe("/readyz", 2, 1),
		LivenessProbe:  probe("/healthz", 10, 3),
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](65532),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}
